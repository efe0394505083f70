#include "server/http/http_status.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "nlohmann/json.hpp"
#include "server/gateway/errors.h"
#include "server/grpc/grpc_status.h"

namespace anyai::server {
namespace {

struct Kind {
  int status;
  const char* type;
  const char* code;  // "" for JSON null
};

Kind KindOf(const absl::Status& status, ErrorSource source) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return {200, "", ""};
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return {400, "invalid_request_error", ""};
    case absl::StatusCode::kUnauthenticated:
      return {401, "invalid_request_error", "invalid_api_key"};
    case absl::StatusCode::kPermissionDenied:
      return {403, "invalid_request_error", "permission_denied"};
    case absl::StatusCode::kNotFound: {
      std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
      const bool model = info.has_value() && info->reason() == kModelNotFoundReason;
      return {404, "invalid_request_error", model ? "model_not_found" : "not_found"};
    }
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return {409, "invalid_request_error", "conflict"};
    case absl::StatusCode::kResourceExhausted:
      return {429, "requests", "rate_limit_exceeded"};
    case absl::StatusCode::kUnimplemented:
      return {501, "server_error", "not_implemented"};
    case absl::StatusCode::kUnavailable:
      return source == ErrorSource::kProvider ? Kind{502, "server_error", "upstream_error"}
                                              : Kind{503, "server_error", "service_unavailable"};
    case absl::StatusCode::kDeadlineExceeded:
      return {504, "server_error", "timeout"};
    default:
      return {500, "server_error", "internal_error"};
  }
}

nlohmann::json NullIfEmpty(std::string_view s) {
  if (s.empty()) return nullptr;
  return std::string(s);
}

}  // namespace

int64_t RetryAfterSeconds(absl::Duration delay) {
  if (delay <= absl::ZeroDuration()) return 0;
  return absl::ToInt64Seconds(absl::Ceil(delay, absl::Seconds(1)));
}

int HttpStatusOf(const absl::Status& status, ErrorSource source) {
  return KindOf(status, source).status;
}

std::string OpenAiErrorBody(std::string_view message, std::string_view type, std::string_view param,
                            std::string_view code) {
  nlohmann::ordered_json error;
  error["message"] = std::string(message);
  error["type"] = std::string(type);
  error["param"] = NullIfEmpty(param);
  error["code"] = NullIfEmpty(code);
  nlohmann::ordered_json body;
  body["error"] = std::move(error);
  // Messages are ASCII-safe (errors.h), but never let a stray byte make dump() throw.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse ErrorResponse(const absl::Status& status, ErrorSource source) {
  const Kind kind = KindOf(status, source);
  HttpResponse response;
  response.status = kind.status;
  response.headers.emplace_back("content-type", "application/json");
  const absl::string_view message = status.message();
  response.body = OpenAiErrorBody(std::string_view(message.data(), message.size()), kind.type,
                                  ErrorField(status), kind.code);
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
    if (retry.has_value()) {
      const absl::Duration delay = absl::Seconds(retry->retry_delay().seconds()) +
                                   absl::Nanoseconds(retry->retry_delay().nanos());
      response.headers.emplace_back("retry-after", absl::StrCat(RetryAfterSeconds(delay)));
      if (info.has_value()) {
        if (auto limit = info->metadata().find("limit"); limit != info->metadata().end()) {
          response.headers.emplace_back(kRateLimitLimitHeader, limit->second);
          response.headers.emplace_back(kRateLimitRemainingHeader, "0");
          response.headers.emplace_back(kRateLimitResetHeader, FormatReset(delay));
        }
      }
    }
  }
  return response;
}

HttpResponse ProtocolError(int status, std::string_view message, std::string_view code) {
  HttpResponse response;
  response.status = status;
  response.headers.emplace_back("content-type", "application/json");
  response.body = OpenAiErrorBody(message, "invalid_request_error", "", code);
  return response;
}

void AddRateLimitHeaders(const quota::Decision& decision, HttpHeaders* headers) {
  if (decision.limit <= 0) return;
  headers->emplace_back(kRateLimitLimitHeader, absl::StrCat(decision.limit));
  headers->emplace_back(kRateLimitRemainingHeader, absl::StrCat(decision.remaining));
  headers->emplace_back(kRateLimitResetHeader, FormatReset(decision.reset));
}

}  // namespace anyai::server
