#include "server/gateway/gateway.h"

#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/gateway/chat_cost.h"
#include "server/gateway/errors.h"
#include "server/gateway/log_limit.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/token_count.h"
#include "server/gateway/validation.h"
#include "storage/sha256.h"

namespace anyai::server {
namespace {

// The token of "Bearer <token>" (scheme case-insensitive), or nullopt.
std::optional<std::string_view> BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(std::string(authorization.substr(0, kScheme.size())),
                              std::string(kScheme))) {
    return std::nullopt;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

// What a client is told when the gateway's own storage fails: what and why, never where (the
// cause names RocksDB files and tenants); the cause goes to the log.
constexpr char kStorageUnavailable[] = "storage is unavailable; try again later";

absl::Status StorageFailure(absl::string_view what, const absl::Status& cause) {
  LogRateLimited(std::string_view(what.data(), what.size()),
                 absl::StrCat(what, " failed: ", cause.message()));
  return absl::UnavailableError(kStorageUnavailable);
}

// A key store's error as the Admin service answers it: its own refusals (no such key, a bad
// page token, a bad plan) as they are, anything else as a storage failure.
absl::Status KeyStoreError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return status;
    default:
      return StorageFailure("key store", status);
  }
}

// A provider's error as the client sees it, tagged by FromProvider. The upstream's failures
// (unreachable, 5xx, timed out, a malformed answer) get a fixed message: theirs name upstream
// hosts and ports; the cause goes to the log. Its refusals of the request (4xx: INVALID_ARGUMENT,
// with the upstream's own, sanitized, words), the client leaving and the rest pass unchanged.
absl::Status ProviderError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kResourceExhausted:
      return FromProvider(status);
    case absl::StatusCode::kDeadlineExceeded:
      LogRateLimited("upstream timeout", absl::StrCat("upstream timed out: ", status.message()));
      return absl::DeadlineExceededError("the upstream provider did not answer in time");
    default:
      LogRateLimited("upstream failure", absl::StrCat("upstream failed: ", status.message()));
      return FromProvider(
          absl::UnavailableError("the upstream provider is unavailable; try again later"));
  }
}

// A call whose client's deadline passed before its answer was ready.
absl::Status ClientDeadlinePassed() {
  return absl::DeadlineExceededError("the call's deadline passed before its answer was ready");
}

// A provider's answer, its error mapped to ours.
template <typename T>
absl::StatusOr<T> Upstream(absl::StatusOr<T> answer) {
  if (!answer.ok()) return ProviderError(answer.status());
  return answer;
}

// What a call that counts one request used: the request once answered, or once its client
// left (the provider worked for it); nothing when it failed.
template <typename T>
std::optional<quota::Cost> OneRequest(const absl::StatusOr<T>& answer) {
  if (answer.ok() || absl::IsCancelled(answer.status())) return quota::Cost{};
  return std::nullopt;
}

// The upstream's own failure (a 5xx, a timeout, a connection error), which
// charge_upstream_failures may charge; any other failure after admission is refunded.
bool UpstreamFailure(const absl::Status& status) {
  if (absl::IsDeadlineExceeded(status)) return true;
  if (!absl::IsUnavailable(status)) return false;
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() && info->reason() == kUpstreamUnavailableReason;
}

}  // namespace

void ToProto(const quota::UsageSnapshot& snapshot,
             google::protobuf::RepeatedPtrField<v1::ClassUsage>* out) {
  for (const quota::ClassUsage& c : snapshot.classes) {
    v1::ClassUsage* usage = out->Add();
    usage->set_feature_class(c.feature_class);
    const auto add = [](const std::vector<quota::WindowUsage>& windows,
                        google::protobuf::RepeatedPtrField<v1::WindowUsage>* into) {
      for (const quota::WindowUsage& w : windows) {
        v1::WindowUsage* window = into->Add();
        *window->mutable_window() = ToProto(w.window);
        window->set_used(w.used);
        window->set_limit(w.limit);
        window->set_remaining(w.remaining);
        *window->mutable_reset() = ToProto(w.reset);
        window->set_reserved(w.reserved);
      }
    };
    add(c.windows, usage->mutable_windows());
    add(c.token_windows, usage->mutable_token_windows());
    add(c.spend_windows, usage->mutable_spend_windows());
    usage->set_in_flight(c.in_flight);
    usage->set_max_concurrent(c.max_concurrent);
  }
}

