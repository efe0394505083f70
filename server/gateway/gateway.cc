#include "server/gateway/gateway.h"

#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/gateway/errors.h"
#include "server/gateway/validation.h"
#include "storage/sha256.h"

namespace anyai::server {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Duration DurationProto(absl::Duration d) {
  return TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(d));
}

google::protobuf::Timestamp TimestampProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

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

}  // namespace

void ToProto(const quota::UsageSnapshot& snapshot,
             google::protobuf::RepeatedPtrField<v1::ClassUsage>* out) {
  for (const quota::ClassUsage& c : snapshot.classes) {
    v1::ClassUsage* usage = out->Add();
    usage->set_feature_class(c.feature_class);
    for (const quota::WindowUsage& w : c.windows) {
      v1::WindowUsage* window = usage->add_windows();
      *window->mutable_window() = DurationProto(w.window);
      window->set_used(w.used);
      window->set_limit(w.limit);
      window->set_remaining(w.remaining);
      *window->mutable_reset() = DurationProto(w.reset);
    }
  }
}

v1::KeyRecord ToProto(const storage::KeyRecord& record) {
  v1::KeyRecord out;
  out.set_key_id(record.key_id);
  out.set_plan(record.plan);
  out.set_label(record.label);
  *out.mutable_create_time() = TimestampProto(record.created);
  out.set_revoked(record.revoked);
  if (record.revoked) *out.mutable_revoke_time() = TimestampProto(record.revoked_at);
  out.set_masked_key(record.masked_key);
  return out;
}

Gateway::Gateway(GatewayParts parts) : parts_(std::move(parts)) {}

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
  for (auto [name, slot] : {std::pair{quota::kMeta, &g->meta_class_},
                            std::pair{quota::kImageGeneration, &g->image_class_},
                            std::pair{quota::kImagine, &g->imagine_class_},
                            std::pair{quota::kGlobalAsk, &g->ask_class_},
                            std::pair{quota::kVision, &g->vision_class_}}) {
    absl::StatusOr<quota::ClassId> id = find_class(name);
    if (!id.ok()) return id.status();
    *slot = *id;
  }
  for (const std::string* name : {&g->parts_.image_provider, &g->parts_.imagine_provider,
                                  &g->parts_.ask_provider, &g->parts_.vision_provider}) {
    if (g->ProviderNamed(*name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no provider named \"", *name, "\""));
    }
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
    return absl::UnavailableError(
        absl::StrCat("key store unavailable: ", record.status().message()));
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
  if (caller.authorization.empty()) {
    const std::string ip = parts_.trusted_proxies.ClientAddress(caller.peer, caller.forwarded_for);
    return Principal{.tenant = absl::StrCat("ip:", ip),
                     .plan = *parts_.engine->FindPlan(parts_.anonymous_plan),
                     .plan_name = parts_.anonymous_plan,
                     .key = std::nullopt};
  }
  std::optional<std::string_view> key = BearerToken(caller.authorization);
  if (!key.has_value()) {
    return Unauthenticated("the authorization header must be \"Bearer <API key>\"");
  }
  return PrincipalOfKey(*key);
}

absl::StatusOr<Admitted> Gateway::Admit(const Principal& principal, quota::ClassId feature_class,
                                        Provider* provider) {
  quota::Engine& engine = *parts_.engine;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<quota::Decision> d =
      engine.Admit(principal.tenant, principal.plan, feature_class, parts_.clock());
  if (parts_.observer != nullptr && d.ok()) {
    parts_.observer->ObserveDecision(principal.plan, *d, feature_class,
                                    absl::FromChrono(std::chrono::steady_clock::now() - start));
  }
  if (!d.ok()) {
    if (d.status().code() != absl::StatusCode::kUnavailable) return d.status();
    if (parts_.storage_failure_policy == StorageFailurePolicy::kFailClosed) {
      return absl::UnavailableError(
          absl::StrCat("usage storage unavailable, request refused: ", d.status().message()));
    }
    // Fail open: answer without a usable decision (limit 0: no rate-limit headers).
    quota::Decision unmetered;
    unmetered.admitted = true;
    return Admitted{principal, unmetered, provider};
  }
  if (!d->admitted) {
    return RateLimited(RateLimitInfo{
        .feature_class = engine.class_name(d->refused_class),
        .plan = principal.plan_name,
        .window = d->refused_window,
        .limit = d->limit,
        .retry_after = d->retry_after,
        .tenant_description = principal.key ? absl::StrCat("key ", principal.key->masked_key)
                                            : std::string("anonymous")});
  }
  return Admitted{principal, *d, provider};
}

