// The HTTP edge of the Gateway's results, as grpc_status.h is the gRPC one: an absl::Status
// becomes an HTTP response with OpenAI's error body (SPEC §4),
//
//   {"error": {"message": "...", "type": "...", "param": "model" | null, "code": "..." | null}}
//
// with the HTTP status, type and code of server/gateway/error_kind.h (the one table, which the
// request metrics use too), and a call's rate-limit figures become its rate-limit headers
// (server/gateway/rate_limit.h: OpenAI's x-ratelimit-*, and the IETF RateLimit-Policy and
// RateLimit). The transport (http_server.h) uses ProtocolError for
// what it refuses itself.
//
// Thread safety: pure functions (ErrorResponse keeps a per-thread memo of what it rendered of a
// RESOURCE_EXHAUSTED status, render_memo.h, so that copies of one refusal are written once).
#ifndef ANYAI_SERVER_HTTP_HTTP_STATUS_H_
#define ANYAI_SERVER_HTTP_HTTP_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/gateway/rate_limit.h"
#include "server/http/http_message.h"

namespace anyai::server {

// The whole error response of a non-OK `status`: its HTTP status, OpenAI's JSON body, and for
// RESOURCE_EXHAUSTED with a RetryInfo the Retry-After header (whole seconds, rounded up). A
// refusal that no wait can cure (errors.h: never_fits) has no RetryInfo, so no Retry-After.
HttpResponse ErrorResponse(const absl::Status& status);

// An error of the HTTP layer itself (malformed request 400, unknown path 404, 405, 408, 413,
// 431): type invalid_request_error, param null, `code` (e.g. "request_too_large").
HttpResponse ProtocolError(int status, std::string_view message, std::string_view code);

// Adds every header RateLimitHeaders gives for `rate_limit` (x-ratelimit-*, ratelimit-policy,
// ratelimit), in its order; nothing when it is empty (a call the engine did not decide).
void AddRateLimitHeaders(const std::optional<RateLimitState>& rate_limit, HttpHeaders* headers);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_STATUS_H_
