// The one table from an error status to its HTTP terms: the HTTP status, and OpenAI's error
// `type` and `code`. The HTTP front answers with it, and the request metrics label every call
// with its HTTP status from it, gRPC calls included, so both always agree.
//
//   status code          HTTP  type                   code
//   OK                   200   —                      —
//   CANCELLED            499   invalid_request_error  client_closed_request (the client left)
//   INVALID_ARGUMENT,    400   invalid_request_error  null (param: the first bad field)
//   FAILED_PRECONDITION,
//   OUT_OF_RANGE
//   UNAUTHENTICATED      401   invalid_request_error  invalid_api_key
//   PERMISSION_DENIED    403   invalid_request_error  permission_denied
//   NOT_FOUND            404   invalid_request_error  model_not_found (ErrorInfo MODEL_NOT_FOUND)
//                                                     | not_found
//   ALREADY_EXISTS,      409   invalid_request_error  conflict
//   ABORTED
//   RESOURCE_EXHAUSTED   429   requests               rate_limit_exceeded
//   UNIMPLEMENTED        501   server_error           not_implemented
//   UNAVAILABLE          502   server_error           upstream_error (ErrorInfo
//                                                     UPSTREAM_UNAVAILABLE: the provider failed)
//                        503   server_error           service_unavailable (our own storage)
//   DEADLINE_EXCEEDED    504   server_error           timeout
//   anything else        500   server_error           internal_error
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_GATEWAY_ERROR_KIND_H_
#define ANYAI_SERVER_GATEWAY_ERROR_KIND_H_

#include <string_view>

#include "absl/status/status.h"

namespace anyai::server {

struct ErrorKind {
  int http_status;
  std::string_view type;  // empty for OK
  std::string_view code;  // empty: JSON null
};

ErrorKind ErrorKindOf(const absl::Status& status);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_ERROR_KIND_H_
