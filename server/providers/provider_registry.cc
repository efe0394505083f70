#include "server/providers/provider_registry.h"

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "server/gateway/errors.h"
#include "server/gateway/proto_time.h"
#include "server/providers/builtin/builtin_provider.h"
#include "server/providers/openai/openai_provider.h"
#include "server/providers/openai/ssrf_guard.h"

namespace anyai::server {
namespace {

absl::Status Invalid(const std::string& field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

std::string Quoted(absl::string_view s) {
  return absl::StrCat("\"", QuoteForMessage(std::string_view(s.data(), s.size())), "\"");
}

absl::StatusOr<std::unique_ptr<Provider>> MakeOpenAI(const v1::ProviderConfig& p,
                                                     const std::string& at, const SsrfGuard& ssrf,
                                                     std::function<absl::Time()> clock) {
  if (p.base_url().empty()) return Invalid(at + ".base_url", "required for PROVIDER_TYPE_OPENAI");
  OpenAIProviderOptions options;
  options.name = p.name();
  options.base_url = p.base_url();
  options.api_key = p.api_key();
  if (options.api_key.empty() && !p.api_key_env().empty()) {
    const char* value = std::getenv(p.api_key_env().c_str());
    if (value == nullptr || *value == '\0') {
      return Invalid(at + ".api_key_env", absl::StrCat("the environment variable ",
                                                       Quoted(p.api_key_env()), " is not set"));
    }
    options.api_key = value;
  }
  if (p.has_timeout()) {
    options.timeout = FromProto(p.timeout());
    if (options.timeout <= absl::ZeroDuration()) {
      return Invalid(at + ".timeout",
                     absl::StrCat("must be positive, got ", absl::FormatDuration(options.timeout)));
    }
  }
  options.model_map.insert(p.model_map().begin(), p.model_map().end());
  absl::StatusOr<std::unique_ptr<OpenAIProvider>> provider =
      OpenAIProvider::Create(std::move(options), ssrf, std::move(clock));
  if (!provider.ok()) {
    if (absl::IsInvalidArgument(provider.status())) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".", provider.status().message()));
    }
    return provider.status();
  }
  return std::unique_ptr<Provider>(*std::move(provider));
}

}  // namespace

Provider* ProviderRegistry::Find(absl::string_view name) const {
  auto it = providers_.find(name);
  return it == providers_.end() ? nullptr : it->second.get();
}

absl::flat_hash_map<std::string, Provider*> ProviderRegistry::ByName() const {
  absl::flat_hash_map<std::string, Provider*> out;
  for (const auto& [name, provider] : providers_) out.emplace(name, provider.get());
  return out;
}

absl::StatusOr<ProviderRegistry> MakeProviders(const v1::ServerConfig& config,
                                               std::function<absl::Time()> clock) {
  absl::StatusOr<SsrfGuard> ssrf = SsrfGuard::Create(config.ssrf_allowlist());
  if (!ssrf.ok()) return ssrf.status();

  ProviderRegistry registry;
  registry.providers_.emplace(kBuiltinProvider, std::make_unique<BuiltinProvider>(clock));
  absl::flat_hash_set<std::string> openai_names;
  for (int i = 0; i < config.providers_size(); ++i) {
    const v1::ProviderConfig& p = config.providers(i);
    const std::string at = absl::StrCat("providers[", i, "]");
    if (p.name().empty()) return Invalid(at + ".name", "required");
    if (p.name() == kBuiltinProvider) {
      return Invalid(at + ".name", "\"builtin\" is predefined and may not be redefined");
    }
    if (registry.providers_.contains(p.name())) {
      return Invalid(at + ".name", absl::StrCat(Quoted(p.name()), " is defined twice"));
    }
    std::unique_ptr<Provider> provider;
    switch (p.type()) {
      case v1::PROVIDER_TYPE_BUILTIN:
        provider = std::make_unique<BuiltinProvider>(clock);
        break;
      case v1::PROVIDER_TYPE_OPENAI: {
        absl::StatusOr<std::unique_ptr<Provider>> openai = MakeOpenAI(p, at, *ssrf, clock);
        if (!openai.ok()) return openai.status();
        provider = *std::move(openai);
        openai_names.insert(p.name());
        break;
      }
      case v1::PROVIDER_TYPE_UNSPECIFIED:
        return Invalid(at + ".type", "required (PROVIDER_TYPE_BUILTIN or PROVIDER_TYPE_OPENAI)");
      default:
        return Invalid(at + ".type", absl::StrCat("unknown value ", static_cast<int>(p.type())));
    }
    registry.providers_.emplace(p.name(), std::move(provider));
  }
  if (openai_names.contains(config.ask().provider())) {
    return Invalid("ask.provider",
                   absl::StrCat(Quoted(config.ask().provider()),
                                " is an OpenAI-compatible provider, which cannot answer /v1/ask "
                                "(the OpenAI API has no GlobalAsk); use \"builtin\""));
  }
  return registry;
}

}  // namespace anyai::server
