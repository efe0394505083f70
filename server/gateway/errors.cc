#include "server/gateway/errors.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/rate_limit.h"
#include "server/gateway/render_memo.h"

namespace anyai::server {
namespace {

constexpr absl::string_view kTypeUrlPrefix = "type.googleapis.com/";

// Serialized deterministically (map entries, such as ErrorInfo.metadata, sorted by key), so
// that the same error always has the same bytes on the wire.
void Attach(absl::Status& status, absl::string_view type_url,
            const google::protobuf::MessageLite& detail) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    detail.SerializeToCodedStream(&coded);
  }
  status.SetPayload(type_url, absl::Cord(std::move(bytes)));
}

template <typename T>
std::optional<T> GetDetail(const absl::Status& status, absl::string_view type_url) {
  auto payload = status.GetPayload(type_url);
  if (!payload.has_value()) return std::nullopt;
  T detail;
  if (!detail.ParseFromString(std::string(*payload))) return std::nullopt;
  return detail;
}

// A duration as a decimal number of seconds: "60" for whole seconds, "1.5" otherwise.
std::string SecondsText(absl::Duration d) {
  if (d == absl::Seconds(absl::ToInt64Seconds(d))) {
    return absl::StrCat(absl::ToInt64Seconds(d));
  }
  return absl::StrCat(absl::ToDoubleSeconds(d));
}

}  // namespace

std::string QuoteForMessage(std::string_view text, size_t max_bytes) {
  const bool truncated = text.size() > max_bytes;
  if (truncated) text = text.substr(0, max_bytes);
  std::string quoted = absl::CHexEscape(absl::string_view(text.data(), text.size()));
  if (truncated) quoted += "...";
  return quoted;
}

absl::Status InvalidRequest(std::vector<FieldViolation> violations) {
  std::string message = violations.empty() ? std::string("invalid request")
                                           : absl::StrCat(violations.front().field, ": ",
                                                          violations.front().description);
  absl::Status status(absl::StatusCode::kInvalidArgument, message);
  google::rpc::BadRequest bad_request;
  for (FieldViolation& v : violations) {
    google::rpc::BadRequest::FieldViolation* out = bad_request.add_field_violations();
    out->set_field(std::move(v.field));
    out->set_description(std::move(v.description));
  }
  Attach(status, kBadRequestTypeUrl, bad_request);
  return status;
}

absl::Status InvalidField(std::string field, std::string description) {
  std::vector<FieldViolation> violations;
  violations.push_back({std::move(field), std::move(description)});
  return InvalidRequest(std::move(violations));
}

absl::Status UnknownModel(std::string field, std::string model) {
  const std::string quoted = QuoteForMessage(model);
  const std::string description = absl::StrCat("the model \"", quoted, "\" does not exist");
  absl::Status status(absl::StatusCode::kNotFound, absl::StrCat(field, ": ", description));

  google::rpc::ResourceInfo resource;
  resource.set_resource_type("model");
  resource.set_resource_name(quoted);
  resource.set_description(description);
  Attach(status, kResourceInfoTypeUrl, resource);

  google::rpc::ErrorInfo info;
  info.set_reason(kModelNotFoundReason);
  info.set_domain(kErrorDomain);
  (*info.mutable_metadata())["field"] = std::move(field);
  (*info.mutable_metadata())["model"] = quoted;
  Attach(status, kErrorInfoTypeUrl, info);
  return status;
}

namespace {

// The retry a refusal shows (message and RetryInfo): rounded up to whole milliseconds, at least 0.
absl::Duration ShownRetry(absl::Duration retry_after) {
  return std::max(absl::Ceil(retry_after, absl::Milliseconds(1)), absl::ZeroDuration());
}

}  // namespace

RateLimitInfo RateLimitKey(RateLimitInfo key) {
  using quota::LimitKind;
  // Concurrency has no window; a request or a call asks one of it, said only when it never fits.
  if (key.kind == LimitKind::kConcurrency) key.window = absl::ZeroDuration();
  if (key.kind != LimitKind::kTokens && key.kind != LimitKind::kSpend && !key.never_fits) {
    key.requested = 0;
  }
  key.retry_after = key.never_fits ? absl::ZeroDuration() : ShownRetry(key.retry_after);
  return key;
}

