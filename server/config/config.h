// The server's configuration (SPEC §8): the compiled-in defaults, loading a config file over
// them, command-line and environment overrides, and the one validation that names the bad
// field. The schema is anyai.v1.ServerConfig (proto/anyai/v1/config.proto); every default
// here equals the comment of its field there, which equals the seed.
//
// How `anyai-server` builds its config, in order (LoadServerConfig does all of it):
//   1. DefaultConfig(): every field set explicitly, models and plans included.
//   2. --config=FILE: LoadConfigFile() merges the file over the defaults (see below).
//   3. --grpc_listen, --http_listen, --admin_listen, --data_dir, --tls_*, --postgres_dsn,
//      --handoff_flush_interval: ApplyFlagOverrides();
//      flags win over the file.
//   4. ANYAI_ADMIN_TOKEN: ApplyEnvironment(); the environment wins over the file.
//   5. ValidateConfig(): the first bad field, named by its path, stops the start.
//
// Merge semantics (MergeOverDefaults, LoadConfigFile):
//   - A scalar or enum field the file sets to a non-zero value replaces the default. proto3
//     cannot tell "absent" from "zero", so a zero, empty or *_UNSPECIFIED value means "the
//     default" (no setting has a meaningful zero that differs from its default).
//   - A repeated field the file gives at least one element REPLACES the default list
//     wholesale: `plans`, `models`, `providers`, `trusted_proxies`, `ssrf_allowlist`, and an
//     endpoint's `models`. Listing one plan therefore defines the only plan; to change one
//     limit, copy the default plans (deploy/config/anyai.textproto has them) and edit.
//     Likewise, pricing one model means listing the whole catalogue
//     (deploy/config/token-limits.textproto does). An empty list keeps the default.
//   - A google.protobuf.Duration the file sets replaces the default whole (seconds and nanos
//     together); other messages (the endpoints) merge field by field by these same rules,
//     except that an endpoint whose `models` the file replaces without a `default_model`
//     defaults to the first of its new models.
//   - After merging, derived defaults are written out: each model without feature_class gets
//     DefaultFeatureClass(id), each provider without timeout gets 60s, each plan without
//     default_token_reserve gets 1024 (so no plan reserves 0; 1 is the least). A model
//     without provider keeps it empty, meaning `default_chat_provider` (CatalogueFromConfig
//     resolves it).
//
// Secrets: admin_token, providers[].api_key and postgres_dsn never appear in an error message;
// RedactedConfigText() prints a config with them masked.
//
// Thread safety: pure functions of their arguments, except ApplyEnvironment (reads the
// environment) and LoadConfigFile / LoadServerConfig (read a file and the environment).
#ifndef ANYAI_SERVER_CONFIG_CONFIG_H_
#define ANYAI_SERVER_CONFIG_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "anyai/v1/config.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "quota/plan.h"
#include "server/gateway/catalogue.h"

