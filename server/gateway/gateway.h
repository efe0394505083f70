// The one path every call takes, whichever front received it (SPEC §1, STYLE "Layout"): one
// entry per endpoint does authenticate -> validate -> admit through the quota engine (which
// persists through its sink) -> call the provider -> finish. The gRPC services and the HTTP
// front only translate their wire format into these calls and the Outcome back; no rule lives
// in a front, so both fronts behave the same.
//
//   Outcome<v1::ChatCompletion> out = gateway.Chat(caller, request);
//   send x-ratelimit-* from out.rate_limit (if set), then out.result or its error
//
// Streams take two callbacks from the front: `start`, called once when the call is admitted
// and before any chunk (the front sends its head: HTTP status and headers, gRPC initial
// metadata), and `emit`, once per chunk. Either returns false when the client has gone; the
// provider then stops and the call ends CANCELLED.
//
// Errors are server/gateway/errors.h statuses: UNAUTHENTICATED, INVALID_ARGUMENT (BadRequest),
// NOT_FOUND (model), RESOURCE_EXHAUSTED (QuotaFailure, RetryInfo, ErrorInfo), UNAVAILABLE
// (storage under the fail-closed policy; a provider's, tagged by FromProvider), PERMISSION_DENIED
// (admin). server/gateway/error_kind.h says what each is in HTTP terms.
//
// Thread safety: thread-safe; one Gateway serves every front and thread.
#ifndef ANYAI_SERVER_GATEWAY_GATEWAY_H_
#define ANYAI_SERVER_GATEWAY_GATEWAY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anyai/v1/admin.pb.h"
#include "anyai/v1/anyai.pb.h"
#include "quota/engine.h"
#include "server/gateway/auth_failure_limit.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/client_address.h"
#include "server/gateway/endpoint.h"
#include "server/gateway/image_store.h"
#include "server/gateway/observer.h"
#include "server/gateway/provider.h"
#include "server/gateway/rate_limit.h"
#include "server/gateway/validation.h"
#include "storage/key_store.h"