absl::Status RateLimited(RateLimitInfo info) {
  // Each thread its own: no lock on the refusal path. 64 slots hold the refusals of many
  // tenants, classes and plans at once (a slot is a few hundred bytes).
  thread_local RenderMemo<RateLimitInfo, absl::Status, 64> memo;
  const RateLimitInfo key = RateLimitKey(std::move(info));
  const size_t hash = absl::Hash<
      std::tuple<const std::string&, const std::string&, quota::LimitKind, absl::Duration, int64_t,
                 int64_t, bool, absl::Duration, const std::string&>>()(
      std::tie(key.feature_class, key.plan, key.kind, key.window, key.limit, key.requested,
               key.never_fits, key.retry_after, key.tenant_description));
  return memo.Get(key, hash, [](const RateLimitInfo& k) { return RateLimitedUncached(k); });
}

absl::Status RateLimitedUncached(const RateLimitInfo& info) {
  using quota::LimitKind;
  // The one rounding of the contract; every other field as given, so that a test comparing this
  // with the memo's (built from RateLimitKey) finds a key that drops what the client sees.
  const absl::Duration retry_after = ShownRetry(info.retry_after);
  // An amount in the limit's unit: "1 request", "20000 tokens", "$1.50", "4 calls".
  const auto amount = [&info](int64_t n) -> std::string {
    switch (info.kind) {
      case LimitKind::kRequests:
        return absl::StrCat(n, n == 1 ? " request" : " requests");
      case LimitKind::kTokens:
        return absl::StrCat(n, n == 1 ? " token" : " tokens");
      case LimitKind::kSpend:
        return FormatUsd(n);
      case LimitKind::kConcurrency:
        return absl::StrCat(n, n == 1 ? " call" : " calls");
    }
    return absl::StrCat(n);
  };
  const std::string window = absl::FormatDuration(info.window);
  const std::string plan = absl::StrCat(" on the ", info.plan, " plan");
  std::string quota;
  switch (info.kind) {
    case LimitKind::kRequests:
    case LimitKind::kTokens:
      quota = absl::StrCat(amount(info.limit), " per ", window, plan);
      break;
    case LimitKind::kSpend:
      quota = absl::StrCat(amount(info.limit), " of spend per ", window, plan);
      break;
    case LimitKind::kConcurrency:
      quota = absl::StrCat("at most ", amount(info.limit), " in flight", plan);
      break;
  }
  // What the call asked of the limit, where it is more than the one request or call it always is.
  const bool costs = info.kind == LimitKind::kTokens || info.kind == LimitKind::kSpend;
  const std::string needs = info.kind == LimitKind::kSpend
                                ? absl::StrCat("may cost up to ", amount(info.requested))
                                : absl::StrCat("needs ", amount(info.requested));

  std::string message = absl::StrCat("Rate limit exceeded for ", info.feature_class, ": ");
  if (info.never_fits) {
    absl::StrAppend(
        &message, "this request ", needs, " but the ", info.plan, " plan allows ",
        info.kind == LimitKind::kSpend ? amount(info.limit) : absl::StrCat(info.limit),
        info.kind == LimitKind::kConcurrency ? " in flight" : absl::StrCat(" per ", window));
    if (!info.tenant_description.empty()) {
      absl::StrAppend(&message, " (", info.tenant_description, ")");
    }
    absl::StrAppend(&message, ": it can never be admitted",
                    costs ? "; lower max_tokens or shorten the prompt" : "");
  } else {
    absl::StrAppend(&message, quota);
    // The unit is the limit's, just named: "20000 tokens per 1m ... (this request needs 1200)".
    std::string aside = info.kind == LimitKind::kTokens
                            ? absl::StrCat("this request needs ", info.requested)
                        : info.kind == LimitKind::kSpend ? absl::StrCat("this request ", needs)
                                                         : std::string();
    if (!info.tenant_description.empty()) {
      absl::StrAppend(&aside, aside.empty() ? "" : "; ", info.tenant_description);
    }
    if (!aside.empty()) absl::StrAppend(&message, " (", aside, ")");
    absl::StrAppend(&message, "; retry after ", RetryAfterSeconds(retry_after), "s");
  }
  absl::Status status(absl::StatusCode::kResourceExhausted, message);

  google::rpc::QuotaFailure failure;
  google::rpc::QuotaFailure::Violation* violation = failure.add_violations();
  violation->set_subject(absl::StrCat("feature_class:", info.feature_class));
  violation->set_description(quota);
  Attach(status, kQuotaFailureTypeUrl, failure);

  if (!info.never_fits) {
    google::rpc::RetryInfo retry;
    *retry.mutable_retry_delay() = ToProto(retry_after);
    Attach(status, kRetryInfoTypeUrl, retry);
  }

  google::rpc::ErrorInfo error_info;
  error_info.set_reason(kRateLimitExceededReason);
  error_info.set_domain(kErrorDomain);
  auto& metadata = *error_info.mutable_metadata();
  metadata["feature_class"] = info.feature_class;
  metadata["limit_kind"] = LimitKindName(info.kind);
  if (info.kind != LimitKind::kConcurrency) metadata["window_seconds"] = SecondsText(info.window);
  metadata["limit"] = absl::StrCat(info.limit);
  if (costs) metadata["requested"] = absl::StrCat(info.requested);
  if (info.never_fits) metadata["never_fits"] = "true";
  metadata["plan"] = info.plan;
  Attach(status, kErrorInfoTypeUrl, error_info);
  return status;
}

