// The gRPC edge of the Gateway's results: an absl::Status becomes a grpc::Status whose details
// (`grpc-status-details-bin`) carry the google.rpc messages (server/gateway/errors.h), and a
// call's rate-limit figures become metadata (server/gateway/rate_limit.h: x-ratelimit-*,
// ratelimit-policy, ratelimit, the same values as the HTTP front's headers).
// The one place this mapping lives.
//
// Thread safety: pure functions (ToGrpcStatus keeps a per-thread memo of what it rendered of a
// RESOURCE_EXHAUSTED status, render_memo.h, so that copies of one refusal are serialized once).
#ifndef ANYAI_SERVER_GRPC_GRPC_STATUS_H_
#define ANYAI_SERVER_GRPC_GRPC_STATUS_H_

#include <grpcpp/grpcpp.h>

#include <optional>

#include "absl/status/status.h"
#include "server/gateway/rate_limit.h"

namespace anyai::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Adds every entry RateLimitHeaders gives for `rate_limit` (nothing when it is empty): as
// initial metadata on an OK `status`; as trailing metadata on a failed one (a 429, or a provider
// failure after admission), which is where every client library shows a failed call's metadata
// (grpc-js: err.metadata). The draft keeps RateLimit and RateLimit-Policy out of HTTP trailers;
// a failed gRPC call with no message is answered trailers-only (one HEADERS frame), and gRPC
// metadata is not an HTTP field section to clients anyway, so they travel with the rest.
void AddRateLimitMetadata(grpc::ServerContextBase& context,
                          const std::optional<RateLimitState>& rate_limit,
                          const absl::Status& status);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_STATUS_H_