namespace anyai::server {

// What a front knows about a call. The views must outlive the Gateway call.
struct Caller {
  // The Authorization header (gRPC: metadata) when present. Absent: an anonymous caller, counted
  // by client address. Present, it must be "Bearer <key>": a blank or malformed one is
  // UNAUTHENTICATED, never anonymous (SPEC §3).
  std::optional<std::string_view> authorization;
  std::string_view peer;           // the transport's peer address (no port)
  std::string_view forwarded_for;  // X-Forwarded-For, or empty; believed from trusted proxies
  // Where the caller reaches the HTTP front ("http://gateway.example:8080", no trailing '/'),
  // for the URLs of generated images; empty gives URLs relative to it ("/v1/images/...").
  std::string_view public_base_url;
  // When the client stops waiting (gRPC: the call's deadline), on GatewayParts::deadline_clock.
  // A call past it at admission is DEADLINE_EXCEEDED and counts nothing; one that passes it
  // before any answer reached the client (the client then got DEADLINE_EXCEEDED from its
  // transport) is DEADLINE_EXCEEDED and gives everything back.
  absl::Time deadline = absl::InfiniteFuture();
};

// Whom a call is counted against.
struct Principal {
  // "key:<key_id>", or "ip:<network>" (ClientNetwork: "ip:203.0.113.7", "ip:2001:db8:1:2::/64")
  std::string tenant;
  quota::PlanId plan;
  std::string plan_name;
  std::optional<storage::KeyRecord> key;  // absent for anonymous callers
};

// What a call ended with: its answer or error, and the rate-limit figures of the engine's
// decision, which the front sends whatever the answer (x-ratelimit-*). `rate_limit` is set
// when the engine decided the call, admitted (whatever the provider then answered) or refused
// (429); it is empty when the call failed before (bad key, bad request) or went unmetered (the
// fail-open storage policy during a storage failure).
template <typename T>
struct Outcome {
  absl::StatusOr<T> result;
  std::optional<RateLimitState> rate_limit;
};

// What a streamed call ended with: OK after the last chunk, the provider's error, CANCELLED
// when the client went away, or the refusal (nothing was started).
struct StreamOutcome {
  absl::Status status;
  std::optional<RateLimitState> rate_limit;
};

// A stream's head, sent once the call is admitted; false when the client has gone.
using StartStream = absl::FunctionRef<bool(const std::optional<RateLimitState>&)>;

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
  std::string image_provider = kBuiltinProvider;
  std::string imagine_provider = kBuiltinProvider;
  std::string ask_provider = kBuiltinProvider;
  std::string vision_provider = kBuiltinProvider;
  std::string anonymous_plan = quota::kFreePlan;
  std::string admin_token;  // empty: the Admin service refuses everything
  StorageFailurePolicy storage_failure_policy = StorageFailurePolicy::kFailClosed;
  // An upstream failure before any output refunds the call (its request, tokens and spend);
  // true keeps its reservation charged instead.
  bool charge_upstream_failures = false;
  int max_messages = kDefaultMaxMessages;
  TrustedProxies trusted_proxies;
  // Anonymous IPv6 callers share one tenant per network of this many bits (ClientNetwork);
  // 128: one per address. IPv4 callers are one tenant per address.
  int anonymous_ipv6_prefix_length = 64;
  // Failed authentications (a malformed, unknown or revoked key, /check's `key` included)
  // allowed per client network per minute; past them, every request carrying a key from that
  // network is RESOURCE_EXHAUSTED (TooManyFailedAuthentications) until the minute has room,
  // valid keys included. Anonymous requests are not affected. 0: no limit.
  int max_failed_auth_per_minute = 60;
  // Whether recording an admission waits for the disk (fsync durability): calls that admit then
  // block their thread (AnswersWithoutBlocking).
  bool admissions_wait_for_disk = false;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // The clock of Caller::deadline: the transport's real time, not the quota clock (which
  // tests freeze).
  std::function<absl::Time()> deadline_clock = [] { return absl::Now(); };
  GatewayObserver* observer = nullptr;  // optional: told of every decision
  // Optional: where images generated with `response_format: url` are kept for their URLs.
  // Without it the provider's own URLs are answered.
  ImageStore* images = nullptr;
};

class Gateway {
 public:
  // INVALID_ARGUMENT when a part is missing: an unknown plan or provider name, a model routed
  // to a provider that does not exist.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(GatewayParts parts);

  // The caller's tenant and plan: its key's, or the anonymous plan keyed by client network.
  // RESOURCE_EXHAUSTED when the caller's network failed to authenticate too often
  // (GatewayParts::max_failed_auth_per_minute).
  absl::StatusOr<Principal> Authenticate(const Caller& caller);

  // The endpoints (SPEC §4). Each validates the request against the caller's plan, counts one
  // unit of its class, and answers through the provider the model or endpoint is routed to;
  // defaults of absent fields are filled in before the provider sees the request.
  // A chat answer names the model as the request did (an alias too, as the seed's examples show).
  Outcome<v1::ChatCompletion> Chat(const Caller& caller, const v1::ChatCompletionRequest& request);
  StreamOutcome StreamChat(const Caller& caller, const v1::ChatCompletionRequest& request,
                           StartStream start,
                           absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit);
  // With `response_format: url` (the default) and an ImageStore, the provider is asked for the
  // image bytes and the answer carries URLs of the HTTP front (ImageStore, FetchImage).
  Outcome<v1::GenerateImagesResponse> GenerateImages(const Caller& caller,
                                                     v1::GenerateImagesRequest request);
  // The image's content_type is always set ("image/png" unless the provider says otherwise).
  Outcome<v1::ImagineResponse> Imagine(const Caller& caller, v1::ImagineRequest request);
  StreamOutcome Ask(const Caller& caller, const v1::AskRequest& request, StartStream start,
                    absl::FunctionRef<bool(const v1::AskChunk&)> emit);
  // The answer always names the model that described the image.
  Outcome<v1::DescribeImageResponse> DescribeImage(const Caller& caller,
                                                   v1::DescribeImageRequest request);