v1::KeyRecord ToProto(const storage::KeyRecord& record) {
  v1::KeyRecord out;
  out.set_key_id(record.key_id);
  out.set_plan(record.plan);
  out.set_label(record.label);
  *out.mutable_create_time() = ToProto(record.created);
  out.set_revoked(record.revoked);
  if (record.revoked) *out.mutable_revoke_time() = ToProto(record.revoked_at);
  out.set_masked_key(record.masked_key);
  return out;
}

Gateway::Gateway(GatewayParts parts)
    : parts_(std::move(parts)),
      auth_failures_({.max_failures = parts_.max_failed_auth_per_minute,
                      .window = absl::Minutes(1),
                      .max_networks = AuthFailureLimit::Options().max_networks}) {}

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Create(GatewayParts parts) {
  if (parts.engine == nullptr || parts.keys == nullptr || parts.catalogue == nullptr) {
    return absl::InvalidArgumentError("gateway: engine, key store and catalogue are required");
  }
  std::unique_ptr<Gateway> g(new Gateway(std::move(parts)));
  const quota::Engine& engine = *g->parts_.engine;
  if (!engine.FindPlan(g->parts_.anonymous_plan).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("anonymous_plan: no plan named \"", g->parts_.anonymous_plan, "\""));
  }
  auto find_class = [&](const char* name) -> absl::StatusOr<quota::ClassId> {
    absl::StatusOr<quota::ClassId> id = engine.FindClass(name);
    if (!id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("plans: the feature class \"", name, "\" is needed by an endpoint"));
    }
    return id;
  };
  const struct {
    const char* feature_class;
    const std::string* provider;  // null: answered by the Gateway itself
    Route* route;
  } endpoints[] = {
      {quota::kMeta, nullptr, &g->meta_},
      {quota::kImageGeneration, &g->parts_.image_provider, &g->images_},
      {quota::kImagine, &g->parts_.imagine_provider, &g->imagine_},
      {quota::kGlobalAsk, &g->parts_.ask_provider, &g->ask_},
      {quota::kVision, &g->parts_.vision_provider, &g->vision_},
  };
  for (const auto& e : endpoints) {
    absl::StatusOr<quota::ClassId> id = find_class(e.feature_class);
    if (!id.ok()) return id.status();
    Provider* provider = e.provider == nullptr ? nullptr : g->ProviderNamed(*e.provider);
    if (e.provider != nullptr && provider == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no provider named \"", *e.provider, "\""));
    }
    *e.route = Route{*id, provider};
  }
  for (const ModelInfo& m : g->parts_.catalogue->models()) {
    absl::StatusOr<quota::ClassId> cls = engine.FindClass(m.feature_class);
    if (!cls.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("models: \"", m.id, "\" has the class \"",
                                                     m.feature_class, "\" that no plan meters"));
    }
    Provider* p = g->ProviderNamed(m.provider);
    if (p == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("models: \"", m.id, "\" names the unknown provider \"", m.provider, "\""));
    }
    g->chat_routes_[m.id] = Route{*cls, p};
  }
  g->models_.set_object("list");
  for (const ModelInfo& m : g->parts_.catalogue->models()) {
    v1::Model* model = g->models_.add_data();
    model->set_id(m.id);
    model->set_object("model");
    model->set_created(m.created);
    model->set_owned_by(m.owned_by);
  }
  return g;
}

Provider* Gateway::ProviderNamed(const std::string& name) const {
  auto it = parts_.providers.find(name);
  return it == parts_.providers.end() ? nullptr : it->second;
}

absl::StatusOr<Principal> Gateway::PrincipalOfKey(std::string_view key) {
  absl::StatusOr<storage::KeyRecord> record = storage::Authenticate(*parts_.keys, key);
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kUnauthenticated) {
      return Unauthenticated("unknown or revoked API key");
    }
    return StorageFailure("key store", record.status());
  }
  absl::StatusOr<quota::PlanId> plan = parts_.engine->FindPlan(record->plan);
  if (!plan.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("this key's plan \"", record->plan, "\" is not offered any more"));
  }
  return Principal{.tenant = absl::StrCat("key:", record->key_id),
                   .plan = *plan,
                   .plan_name = record->plan,
                   .key = *std::move(record)};
}