absl::StatusOr<Admitted> Gateway::AdmitChat(const Caller& caller,
                                            const v1::ChatCompletionRequest& request) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  absl::StatusOr<const ModelInfo*> model =
      ValidateChatCompletion(request, *parts_.catalogue,
                             parts_.engine->plan(who->plan).max_message_chars, parts_.max_messages);
  if (!model.ok()) return model.status();
  const Route& route = chat_routes_.at((*model)->id);
  return Admit(*who, route.feature_class, route.provider);
}

absl::StatusOr<Admitted> Gateway::AdmitImages(const Caller& caller,
                                              v1::GenerateImagesRequest& request) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  if (absl::Status s = ValidateGenerateImages(request, parts_.image_models,
                                              parts_.engine->plan(who->plan).max_message_chars);
      !s.ok()) {
    return s;
  }
  ApplyGenerateImagesDefaults(&request, parts_.image_models);
  return Admit(*who, image_class_, ProviderNamed(parts_.image_provider));
}

absl::StatusOr<Admitted> Gateway::AdmitImagine(const Caller& caller, v1::ImagineRequest& request) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  if (absl::Status s = ValidateImagine(request, parts_.imagine_models,
                                       parts_.engine->plan(who->plan).max_message_chars);
      !s.ok()) {
    return s;
  }
  ApplyImagineDefaults(&request, parts_.imagine_models);
  return Admit(*who, imagine_class_, ProviderNamed(parts_.imagine_provider));
}

absl::StatusOr<Admitted> Gateway::AdmitAsk(const Caller& caller, const v1::AskRequest& request) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  if (absl::Status s = ValidateAsk(request, parts_.engine->plan(who->plan).max_message_chars);
      !s.ok()) {
    return s;
  }
  return Admit(*who, ask_class_, ProviderNamed(parts_.ask_provider));
}

absl::StatusOr<Admitted> Gateway::AdmitVision(const Caller& caller,
                                              v1::DescribeImageRequest& request) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  if (absl::Status s = ValidateDescribeImage(request, parts_.vision_models); !s.ok()) return s;
  ApplyDescribeImageDefaults(&request, parts_.vision_models);
  return Admit(*who, vision_class_, ProviderNamed(parts_.vision_provider));
}

absl::StatusOr<Admitted> Gateway::AdmitMeta(const Caller& caller) {
  absl::StatusOr<Principal> who = Authenticate(caller);
  if (!who.ok()) return who.status();
  return Admit(*who, meta_class_, nullptr);
}

absl::StatusOr<v1::GetUsageResponse> Gateway::UsageOf(const Principal& principal) {
  absl::StatusOr<quota::UsageSnapshot> snapshot =
      parts_.engine->Usage(principal.tenant, principal.plan, parts_.clock());
  if (!snapshot.ok()) {
    return absl::UnavailableError(
        absl::StrCat("usage storage unavailable: ", snapshot.status().message()));
  }
  v1::GetUsageResponse out;
  out.set_tenant(principal.tenant);
  out.set_plan(principal.plan_name);
  if (principal.key.has_value()) *out.mutable_key() = ToProto(*principal.key);
  ToProto(*snapshot, out.mutable_classes());
  return out;
}