  // /models, /models/{id} and /check count against the anti-abuse `meta` class.
  // The catalogue (the pointer is models()).
  Outcome<const v1::ListModelsResponse*> ListModels(const Caller& caller);
  // One model of the catalogue, or NOT_FOUND (still counted: the lookup was served). An alias
  // answers its model, under the name asked for.
  Outcome<v1::Model> GetModel(const Caller& caller, std::string_view id);
  // The usage report of `key`, or with an empty `key` the caller's own: its key's, or its
  // anonymous tenant's. A bad `key` is UNAUTHENTICATED and counts nothing.
  Outcome<v1::CheckKeyResponse> CheckKey(const Caller& caller, std::string_view key);

  // Whether a call of `endpoint` (a chat: of `chat_model`, an id or alias) runs without waiting
  // on the network or a sync to disk, so that a front may answer it on the thread that read it
  // (a gRPC polling thread, the HTTP I/O thread) instead of handing it to a worker: true for
  // /models, and for a unary chat whose model's provider answers from memory
  // (Provider::ChatsWithoutBlocking) or that will be refused as unknown, as long as admissions
  // do not wait for the disk (GatewayParts::admissions_wait_for_disk). False for every other
  // endpoint (streams, images, /check). Such a call still touches the local RocksDB: it reads a
  // key that is not cached and a tenant's usage at its first use, and its admission's write may
  // wait behind a write group that syncs (Admin's key writes) or a RocksDB write stall. Those are
  // short on a healthy disk; a stalled disk stalls the thread (and, with it, the other calls
  // read there) for as long.
  bool AnswersWithoutBlocking(Endpoint endpoint, std::string_view chat_model = {}) const;

  // A stored image by its file name ("<id>.png"), for anyone holding its URL: no key, nothing
  // counted. NOT_FOUND when unknown or expired.
  absl::StatusOr<ImageStore::Image> FetchImage(std::string_view file_name);

  // The catalogue as ListModels answers it, built once, for a front to encode once.
  const v1::ListModelsResponse& models() const { return models_; }

  // Admin service (SPEC §3): every call needs `authorization: Bearer <admin token>`.
  absl::Status AuthorizeAdmin(std::string_view authorization) const;
  // The same for a call from `peer` (the transport's peer address, no port): a wrong token is a
  // failed authentication of the peer's network (GatewayParts::max_failed_auth_per_minute, shared
  // with API keys), and past the limit every call is RESOURCE_EXHAUSTED, the right token too.
  absl::Status AuthorizeAdmin(std::string_view authorization, std::string_view peer);
  absl::StatusOr<v1::CreateKeyResponse> CreateKey(const v1::CreateKeyRequest& request);
  absl::StatusOr<v1::KeyRecord> GetKey(const v1::GetKeyRequest& request);
  absl::StatusOr<v1::ListKeysResponse> ListKeys(const v1::ListKeysRequest& request);
  absl::StatusOr<v1::KeyRecord> UpdateKey(const v1::UpdateKeyRequest& request);
  absl::StatusOr<v1::KeyRecord> RevokeKey(const v1::RevokeKeyRequest& request);
  absl::StatusOr<v1::GetUsageResponse> GetUsage(const v1::GetUsageRequest& request);

