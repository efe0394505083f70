// The one path every request takes, whichever front received it (SPEC §1, STYLE "Layout"):
// authenticate -> validate -> admit through the quota engine (which persists through its sink)
// -> the provider that answers. The gRPC services and the HTTP front translate their wire
// format into these calls and the results back; no rule lives in a front.
//
//   absl::StatusOr<Admitted> a = gateway.AdmitChat(caller, request);
//   if (!a.ok()) return ToGrpc(a.status());          // 400/401/404/429/503 in HTTP terms
//   send x-ratelimit-* from a->decision, then a->provider->Chat(request)
//
// Errors are server/gateway/errors.h statuses: UNAUTHENTICATED, INVALID_ARGUMENT (BadRequest),
// NOT_FOUND (model), RESOURCE_EXHAUSTED (QuotaFailure, RetryInfo, ErrorInfo), UNAVAILABLE
// (storage, under the fail-closed policy), PERMISSION_DENIED (admin).
//
// Thread safety: thread-safe; one Gateway serves every front and thread.
#ifndef ANYAI_SERVER_GATEWAY_GATEWAY_H_
#define ANYAI_SERVER_GATEWAY_GATEWAY_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anyai/v1/admin.pb.h"
#include "anyai/v1/anyai.pb.h"
#include "quota/engine.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/client_address.h"
#include "server/gateway/observer.h"
#include "server/gateway/provider.h"
#include "storage/key_store.h"

namespace anyai::server {

// What a front knows about a call.
struct Caller {
  std::string_view authorization;  // the Authorization header / metadata value, or empty
  std::string_view peer;           // the transport's peer address (no port)
  std::string_view forwarded_for;  // X-Forwarded-For (HTTP only), or empty
};

// Whom a call is counted against.
struct Principal {
  std::string tenant;  // "key:<key_id>" or "ip:<address>"
  quota::PlanId plan;
  std::string plan_name;
  std::optional<storage::KeyRecord> key;  // absent for anonymous callers
};

// An admitted request: who, the engine's decision (for x-ratelimit-*), who answers.
struct Admitted {
  Principal principal;
  quota::Decision decision;
  Provider* provider = nullptr;
};

enum class StorageFailurePolicy { kFailClosed, kFailOpen };

// Everything a Gateway routes to; borrowed pointers outlive the Gateway.
struct GatewayParts {
  quota::Engine* engine = nullptr;
  storage::KeyStore* keys = nullptr;
  const Catalogue* catalogue = nullptr;
  EndpointModels image_models;
  EndpointModels imagine_models;
  EndpointModels vision_models;
  // Providers by name; every name below must be present.
  absl::flat_hash_map<std::string, Provider*> providers;
  std::string image_provider = "builtin";
  std::string imagine_provider = "builtin";
  std::string ask_provider = "builtin";
  std::string vision_provider = "builtin";
  std::string anonymous_plan = "free";
  std::string admin_token;  // empty: the Admin service refuses everything
  StorageFailurePolicy storage_failure_policy = StorageFailurePolicy::kFailClosed;
  int max_messages = 256;
  TrustedProxies trusted_proxies;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  GatewayObserver* observer = nullptr;  // optional: told of every decision
};

class Gateway {
 public:
  // INVALID_ARGUMENT when a part is missing: an unknown plan or provider name, a model routed
  // to a provider that does not exist.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(GatewayParts parts);

  // The caller's tenant and plan: its key's, or the anonymous plan keyed by client IP.
  absl::StatusOr<Principal> Authenticate(const Caller& caller);

  // Each validates the request against the caller's plan, then admits it (one unit of its
  // class) and says which provider answers. Defaults of absent fields are filled in place.
  absl::StatusOr<Admitted> AdmitChat(const Caller& caller,
                                     const v1::ChatCompletionRequest& request);
  absl::StatusOr<Admitted> AdmitImages(const Caller& caller, v1::GenerateImagesRequest& request);
  absl::StatusOr<Admitted> AdmitImagine(const Caller& caller, v1::ImagineRequest& request);
  absl::StatusOr<Admitted> AdmitAsk(const Caller& caller, const v1::AskRequest& request);
  absl::StatusOr<Admitted> AdmitVision(const Caller& caller, v1::DescribeImageRequest& request);
  // /models and /check: the anti-abuse `meta` class.
  absl::StatusOr<Admitted> AdmitMeta(const Caller& caller);

  // The catalogue as ListModels answers it; built once.
  const v1::ListModelsResponse& ListModels() const { return models_; }
  // The usage report of `key` (the caller's own key or anonymous tenant when empty). Counts
  // against the caller's `meta` class first.
  absl::StatusOr<v1::CheckKeyResponse> CheckKey(const Caller& caller, std::string_view key,
                                                quota::Decision* decision);

  // Admin service (SPEC §3): every call needs `authorization: Bearer <admin token>`.
  absl::Status AuthorizeAdmin(std::string_view authorization) const;
  absl::StatusOr<v1::CreateKeyResponse> CreateKey(const v1::CreateKeyRequest& request);
  absl::StatusOr<v1::KeyRecord> GetKey(const v1::GetKeyRequest& request);
  absl::StatusOr<v1::ListKeysResponse> ListKeys(const v1::ListKeysRequest& request);
  absl::StatusOr<v1::KeyRecord> UpdateKey(const v1::UpdateKeyRequest& request);
  absl::StatusOr<v1::KeyRecord> RevokeKey(const v1::RevokeKeyRequest& request);
  absl::StatusOr<v1::GetUsageResponse> GetUsage(const v1::GetUsageRequest& request);

  const quota::Engine& engine() const { return *parts_.engine; }

 private:
  explicit Gateway(GatewayParts parts);

  absl::StatusOr<Admitted> Admit(const Principal& principal, quota::ClassId feature_class,
                                 Provider* provider);
  absl::StatusOr<Principal> PrincipalOfKey(std::string_view key);
  absl::StatusOr<v1::GetUsageResponse> UsageOf(const Principal& principal);
  Provider* ProviderNamed(const std::string& name) const;

  GatewayParts parts_;
  quota::ClassId meta_class_;
  // Chat model id -> its class and provider, resolved once.
  struct Route {
    quota::ClassId feature_class;
    Provider* provider;
  };
  absl::flat_hash_map<std::string, Route> chat_routes_;
  v1::ListModelsResponse models_;
  quota::ClassId image_class_, imagine_class_, ask_class_, vision_class_;
};

// The proto forms of a usage snapshot and of a key record, as both fronts report them.
void ToProto(const quota::UsageSnapshot& snapshot,
             google::protobuf::RepeatedPtrField<v1::ClassUsage>* out);
v1::KeyRecord ToProto(const storage::KeyRecord& record);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_GATEWAY_H_