absl::Status Unauthenticated(std::string why) {
  absl::Status status(absl::StatusCode::kUnauthenticated, why);
  google::rpc::ErrorInfo info;
  info.set_reason(kApiKeyInvalidReason);
  info.set_domain(kErrorDomain);
  Attach(status, kErrorInfoTypeUrl, info);
  return status;
}

absl::Status TooManyFailedAuthentications(absl::Duration retry_after) {
  absl::Status status(absl::StatusCode::kResourceExhausted,
                      absl::StrCat("too many failed authentications from this address; retry in ",
                                   RetryAfterSeconds(retry_after), "s"));
  google::rpc::RetryInfo retry;
  *retry.mutable_retry_delay() = ToProto(std::max(retry_after, absl::ZeroDuration()));
  Attach(status, kRetryInfoTypeUrl, retry);
  google::rpc::ErrorInfo info;
  info.set_reason(kTooManyFailedAuthenticationsReason);
  info.set_domain(kErrorDomain);
  Attach(status, kErrorInfoTypeUrl, info);
  return status;
}

absl::Status FromProvider(absl::Status status) {
  if (status.code() != absl::StatusCode::kUnavailable) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(kUpstreamUnavailableReason);
  info.set_domain(kErrorDomain);
  Attach(status, kErrorInfoTypeUrl, info);
  return status;
}

std::optional<google::rpc::BadRequest> GetBadRequest(const absl::Status& status) {
  return GetDetail<google::rpc::BadRequest>(status, kBadRequestTypeUrl);
}

std::optional<google::rpc::QuotaFailure> GetQuotaFailure(const absl::Status& status) {
  return GetDetail<google::rpc::QuotaFailure>(status, kQuotaFailureTypeUrl);
}

std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status) {
  return GetDetail<google::rpc::RetryInfo>(status, kRetryInfoTypeUrl);
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  return GetDetail<google::rpc::ErrorInfo>(status, kErrorInfoTypeUrl);
}

std::optional<google::rpc::ResourceInfo> GetResourceInfo(const absl::Status& status) {
  return GetDetail<google::rpc::ResourceInfo>(status, kResourceInfoTypeUrl);
}

std::string ErrorField(const absl::Status& status) {
  if (std::optional<google::rpc::BadRequest> bad = GetBadRequest(status);
      bad.has_value() && bad->field_violations_size() > 0) {
    return bad->field_violations(0).field();
  }
  if (std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status); info.has_value()) {
    auto it = info->metadata().find("field");
    if (it != info->metadata().end()) return it->second;
  }
  return "";
}

google::rpc::Status ToRpcStatus(const absl::Status& status) {
  google::rpc::Status rpc;
  rpc.set_code(static_cast<int32_t>(status.code()));
  if (status.ok()) return rpc;
  rpc.set_message(std::string(status.message()));
  std::vector<std::pair<std::string, std::string>> details;
  status.ForEachPayload([&details](absl::string_view type_url, const absl::Cord& payload) {
    if (absl::StartsWith(type_url, kTypeUrlPrefix)) {
      details.emplace_back(std::string(type_url), std::string(payload));
    }
  });
  // ForEachPayload's order is unspecified (Abseil randomises it), so fix one.
  std::sort(details.begin(), details.end());
  for (auto& [type_url, value] : details) {
    google::protobuf::Any* any = rpc.add_details();
    any->set_type_url(std::move(type_url));
    any->set_value(std::move(value));
  }
  return rpc;
}

absl::Status FromRpcStatus(const google::rpc::Status& rpc) {
  if (rpc.code() == 0) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (rpc.code() > 0 && rpc.code() <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<absl::StatusCode>(rpc.code());
  }
  absl::Status status(code, rpc.message());
  for (const google::protobuf::Any& any : rpc.details()) {
    status.SetPayload(any.type_url(), absl::Cord(any.value()));
  }
  return status;
}

}  // namespace anyai::server
