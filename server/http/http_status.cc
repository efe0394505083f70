#include "server/http/http_status.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "server/gateway/error_kind.h"
#include "server/gateway/errors.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/render_memo.h"
#include "server/http/http_json.h"

namespace anyai::server {
namespace {

// OpenAI's error body; an empty `param` or `code` is JSON null. Written directly (the bytes a
// dumped nlohmann tree of it would be): a 429 flood answers one per call.
std::string OpenAiErrorBody(std::string_view message, std::string_view type, std::string_view param,
                            std::string_view code) {
  std::string body;
  body.reserve(64 + message.size() + type.size() + param.size() + code.size());
  body.append(R"({"error":{"message":)");
  AppendJsonString(&body, message);
  body.append(R"(,"type":)");
  AppendJsonString(&body, type);
  body.append(R"(,"param":)");
  if (param.empty()) {
    body.append("null");
  } else {
    AppendJsonString(&body, param);
  }
  body.append(R"(,"code":)");
  if (code.empty()) {
    body.append("null");
  } else {
    AppendJsonString(&body, code);
  }
  body.append("}}");
  return body;
}

HttpResponse Render(const absl::Status& status) {
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

}  // namespace

HttpResponse ErrorResponse(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    // A 429 flood hands out copies of one status while its refusal repeats (errors.h,
    // RateLimited): its body and Retry-After are written once, each call copies them.
    thread_local StatusRenderings<HttpResponse> memo;
    return memo.Get(status, Render);
  }
  return Render(status);
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
