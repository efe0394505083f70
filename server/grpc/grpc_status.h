// The gRPC edge of server/gateway/errors.h: an absl::Status from the domain becomes a grpc::Status
// whose details (`grpc-status-details-bin`) carry the google.rpc messages, and a decision
// becomes the x-ratelimit-* metadata (SPEC §4). The one place this mapping lives.
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_GRPC_GRPC_STATUS_H_
#define ANYAI_SERVER_GRPC_GRPC_STATUS_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "quota/engine.h"

namespace anyai::server {

inline constexpr char kRateLimitLimitHeader[] = "x-ratelimit-limit-requests";
inline constexpr char kRateLimitRemainingHeader[] = "x-ratelimit-remaining-requests";
inline constexpr char kRateLimitResetHeader[] = "x-ratelimit-reset-requests";

grpc::Status ToGrpcStatus(const absl::Status& status);

// Adds x-ratelimit-* for `decision` as initial metadata (nothing when it has no limit, as
// under the fail-open storage policy).
void AddRateLimitMetadata(grpc::ServerContextBase& context, const quota::Decision& decision);
// For a RESOURCE_EXHAUSTED status: the same headers (remaining 0, reset = retry delay) as
// trailing metadata, which is where a failed call's metadata reaches clients.
void AddRateLimitTrailers(grpc::ServerContextBase& context, const absl::Status& status);

// Decisions' durations the way OpenAI writes x-ratelimit-reset-requests: "1s", "6m0s", "20ms".
std::string FormatReset(absl::Duration d);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GRPC_GRPC_STATUS_H_