absl::StatusOr<v1::CheckKeyResponse> Gateway::CheckKey(const Caller& caller, std::string_view key,
                                                       quota::Decision* decision) {
  // The key asked about is checked first: a bad key is a 401 that counts nothing.
  std::optional<Principal> asked;
  if (!key.empty()) {
    absl::StatusOr<Principal> p = PrincipalOfKey(key);
    if (!p.ok()) return p.status();
    asked = *std::move(p);
  }
  absl::StatusOr<Admitted> meta = AdmitMeta(caller);
  if (!meta.ok()) return meta.status();
  if (decision != nullptr) *decision = meta->decision;
  const Principal& target = asked.has_value() ? *asked : meta->principal;
  absl::StatusOr<v1::GetUsageResponse> usage = UsageOf(target);
  if (!usage.ok()) return usage.status();
  v1::CheckKeyResponse out;
  out.set_plan(usage->plan());
  if (target.key.has_value()) {
    out.set_masked_key(target.key->masked_key);
    out.set_created(absl::ToUnixSeconds(target.key->created));
  }
  *out.mutable_classes() = std::move(*usage->mutable_classes());
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

absl::StatusOr<v1::CreateKeyResponse> Gateway::CreateKey(const v1::CreateKeyRequest& request) {
  if (!parts_.engine->FindPlan(request.plan()).ok()) {
    return InvalidField("plan",
                        absl::StrCat("no plan named \"", QuoteForMessage(request.plan()), "\""));
  }
  absl::StatusOr<storage::CreatedKey> created =
      parts_.keys->Create(request.plan(), request.label(), parts_.clock());
  if (!created.ok()) return created.status();
  v1::CreateKeyResponse out;
  *out.mutable_record() = ToProto(created->record);
  out.set_key(created->key);
  return out;
}

absl::StatusOr<v1::KeyRecord> Gateway::GetKey(const v1::GetKeyRequest& request) {
  absl::StatusOr<storage::KeyRecord> record = parts_.keys->Get(request.key_id());
  if (!record.ok()) return record.status();
  return ToProto(*record);
}

absl::StatusOr<v1::ListKeysResponse> Gateway::ListKeys(const v1::ListKeysRequest& request) {
  absl::StatusOr<storage::KeyPage> page =
      parts_.keys->List(request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
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
  if (!record.ok()) return record.status();
  return ToProto(*record);
}

absl::StatusOr<v1::KeyRecord> Gateway::RevokeKey(const v1::RevokeKeyRequest& request) {
  absl::StatusOr<storage::KeyRecord> record = parts_.keys->Revoke(request.key_id(), parts_.clock());
  if (!record.ok()) return record.status();
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
                   : r.status();
      }
      v1::GetUsageRequest by_id;
      by_id.set_key_id(r->key_id);
      return GetUsage(by_id);
    }
    case v1::GetUsageRequest::kKeyId: {
      absl::StatusOr<storage::KeyRecord> r = parts_.keys->Get(request.key_id());
      if (!r.ok()) return r.status();
      absl::StatusOr<quota::PlanId> plan = parts_.engine->FindPlan(r->plan);
      if (!plan.ok())
        return absl::FailedPreconditionError("the key's plan is not offered any more");
      principal = Principal{absl::StrCat("key:", r->key_id), *plan, r->plan, *r};
      break;
    }
    case v1::GetUsageRequest::kIp: {
      const std::optional<std::string> ip = CanonicalAddress(request.ip());
      if (!ip.has_value()) return InvalidField("ip", "not an IPv4 or IPv6 address");
      principal =
          Principal{absl::StrCat("ip:", *ip), *parts_.engine->FindPlan(parts_.anonymous_plan),
                    parts_.anonymous_plan, std::nullopt};
      break;
    }
    default:
      return InvalidField("tenant", "one of key, key_id or ip is required");
  }
  return UsageOf(principal);
}

}  // namespace anyai::server
