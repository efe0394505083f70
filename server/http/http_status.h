// The HTTP edge of server/gateway/errors.h, as grpc_status.h is the gRPC one: an absl::Status from the
// domain or a provider becomes an HTTP status with OpenAI's error body (SPEC §4),
//
//   {"error": {"message": "...", "type": "...", "param": "model" | null, "code": "..." | null}}
//
// and a quota decision becomes OpenAI's x-ratelimit-* headers. The one place this mapping
// lives; the transport (http_server.h) uses ProtocolError for what it refuses itself.
//
//   status code          HTTP  type                   code
//   INVALID_ARGUMENT,    400   invalid_request_error  null (param: the first bad field)
//   FAILED_PRECONDITION,
//   OUT_OF_RANGE
//   UNAUTHENTICATED      401   invalid_request_error  invalid_api_key
//   PERMISSION_DENIED    403   invalid_request_error  permission_denied
//   NOT_FOUND            404   invalid_request_error  model_not_found (param "model") | not_found
//   ALREADY_EXISTS,      409   invalid_request_error  conflict
//   ABORTED
//   RESOURCE_EXHAUSTED   429   requests               rate_limit_exceeded, with Retry-After
//                                                     and x-ratelimit-* (remaining 0)
//   UNIMPLEMENTED        501   server_error           not_implemented
//   UNAVAILABLE          503 from the gateway (our storage), 502 from a provider (the
//                              upstream): server_error, service_unavailable | upstream_error
//   DEADLINE_EXCEEDED    504   server_error           timeout
//   anything else        500   server_error           internal_error
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_HTTP_HTTP_STATUS_H_
#define ANYAI_SERVER_HTTP_HTTP_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "quota/engine.h"
#include "server/http/http_message.h"

namespace anyai::server {

// Who failed. The same code says something different coming from the gateway (our own storage
// is down: 503) than from the provider that answers (the upstream failed: 502).
enum class ErrorSource { kGateway, kProvider };

// The HTTP status of a non-OK `status` (200 for OK).
int HttpStatusOf(const absl::Status& status, ErrorSource source = ErrorSource::kGateway);

// The whole error response of a non-OK `status`: its HTTP status, OpenAI's JSON body, and for
// RESOURCE_EXHAUSTED the Retry-After (whole seconds, rounded up) and x-ratelimit-* headers.
HttpResponse ErrorResponse(const absl::Status& status, ErrorSource source = ErrorSource::kGateway);

// An error of the HTTP layer itself (malformed request 400, unknown path 404, 405, 408, 413,
// 431): type invalid_request_error, param null, `code` (e.g. "request_too_large").
HttpResponse ProtocolError(int status, std::string_view message, std::string_view code);

// OpenAI's error body; an empty `param` or `code` is JSON null.
std::string OpenAiErrorBody(std::string_view message, std::string_view type, std::string_view param,
                            std::string_view code);

// x-ratelimit-limit-requests, x-ratelimit-remaining-requests and x-ratelimit-reset-requests
// (grpc_status.h's names and FormatReset) of an admitted request's decision; nothing when the
// decision has no limit (the fail-open storage policy).
void AddRateLimitHeaders(const quota::Decision& decision, HttpHeaders* headers);

// Retry-After's value for a delay: whole seconds, rounded up, never negative.
int64_t RetryAfterSeconds(absl::Duration delay);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_STATUS_H_