absl::StatusOr<Principal> Gateway::Authenticate(const Caller& caller) {
  if (!caller.authorization.has_value()) {
    return Principal{.tenant = absl::StrCat("ip:", ClientNetworkOf(caller)),
                     .plan = *parts_.engine->FindPlan(parts_.anonymous_plan),
                     .plan_name = parts_.anonymous_plan,
                     .key = std::nullopt};
  }
  std::optional<std::string_view> key = BearerToken(*caller.authorization);
  // A malformed header is a failed authentication too; PrincipalOfKey counts it.
  return PrincipalOfKey(caller, key.value_or(std::string_view()));
}

absl::StatusOr<Principal> Gateway::PrincipalOfKey(const Caller& caller, std::string_view key) {
  // Most callers never failed: their network is worked out only when some network has.
  std::optional<std::string> network;
  if (!auth_failures_.empty()) {
    network = ClientNetworkOf(caller);
    if (const absl::Duration wait = auth_failures_.RetryAfter(*network, parts_.clock());
        wait > absl::ZeroDuration()) {
      return TooManyFailedAuthentications(wait);
    }
  }
  absl::StatusOr<Principal> principal =
      key.empty() ? Unauthenticated("the authorization header must be \"Bearer <API key>\"")
                  : PrincipalOfKey(key);
  if (absl::IsUnauthenticated(principal.status())) {
    auth_failures_.RecordFailure(network.has_value() ? *network : ClientNetworkOf(caller),
                                 parts_.clock());
  }
  return principal;
}

std::string Gateway::ClientNetworkOf(const Caller& caller) const {
  return ClientNetwork(parts_.trusted_proxies.ClientAddress(caller.peer, caller.forwarded_for),
                       parts_.anonymous_ipv6_prefix_length);
}

int Gateway::MaxMessageChars(const Principal& principal) const {
  return parts_.engine->plan(principal.plan).max_message_chars;
}

absl::StatusOr<Gateway::Admission> Gateway::Count(const Principal& principal, const Route& route,
                                                  std::optional<RateLimitState>& rate_limit) {
  quota::Engine& engine = *parts_.engine;
  const auto start = std::chrono::steady_clock::now();
  // Decided in place (no Reservation moved out of a StatusOr); moved once, into the Admission.
  quota::Reservation r;
  const absl::Status decided = engine.Reserve(principal.tenant, principal.plan, route.feature_class,
                                              route.estimate, parts_.clock(), r);
  if (parts_.observer != nullptr && decided.ok()) {
    parts_.observer->ObserveDecision(principal.plan, r.decision(), route.feature_class,
                                     absl::FromChrono(std::chrono::steady_clock::now() - start));
  }
  if (!decided.ok()) {
    if (decided.code() == absl::StatusCode::kResourceExhausted) return decided;
    if (decided.code() != absl::StatusCode::kUnavailable) {
      LogRateLimited("admission", absl::StrCat("admission failed: ", decided.message()));
      return absl::InternalError("the request could not be counted; try again later");
    }
    if (parts_.storage_failure_policy == StorageFailurePolicy::kFailClosed) {
      return StorageFailure("usage storage", decided);
    }
    // Fail open: answered without figures (no rate-limit headers) and nothing held.
    return Admission{principal, std::nullopt, route.provider, quota::Reservation(),
                     route.feature_class};
  }
  const quota::Decision& d = r.decision();
  rate_limit = RateLimitOf(d);
  if (!d.admitted) {
    return RateLimited(RateLimitInfo{
        .feature_class = engine.class_name(d.refused_class),
        .plan = principal.plan_name,
        .kind = d.refused_kind,
        .window = d.refused_window,
        .limit = d.refused_limit,
        .requested = d.requested,
        .never_fits = d.never_fits,
        .retry_after = d.retry_after,
        .tenant_description = principal.key ? absl::StrCat("key ", principal.key->masked_key)
                                            : std::string("anonymous")});
  }
  return Admission{principal, rate_limit, route.provider, std::move(r), route.feature_class};
}

void Gateway::Finish(Admission& admission, const Used& used, const absl::Status& status,
                     std::optional<RateLimitState>& rate_limit) {
  quota::Reservation& r = admission.reservation;
  if (!r.open()) return;  // unmetered (fail open)
  const quota::Cost reserved = r.reserved();
  const quota::Cost to = used.has_value() ? *used
                         : parts_.charge_upstream_failures && UpstreamFailure(status)
                             ? reserved
                             : quota::Cost{.requests = 0};
  absl::StatusOr<quota::Settlement> settled = parts_.engine->Settle(r, to, parts_.clock());
  // A failed settlement is settled in memory all the same (its slot is free); only its record
  // is missing (engine.h, UsageSink: a lost refund over-counts, a lost overage under-counts
  // once the tenant is restored). The observer hears of it either way, as a settlement that
  // gave nothing back.
  const quota::Settlement effect = settled.ok() ? *settled : quota::Settlement{};
  if (parts_.observer != nullptr) {
    parts_.observer->ObserveSettlement(admission.principal.plan, admission.feature_class, reserved,
                                       to, effect);
  }
  if (rate_limit.has_value()) *rate_limit = Settled(*std::move(rate_limit), effect);
}

