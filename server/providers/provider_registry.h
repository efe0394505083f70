// The providers a config defines, built once at start (SPEC §5): "builtin" always, and one
// provider per ServerConfig.providers entry — a BuiltinProvider for PROVIDER_TYPE_BUILTIN, an
// OpenAIProvider (openai_provider.h) for PROVIDER_TYPE_OPENAI. The registry owns them; the
// Gateway borrows them by name:
//
//   absl::StatusOr<ProviderRegistry> providers = MakeProviders(config, clock);
//   if (!providers.ok()) return providers.status();   // names the bad field
//   GatewayParts parts{..., .providers = providers->ByName(), ...};
//   // keep `providers` alive as long as the Gateway
//
// Thread-safe once made: the map does not change, and every provider is thread-safe.
#ifndef ANYAI_SERVER_PROVIDERS_PROVIDER_REGISTRY_H_
#define ANYAI_SERVER_PROVIDERS_PROVIDER_REGISTRY_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/provider.h"

namespace anyai::server {

class ProviderRegistry {
 public:
  ProviderRegistry() = default;
  ProviderRegistry(ProviderRegistry&&) = default;
  ProviderRegistry& operator=(ProviderRegistry&&) = default;

  // The provider called `name`, or nullptr.
  Provider* Find(absl::string_view name) const;

  // Every provider by name, borrowed from the registry (GatewayParts.providers).
  absl::flat_hash_map<std::string, Provider*> ByName() const;

  size_t size() const { return providers_.size(); }

 private:
  friend absl::StatusOr<ProviderRegistry> MakeProviders(const v1::ServerConfig& config,
                                                        std::function<absl::Time()> clock);

  absl::flat_hash_map<std::string, std::unique_ptr<Provider>> providers_;
};

// The providers of `config`. `clock` gives the builtin's `created` (and the openai
// provider's, when the upstream omits it). Reads the environment variable named by each
// providers[].api_key_env.
//
// INVALID_ARGUMENT naming the field for what the providers need and the config lacks:
//   providers[i].name         empty, "builtin", or a name used twice
//   providers[i].type         PROVIDER_TYPE_UNSPECIFIED or an unknown value
//   providers[i].base_url     missing, or not http(s)://host[/path] (PROVIDER_TYPE_OPENAI)
//   providers[i].api_key_env  names a variable that is unset or empty
//   providers[i].timeout      not positive
//   ssrf_allowlist[i]         neither a host name nor a CIDR
//   ask.provider              an openai provider: /v1/ask has no OpenAI counterpart
// It does not check the rest of the config (ValidateConfig in config.h does).
absl::StatusOr<ProviderRegistry> MakeProviders(const v1::ServerConfig& config,
                                               std::function<absl::Time()> clock);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_PROVIDER_REGISTRY_H_
