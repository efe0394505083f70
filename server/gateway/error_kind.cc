#include "server/gateway/error_kind.h"

#include <optional>

#include "server/gateway/errors.h"

namespace anyai::server {
namespace {

bool HasReason(const absl::Status& status, std::string_view reason) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() && info->reason() == reason;
}

// OpenAI's 429 `type` names the limit that refused ("requests", "tokens"); ours may also be
// "spend" or "concurrency" (ErrorInfo's limit_kind, errors.h).
const char* RateLimitType(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (info.has_value()) {
    auto it = info->metadata().find("limit_kind");
    if (it != info->metadata().end()) {
      for (const char* kind : {"tokens", "spend", "concurrency"}) {
        if (it->second == kind) return kind;
      }
    }
  }
  return "requests";
}

}  // namespace

ErrorKind ErrorKindOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return {200, "", ""};
    case absl::StatusCode::kCancelled:
      return {499, "invalid_request_error", "client_closed_request"};
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return {400, "invalid_request_error", ""};
    case absl::StatusCode::kUnauthenticated:
      return {401, "invalid_request_error", "invalid_api_key"};
    case absl::StatusCode::kPermissionDenied:
      return {403, "invalid_request_error", "permission_denied"};
    case absl::StatusCode::kNotFound:
      return {404, "invalid_request_error",
              HasReason(status, kModelNotFoundReason) ? "model_not_found" : "not_found"};
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return {409, "invalid_request_error", "conflict"};
    case absl::StatusCode::kResourceExhausted:
      return {429, RateLimitType(status), "rate_limit_exceeded"};
    case absl::StatusCode::kUnimplemented:
      return {501, "server_error", "not_implemented"};
    case absl::StatusCode::kUnavailable:
      return HasReason(status, kUpstreamUnavailableReason)
                 ? ErrorKind{502, "server_error", "upstream_error"}
                 : ErrorKind{503, "server_error", "service_unavailable"};
    case absl::StatusCode::kDeadlineExceeded:
      return {504, "server_error", "timeout"};
    default:
      return {500, "server_error", "internal_error"};
  }
}

}  // namespace anyai::server