bool Gateway::DeadlinePassed(const Caller& caller) const {
  return caller.deadline != absl::InfiniteFuture() && parts_.deadline_clock() >= caller.deadline;
}

absl::StatusOr<Gateway::Admission> Gateway::Admit(
    const Caller& caller, absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
    std::optional<RateLimitState>& rate_limit) {
  if (DeadlinePassed(caller)) {
    return absl::DeadlineExceededError("the call's deadline passed before it was admitted");
  }
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  absl::StatusOr<Route> where = route(*who);
  if (!where.ok()) return where.status();
  return Count(*who, *where, rate_limit);
}

template <typename T>
Outcome<T> Gateway::Serve(const Caller& caller,
                          absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
                          absl::FunctionRef<absl::StatusOr<T>(Provider&)> answer,
                          absl::FunctionRef<Used(const absl::StatusOr<T>&)> used) {
  Outcome<T> out{.result = absl::UnknownError(""), .rate_limit = std::nullopt};
  absl::StatusOr<Admission> admission = Admit(caller, route, out.rate_limit);
  if (!admission.ok()) {
    out.result = admission.status();
    return out;
  }
  out.result = answer(*admission->provider);
  if (DeadlinePassed(caller)) {
    // The client stopped waiting before the answer was ready: it got DEADLINE_EXCEEDED from its
    // transport, and whatever the provider did is not billed.
    out.result = ClientDeadlinePassed();
    Finish(*admission, quota::Cost{.requests = 0}, out.result.status(), out.rate_limit);
    return out;
  }
  Finish(*admission, used(out.result), out.result.status(), out.rate_limit);
  return out;
}

StreamOutcome Gateway::ServeStream(const Caller& caller,
                                   absl::FunctionRef<absl::StatusOr<Route>(const Principal&)> route,
                                   StartStream start,
                                   absl::FunctionRef<absl::Status(Provider&)> answer,
                                   absl::FunctionRef<Used(const absl::Status&)> used) {
  StreamOutcome out;
  absl::StatusOr<Admission> admission = Admit(caller, route, out.rate_limit);
  if (!admission.ok()) {
    out.status = admission.status();
    return out;
  }
  if (!start(out.rate_limit)) {
    out.status = absl::CancelledError("the client went away");
    // Gone before the provider was asked: nothing was produced, nothing is charged.
    Finish(*admission, quota::Cost{.requests = 0}, out.status, out.rate_limit);
    return out;
  }
  out.status = ProviderError(answer(*admission->provider));
  if (DeadlinePassed(caller)) {
    // Past the client's deadline: what reached it before is billed, a stream that delivered
    // nothing is given back (whatever the provider did).
    out.status = ClientDeadlinePassed();
    const Used u = used(out.status);
    Finish(*admission, u.has_value() ? *u : quota::Cost{.requests = 0}, out.status, out.rate_limit);
    return out;
  }
  Finish(*admission, used(out.status), out.status, out.rate_limit);
  return out;
}

Outcome<v1::ChatCompletion> Gateway::Chat(const Caller& caller,
                                          const v1::ChatCompletionRequest& request) {
  std::optional<v1::ChatCompletionRequest> resolved;
  const ModelInfo* model = nullptr;
  Outcome<v1::ChatCompletion> out = Serve<v1::ChatCompletion>(
      caller,
      [&](const Principal& who) {
        absl::StatusOr<Route> r = ChatRoute(who, request, resolved);
        if (r.ok()) model = r->model;
        return r;
      },
      [&](Provider& provider) { return Upstream(provider.Chat(resolved ? *resolved : request)); },
      [&](const absl::StatusOr<v1::ChatCompletion>& result) -> Used {
        // The client left before the answer: the provider read the prompt.
        if (absl::IsCancelled(result.status())) return ChatUsed(*model, PromptTokens(request), 0);
        if (!result.ok()) return std::nullopt;
        const v1::ChatCompletion& answer = *result;
        if (answer.has_usage()) {
          return ChatUsed(*model, answer.usage().prompt_tokens(),
                          answer.usage().completion_tokens());
        }
        // No usage from the provider: our counter's figures for what it answered.
        int64_t completion = 0;
        for (const v1::ChatCompletionChoice& c : answer.choices()) {
          completion += CountTokens(c.message().content());
        }
        return ChatUsed(*model, PromptTokens(request), completion);
      });
  if (out.result.ok()) out.result->set_model(request.model());
  return out;
}