 private:
  // Where an admitted call goes: the class it counts in, the provider that answers, the chat
  // model (null for other endpoints) and what the call is estimated to cost.
  struct Route {
    quota::ClassId feature_class;
    Provider* provider;
    const ModelInfo* model = nullptr;
    quota::Cost estimate = {};
  };
  // An admitted call: who, the decision's figures (absent when unmetered), who answers, and
  // its hold on the tenant's limits (not open when unmetered).
  struct Admission {
    Principal principal;
    std::optional<RateLimitState> rate_limit;
    Provider* provider;
    quota::Reservation reservation;
    quota::ClassId feature_class;
  };
  // What a finished call used, or nullopt when it failed before any output.
  using Used = std::optional<quota::Cost>;

  explicit Gateway(GatewayParts parts);

  // Whether the caller's deadline has passed.
  bool DeadlinePassed(const Caller& caller) const;
  // Authenticates, runs `route` (validation; it may fill in defaults) and admits the call; a
  // call whose deadline has passed is refused first, before anything is looked up or counted.
  // On failure `rate_limit` gets the refusal's figures when the engine refused.
  absl::StatusOr<Admission> Admit(const Caller& caller,
                                  absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
                                  std::optional<RateLimitState>& rate_limit);
  absl::StatusOr<Admission> Count(const Principal& principal, const Route& route,
                                  std::optional<RateLimitState>& rate_limit);
  // Settles the call's reservation: to `used`; for a failure before any output (nullopt) to
  // nothing, or — when `status` is the upstream's failure (a 5xx, a timeout, a connection
  // error) and charge_upstream_failures is set — to its estimate. `rate_limit` then shows the
  // settled figures.
  void Finish(Admission& admission, const Used& used, const absl::Status& status,
              std::optional<RateLimitState>& rate_limit);
  // A unary call from admission to its end; `used` says what it used, answered or not.
  template <typename T>
  Outcome<T> Serve(const Caller& caller,
                   absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
                   absl::FunctionRef<absl::StatusOr<T>(Provider&)> answer,
                   absl::FunctionRef<Used(const absl::StatusOr<T>&)> used);
  // A streamed call; `used` says what it used once it ended with `status` (nullopt: failed
  // before any output).
  StreamOutcome ServeStream(const Caller& caller,
                            absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
                            StartStream start, absl::FunctionRef<absl::Status(Provider&)> answer,
                            absl::FunctionRef<Used(const absl::Status&)> used);
  // Validates a chat request and routes it by its model; when the request names an alias,
  // `resolved` gets the request as the provider sees it, with the model's id.
  absl::StatusOr<Route> ChatRoute(const Principal& who, const v1::ChatCompletionRequest& request,
                                  std::optional<v1::ChatCompletionRequest>& resolved);
  // Keeps every image of `response` (base64, as the provider drew it) and answers its URL.
  absl::Status HostImages(const Caller& caller, v1::GenerateImagesResponse& response);
  // The principal of `key`, presented by `caller`: refused while the caller's network is over
  // its failed-authentication limit, and a failure counted against it.
  absl::StatusOr<Principal> PrincipalOfKey(const Caller& caller, std::string_view key);
  absl::StatusOr<Principal> PrincipalOfKey(std::string_view key);
  absl::StatusOr<v1::GetUsageResponse> UsageOf(const Principal& principal);
  Provider* ProviderNamed(const std::string& name) const;
  // The network the caller is counted as (ClientNetwork of its client address).
  std::string ClientNetworkOf(const Caller& caller) const;
  int MaxMessageChars(const Principal& principal) const;

  GatewayParts parts_;
  // Chat model id -> its class and provider, resolved once; the other endpoints' routes.
  absl::flat_hash_map<std::string, Route> chat_routes_;
  Route meta_, images_, imagine_, ask_, vision_;
  v1::ListModelsResponse models_;
  AuthFailureLimit auth_failures_;
};

// The proto forms of a usage snapshot and of a key record, as every front reports them.
void ToProto(const quota::UsageSnapshot& snapshot,
             google::protobuf::RepeatedPtrField<v1::ClassUsage>* out);
v1::KeyRecord ToProto(const storage::KeyRecord& record);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_GATEWAY_H_
