#include "server/http/http_status.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "nlohmann/json.hpp"
#include "server/gateway/error_kind.h"
#include "server/gateway/errors.h"
#include "server/gateway/proto_time.h"

namespace anyai::server {
namespace {

nlohmann::json NullIfEmpty(std::string_view s) {
  if (s.empty()) return nullptr;
  return std::string(s);
}

// OpenAI's error body; an empty `param` or `code` is JSON null.
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

}  // namespace

HttpResponse ErrorResponse(const absl::Status& status) {
  const ErrorKind kind = ErrorKindOf(status);
  HttpResponse response;
  response.status = kind.http_status;
  response.headers.emplace_back("content-type", "application/json");
  const absl::string_view message = status.message();
  response.body = OpenAiErrorBody(std::string_view(message.data(), message.size()), kind.type,
                                  ErrorField(status), kind.code);
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    if (std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status); retry.has_value()) {
      response.headers.emplace_back(
          "retry-after", absl::StrCat(RetryAfterSeconds(FromProto(retry->retry_delay()))));
    } else {
      // No wait helps (the call alone exceeds a limit): OpenAI's SDKs retry a 429 unless told.
      response.headers.emplace_back("x-should-retry", "false");
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

void AddRateLimitHeaders(const std::optional<RateLimitState>& rate_limit, HttpHeaders* headers) {
  if (!rate_limit.has_value()) return;
  for (RateLimitHeader& h : RateLimitHeaders(*rate_limit)) {
    headers->emplace_back(std::string(h.name), std::move(h.value));
  }
}

}  // namespace anyai::server