StreamOutcome Gateway::StreamChat(const Caller& caller, const v1::ChatCompletionRequest& request,
                                  StartStream start,
                                  absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) {
  std::optional<v1::ChatCompletionRequest> resolved;
  std::optional<StreamUsage> usage;  // from the stream's start on
  // Every chunk names the model as the request did; each one the client got is counted.
  const auto echo = [&](const v1::ChatCompletionChunk& chunk) {
    bool delivered;
    if (chunk.model() == request.model()) {
      delivered = emit(chunk);
    } else {
      v1::ChatCompletionChunk renamed = chunk;
      renamed.set_model(request.model());
      delivered = emit(renamed);
    }
    if (delivered) usage->Delivered(chunk);
    return delivered;
  };
  const ModelInfo* model = nullptr;
  return ServeStream(
      caller,
      [&](const Principal& who) {
        absl::StatusOr<Route> r = ChatRoute(who, request, resolved);
        if (r.ok()) model = r->model;
        return r;
      },
      // Counted once admitted: a refused stream counts its prompt only for the estimate.
      [&](const std::optional<RateLimitState>& rate_limit) {
        usage.emplace(*model, PromptTokens(request));
        return start(rate_limit);
      },
      [&](Provider& provider) { return provider.StreamChat(resolved ? *resolved : request, echo); },
      [&](const absl::Status& status) -> Used {
        // Cut by its upstream before any output: a failure. Otherwise (ended, cancelled, the
        // client gone, cut midway) it used what it produced.
        if (!status.ok() && status.code() != absl::StatusCode::kCancelled && !usage->produced()) {
          return std::nullopt;
        }
        return usage->Used();
      });
}

absl::StatusOr<Gateway::Route> Gateway::ChatRoute(
    const Principal& who, const v1::ChatCompletionRequest& request,
    std::optional<v1::ChatCompletionRequest>& resolved) {
  absl::StatusOr<const ModelInfo*> model =
      ValidateChatCompletion(request, *parts_.catalogue, MaxMessageChars(who), parts_.max_messages);
  if (!model.ok()) return model.status();
  if ((*model)->id != request.model()) {
    resolved = request;
    resolved->set_model((*model)->id);
  }
  Route route = chat_routes_.at((*model)->id);
  route.model = *model;
  route.estimate =
      ChatEstimate(request, **model, parts_.engine->plan(who.plan).default_token_reserve);
  return route;
}

Outcome<v1::GenerateImagesResponse> Gateway::GenerateImages(const Caller& caller,
                                                            v1::GenerateImagesRequest request) {
  bool hosted = false;  // the provider draws bytes, the answer carries our URLs
  return Serve<v1::GenerateImagesResponse>(
      caller,
      [&](const Principal& who) -> absl::StatusOr<Route> {
        absl::Status s = ValidateGenerateImages(request, parts_.image_models, MaxMessageChars(who));
        if (!s.ok()) return s;
        ApplyGenerateImagesDefaults(&request, parts_.image_models);
        hosted = parts_.images != nullptr && request.response_format() == kUrlResponseFormat;
        if (hosted) request.set_response_format(kB64JsonResponseFormat);
        return images_;
      },
      [&](Provider& provider) -> absl::StatusOr<v1::GenerateImagesResponse> {
        absl::StatusOr<v1::GenerateImagesResponse> answer =
            Upstream(provider.GenerateImages(request));
        if (hosted && answer.ok()) {
          // Images the client cannot fetch are not delivered: a failure here is refunded.
          if (absl::Status s = HostImages(caller, *answer); !s.ok()) return s;
        }
        return answer;
      },
      OneRequest<v1::GenerateImagesResponse>);
}