namespace anyai::server {

// The environment variable that overrides ServerConfig.admin_token.
inline constexpr char kAdminTokenEnv[] = "ANYAI_ADMIN_TOKEN";

// Every setting at its compiled-in default: listen on 0.0.0.0:50051 (gRPC) and 0.0.0.0:8080
// (HTTP), data_dir "data", no admin token (Admin disabled), DURABILITY_PROCESS_CRASH,
// STORAGE_FAILURE_POLICY_FAIL_CLOSED, the seed's plans (quota::DefaultPlanTable(), with "meta"
// 600/min: request windows only, no token or spend windows, no concurrency limit,
// default_token_reserve 1024, which nothing uses without token windows), anonymous_plan
// "free", the seed's 103 models (DefaultModels(), feature_class set, provider empty =
// default_chat_provider, no prices), no providers besides the predefined "builtin",
// default_chat_provider "builtin", the endpoints' default model lists with provider
// "builtin", no trusted proxies, no SSRF allow-list, idle_tenant_timeout 10m, max_body_bytes
// 1 MiB, max_header_bytes 16 KiB, http_idle_timeout 60s, http_read_timeout 30s, max_messages
// 256, no postgres_dsn, key_cache_ttl 5s, image_url_ttl 1h, image_store_max_bytes 256 MiB,
// charge_upstream_failures false.
v1::ServerConfig DefaultConfig();

// `overrides` merged over DefaultConfig() by the rules above, derived defaults written out.
// Not validated.
v1::ServerConfig MergeOverDefaults(const v1::ServerConfig& overrides);

enum class ConfigFormat { kTextproto, kJson };

// Parses `text` (a ServerConfig in `format`) and merges it over the defaults. Unknown fields,
// unknown enum values and syntax errors are InvalidArgument, prefixed with `source` (a file
// name) and the 1-based line (and, for textproto, column): `anyai.textproto:3:1: Message type
// "anyai.v1.ServerConfig" has no field named "grpc_lisen".`. Not validated.
absl::StatusOr<v1::ServerConfig> ParseConfig(absl::string_view text, ConfigFormat format,
                                             absl::string_view source);

// Reads `path` and ParseConfig()s it; the format comes from the extension: ".textproto",
// ".txtpb", ".pbtxt" or ".textpb" for textproto, ".json" for JSON. NotFound / PermissionDenied
// (etc.) naming the path when it cannot be read; InvalidArgument for another extension.
// Not validated.
absl::StatusOr<v1::ServerConfig> LoadConfigFile(const std::string& path);

// The command-line flags that override the file; an absent flag leaves the setting alone.
struct FlagOverrides {
  std::optional<std::string> grpc_listen;             // --grpc_listen=HOST:PORT
  std::optional<std::string> http_listen;             // --http_listen=HOST:PORT
  std::optional<std::string> data_dir;                // --data_dir=DIR
  std::optional<std::string> admin_listen;            // --admin_listen=HOST:PORT
  std::optional<std::string> tls_cert_file;           // --tls_cert_file=PEM (tls.cert_file)
  std::optional<std::string> tls_key_file;            // --tls_key_file=PEM (tls.key_file)
  std::optional<std::string> tls_client_ca_file;      // --tls_client_ca_file=PEM (mutual TLS)
  std::optional<std::string> postgres_dsn;            // --postgres_dsn=DSN (cluster mode)
  std::optional<std::string> handoff_flush_interval;  // --handoff_flush_interval=1s
};

// Sets the fields of the present flags. InvalidArgument naming the flag ("--grpc_listen: ...")
// when a value is empty or not HOST:PORT; `config` is then unchanged.
absl::Status ApplyFlagOverrides(v1::ServerConfig& config, const FlagOverrides& flags);

// Sets admin_token from ANYAI_ADMIN_TOKEN when that is set and not empty (an empty variable
// is treated as unset, so it cannot silently disable the Admin service configured in a file).
void ApplyEnvironment(v1::ServerConfig& config);

// OK, or InvalidArgument for the first bad field, the message starting with its path:
//   plans: plan "free", class "llm", window 1m: max_requests 0 is outside [1, 8388607]
//   grpc_listen: "localhost" is not HOST:PORT (e.g. 0.0.0.0:8080 or [::]:8080): no ':PORT'
//   models[4].provider: "upstream" is not a provider (known: builtin, openai-eu)
//   trusted_proxies[0]: "10.0.0.0/33" is not a CIDR: the prefix length must be in [0, 32]
// Checks: listen addresses (net::HostPort: HOST:PORT, IPv6 in brackets, port 0..65535; gRPC
// and HTTP not on one port), known enum values, the plans (PlanTableFromConfig: each plan's
// name and each window's length present and the token, spend and concurrency fields in range,
// by path, then the engine's own rules,
// quota::ValidatePlanTable, prefixed "plans: " and naming plan, class and window), model
// prices (finite, 0 to 1000000 USD per million tokens, no positive price below the resolution
// of 1 micro-USD per million: "models[3].input_usd_per_million_tokens: ..."), that every plan
// meters every class a model or endpoint counts against (including "meta"),
// anonymous_plan names a plan, model ids unique, every provider reference resolves
// ("builtin" or a providers[].name), provider fields by type (base_url an http(s) net::Url
// without query or fragment), endpoint model lists (default_model among them; /v1/ask takes
// none), trusted_proxies (TrustedProxies::Create, as the Server builds them), ssrf_allowlist
// (net::AllowList::Parse, as the SSRF guard builds it: host names or CIDRs), durations
// positive (key_cache_ttl may be 0), sizes and counts at least 1. An unset field (zero,
// empty) means its default and passes; code that reads a config should read one that went
// through MergeOverDefaults() (as every config from LoadConfigFile() or LoadServerConfig()
// has), where nothing is unset.
absl::Status ValidateConfig(const v1::ServerConfig& config);

// The plans as the quota engine takes them (DefaultPlanTable() when `config.plans` is empty),
// checked with quota::ValidatePlanTable; its message is prefixed with "plans: ". A
// default_token_reserve of 0 becomes 1024. What only the config can say comes first, by path:
// "plans[1].name: required", "plans[0].classes[0].windows[2].length: required", a length that
// is not a valid Duration; and the range of each token, spend and concurrency field:
//   plans[0].classes[1].token_windows[0].max_tokens: 0 is outside [1, 1125899906842624]
//   plans[0].classes[1].spend_windows[0].max_micro_usd: ...   (same range)
//   plans[0].classes[1].max_concurrent: -1 is outside [0, 1048576] (0: no limit)
//   plans[1].default_token_reserve: -5 is outside [0, 1125899906842624] (0: 1024)
// (A request window's max_requests and every window length's range stay the engine's.)
absl::StatusOr<quota::PlanTable> PlanTableFromConfig(const v1::ServerConfig& config);

// The reverse of PlanTableFromConfig: `table` as config messages, every field written, a
// default_token_reserve of 0 as 1024. DefaultConfig() writes its plans with it, so
// --print_config (RedactedConfigText) shows the tables the engine runs with.
google::protobuf::RepeatedPtrField<v1::PlanConfig> PlansToConfig(const quota::PlanTable& table);

// The chat model catalogue: config.models (DefaultModels() when empty), each with its
// feature_class (DefaultFeatureClass(id) when empty) and provider (default_chat_provider,
// itself "builtin" when empty, when the model names none) resolved, and its prices in USD per
// million tokens as ModelInfo's micro-USD per million tokens (rounded to the nearest; the
// errors of ValidateConfig for a bad price).
absl::StatusOr<Catalogue> CatalogueFromConfig(const v1::ServerConfig& config);

// An endpoint's model list: `endpoint`'s fields, each falling back to `defaults` when empty
// (e.g. EndpointModelsFromConfig(config.imagine(), DefaultImagineModels())); with `models`
// set and `default_model` empty, the default is the first of `models`.
EndpointModels EndpointModelsFromConfig(const v1::EndpointConfig& endpoint,
                                        const EndpointModels& defaults);

// The plan of callers without a key: config.anonymous_plan(), or "free" when empty.
std::string AnonymousPlan(const v1::ServerConfig& config);

// The provider that answers an endpoint: endpoint.provider(), or "builtin" when empty.
std::string EndpointProvider(const v1::EndpointConfig& endpoint);

// `config` as textproto with every secret (admin_token, providers[].api_key, postgres_dsn)
// replaced by "<redacted>" when set; for start-up logs.
std::string RedactedConfigText(const v1::ServerConfig& config);

// The whole start-up sequence above: DefaultConfig() or LoadConfigFile(config_path) when
// `config_path` is not empty, then flags, then the environment, then ValidateConfig().
absl::StatusOr<v1::ServerConfig> LoadServerConfig(const std::string& config_path,
                                                  const FlagOverrides& flags);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_CONFIG_CONFIG_H_