absl::Status Gateway::HostImages(const Caller& caller, v1::GenerateImagesResponse& response) {
  for (v1::Image& image : *response.mutable_data()) {
    if (image.b64_json().empty()) continue;  // a provider that answered a URL anyway: keep it
    std::string png;
    // Served as image/png to anyone with the URL: only a PNG is kept.
    constexpr std::string_view kPngSignature = "\x89PNG\r\n\x1a\n";
    if (!absl::Base64Unescape(image.b64_json(), &png) ||
        std::string_view(png).substr(0, kPngSignature.size()) != kPngSignature) {
      return FromProvider(
          absl::UnavailableError("the provider answered an image that is not a PNG"));
    }
    absl::StatusOr<std::string> id = parts_.images->Put(std::move(png));
    if (!id.ok())
      return absl::UnavailableError("the generated image could not be kept for its URL");
    image.set_url(absl::StrCat(
        absl::string_view(caller.public_base_url.data(), caller.public_base_url.size()),
        kImageFilesPath, *id, ".png"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageStore::Image> Gateway::FetchImage(std::string_view file_name) {
  constexpr std::string_view kSuffix = ".png";
  if (parts_.images == nullptr || file_name.size() <= kSuffix.size() ||
      file_name.substr(file_name.size() - kSuffix.size()) != kSuffix) {
    return absl::NotFoundError("no such image: it never existed or its URL has expired");
  }
  return parts_.images->Get(file_name.substr(0, file_name.size() - kSuffix.size()));
}

Outcome<v1::ImagineResponse> Gateway::Imagine(const Caller& caller, v1::ImagineRequest request) {
  Outcome<v1::ImagineResponse> out = Serve<v1::ImagineResponse>(
      caller,
      [&](const Principal& who) -> absl::StatusOr<Route> {
        absl::Status s = ValidateImagine(request, parts_.imagine_models, MaxMessageChars(who));
        if (!s.ok()) return s;
        ApplyImagineDefaults(&request, parts_.imagine_models);
        return imagine_;
      },
      [&](Provider& provider) { return Upstream(provider.Imagine(request)); },
      OneRequest<v1::ImagineResponse>);
  if (out.result.ok() && out.result->content_type().empty()) {
    out.result->set_content_type("image/png");
  }
  return out;
}

StreamOutcome Gateway::Ask(const Caller& caller, const v1::AskRequest& request, StartStream start,
                           absl::FunctionRef<bool(const v1::AskChunk&)> emit) {
  bool produced = false;
  const auto counted = [&](const v1::AskChunk& chunk) {
    const bool delivered = emit(chunk);
    produced = produced || delivered;
    return delivered;
  };
  return ServeStream(
      caller,
      [&](const Principal& who) -> absl::StatusOr<Route> {
        absl::Status s = ValidateAsk(request, MaxMessageChars(who));
        if (!s.ok()) return s;
        return ask_;
      },
      start, [&](Provider& provider) { return provider.Ask(request, counted); },
      [&](const absl::Status& status) -> Used {
        if (!status.ok() && status.code() != absl::StatusCode::kCancelled && !produced) {
          return std::nullopt;  // failed before any output
        }
        return quota::Cost{};
      });
}

Outcome<v1::DescribeImageResponse> Gateway::DescribeImage(const Caller& caller,
                                                          v1::DescribeImageRequest request) {
  Outcome<v1::DescribeImageResponse> out = Serve<v1::DescribeImageResponse>(
      caller,
      [&](const Principal&) -> absl::StatusOr<Route> {
        absl::Status s = ValidateDescribeImage(request, parts_.vision_models);
        if (!s.ok()) return s;
        ApplyDescribeImageDefaults(&request, parts_.vision_models);
        return vision_;
      },
      [&](Provider& provider) { return Upstream(provider.DescribeImage(request)); },
      OneRequest<v1::DescribeImageResponse>);
  if (out.result.ok() && out.result->model().empty()) out.result->set_model(request.model());
  return out;
}

bool Gateway::AnswersWithoutBlocking(Endpoint endpoint, std::string_view chat_model) const {
  if (parts_.admissions_wait_for_disk) return false;
  switch (endpoint) {
    case Endpoint::kModels:
      return true;
    case Endpoint::kChatCompletions: {
      const ModelInfo* model = parts_.catalogue->Resolve(chat_model);
      if (model == nullptr) return true;  // refused before anything is counted
      return chat_routes_.at(model->id).provider->ChatsWithoutBlocking();
    }
    default:
      return false;
  }
}

Outcome<const v1::ListModelsResponse*> Gateway::ListModels(const Caller& caller) {
  Outcome<const v1::ListModelsResponse*> out{.result = &models_, .rate_limit = std::nullopt};
  absl::StatusOr<Admission> admission = Admit(
      caller, [&](const Principal&) { return meta_; }, out.rate_limit);
  if (!admission.ok()) out.result = admission.status();
  return out;
}

Outcome<v1::Model> Gateway::GetModel(const Caller& caller, std::string_view id) {
  Outcome<v1::Model> out{.result = UnknownModel("model", std::string(id)),
                         .rate_limit = std::nullopt};
  absl::StatusOr<Admission> admission = Admit(
      caller, [&](const Principal&) { return meta_; }, out.rate_limit);
  if (!admission.ok()) {
    out.result = admission.status();
    return out;
  }
  if (const ModelInfo* m = parts_.catalogue->Resolve(id)) {
    v1::Model model;
    model.set_id(std::string(id));
    model.set_object("model");
    model.set_created(m->created);
    model.set_owned_by(m->owned_by);
    out.result = std::move(model);
  }
  return out;
}

absl::StatusOr<v1::GetUsageResponse> Gateway::UsageOf(const Principal& principal) {
  absl::StatusOr<quota::UsageSnapshot> snapshot =
      parts_.engine->Usage(principal.tenant, principal.plan, parts_.clock());
  if (!snapshot.ok()) return StorageFailure("usage storage", snapshot.status());
  v1::GetUsageResponse out;
  out.set_tenant(principal.tenant);
  out.set_plan(principal.plan_name);
  if (principal.key.has_value()) *out.mutable_key() = ToProto(*principal.key);
  ToProto(*snapshot, out.mutable_classes());
  return out;
}

Outcome<v1::CheckKeyResponse> Gateway::CheckKey(const Caller& caller, std::string_view key) {
  Outcome<v1::CheckKeyResponse> out{.result = absl::UnknownError(""), .rate_limit = std::nullopt};
  // The key asked about is checked first: a bad key is a 401 that counts nothing.
  std::optional<Principal> asked;
  if (!key.empty()) {
    absl::StatusOr<Principal> p = PrincipalOfKey(caller, key);
    if (!p.ok()) {
      out.result = p.status();
      return out;
    }
    asked = *std::move(p);
  }
  absl::StatusOr<Admission> meta = Admit(
      caller, [&](const Principal&) { return meta_; }, out.rate_limit);
  if (!meta.ok()) {
    out.result = meta.status();
    return out;
  }
  const Principal& target = asked.has_value() ? *asked : meta->principal;
  absl::StatusOr<v1::GetUsageResponse> usage = UsageOf(target);
  if (!usage.ok()) {
    out.result = usage.status();
    Finish(*meta, std::nullopt, out.result.status(), out.rate_limit);  // no report: given back
    return out;
  }
  v1::CheckKeyResponse report;
  report.set_plan(usage->plan());
  if (target.key.has_value()) {
    report.set_masked_key(target.key->masked_key);
    report.set_created(absl::ToUnixSeconds(target.key->created));
  }
  *report.mutable_classes() = std::move(*usage->mutable_classes());
  out.result = std::move(report);
  return out;
}

absl::Status Gateway::AuthorizeAdmin(std::string_view authorization) const {
  if (parts_.admin_token.empty()) {
    return absl::PermissionDeniedError(
        "the Admin service is disabled: set ANYAI_ADMIN_TOKEN (or admin_token in the config)");
  }
  std::optional<std::string_view> token = BearerToken(authorization);
  if (!token.has_value() || !storage::ConstantTimeEquals(*token, parts_.admin_token)) {
    return absl::UnauthenticatedError(
        "the Admin service needs authorization: Bearer <admin token>");
  }
  return absl::OkStatus();
}

absl::Status Gateway::AuthorizeAdmin(std::string_view authorization, std::string_view peer) {
  const std::string network = ClientNetwork(CanonicalAddress(peer).value_or(std::string(peer)),
                                            parts_.anonymous_ipv6_prefix_length);
  if (const absl::Duration wait = auth_failures_.RetryAfter(network, parts_.clock());
      wait > absl::ZeroDuration()) {
    return TooManyFailedAuthentications(wait);
  }
  absl::Status status = AuthorizeAdmin(authorization);
  if (absl::IsUnauthenticated(status)) auth_failures_.RecordFailure(network, parts_.clock());
  return status;
}

absl::StatusOr<v1::CreateKeyResponse> Gateway::CreateKey(const v1::CreateKeyRequest& request) {
  if (!parts_.engine->FindPlan(request.plan()).ok()) {
    return InvalidField("plan",
                        absl::StrCat("no plan named \"", QuoteForMessage(request.plan()), "\""));
  }
  absl::StatusOr<storage::CreatedKey> created =
      parts_.keys->Create(request.plan(), request.label(), parts_.clock());
  if (!created.ok()) return KeyStoreError(created.status());
  v1::CreateKeyResponse out;
  *out.mutable_record() = ToProto(created->record);
  out.set_key(created->key);
  return out;
}

absl::StatusOr<v1::KeyRecord> Gateway::GetKey(const v1::GetKeyRequest& request) {
  absl::StatusOr<storage::KeyRecord> record = parts_.keys->Get(request.key_id());
  if (!record.ok()) return KeyStoreError(record.status());
  return ToProto(*record);
}

absl::StatusOr<v1::ListKeysResponse> Gateway::ListKeys(const v1::ListKeysRequest& request) {
  absl::StatusOr<storage::KeyPage> page =
      parts_.keys->List(request.page_size(), request.page_token());
  if (!page.ok()) return KeyStoreError(page.status());
  v1::ListKeysResponse out;
  for (const storage::KeyRecord& r : page->keys) {
    if (r.revoked && !request.show_revoked()) continue;
    *out.add_keys() = ToProto(r);
  }
  out.set_next_page_token(page->next_page_token);
  return out;
}

absl::StatusOr<v1::KeyRecord> Gateway::UpdateKey(const v1::UpdateKeyRequest& request) {
  storage::KeyUpdate update;
  if (request.has_plan()) {
    if (!parts_.engine->FindPlan(request.plan()).ok()) {
      return InvalidField("plan",
                          absl::StrCat("no plan named \"", QuoteForMessage(request.plan()), "\""));
    }
    update.plan = request.plan();
  }
  if (request.has_label()) update.label = request.label();
  absl::StatusOr<storage::KeyRecord> record = parts_.keys->Update(request.key_id(), update);
  if (!record.ok()) return KeyStoreError(record.status());
  return ToProto(*record);
}

absl::StatusOr<v1::KeyRecord> Gateway::RevokeKey(const v1::RevokeKeyRequest& request) {
  absl::StatusOr<storage::KeyRecord> record = parts_.keys->Revoke(request.key_id(), parts_.clock());
  if (!record.ok()) return KeyStoreError(record.status());
  return ToProto(*record);
}

absl::StatusOr<v1::GetUsageResponse> Gateway::GetUsage(const v1::GetUsageRequest& request) {
  Principal principal;
  switch (request.tenant_case()) {
    case v1::GetUsageRequest::kKey: {
      // Revoked keys too: the admin may look at what a revoked key used.
      absl::StatusOr<storage::KeyRecord> r = parts_.keys->Lookup(storage::Sha256(request.key()));
      if (!r.ok()) {
        return r.status().code() == absl::StatusCode::kNotFound
                   ? absl::NotFoundError("no such API key")
                   : KeyStoreError(r.status());
      }
      v1::GetUsageRequest by_id;
      by_id.set_key_id(r->key_id);
      return GetUsage(by_id);
    }
    case v1::GetUsageRequest::kKeyId: {
      absl::StatusOr<storage::KeyRecord> r = parts_.keys->Get(request.key_id());
      if (!r.ok()) return KeyStoreError(r.status());
      absl::StatusOr<quota::PlanId> plan = parts_.engine->FindPlan(r->plan);
      if (!plan.ok())
        return absl::FailedPreconditionError("the key's plan is not offered any more");
      principal = Principal{absl::StrCat("key:", r->key_id), *plan, r->plan, *r};
      break;
    }
    case v1::GetUsageRequest::kIp: {
      const std::optional<std::string> ip = CanonicalAddress(request.ip());
      if (!ip.has_value()) return InvalidField("ip", "not an IPv4 or IPv6 address");
      // Any address of an IPv6 network names the network's tenant.
      principal = Principal{
          absl::StrCat("ip:", ClientNetwork(*ip, parts_.anonymous_ipv6_prefix_length)),
          *parts_.engine->FindPlan(parts_.anonymous_plan), parts_.anonymous_plan, std::nullopt};
      break;
    }
    default:
      return InvalidField("tenant", "one of key, key_id or ip is required");
  }
  return UsageOf(principal);
}

}  // namespace anyai::server
