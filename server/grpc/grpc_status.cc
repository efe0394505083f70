#include "server/grpc/grpc_status.h"

#include "google/rpc/status.pb.h"
#include "server/gateway/errors.h"

namespace anyai::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const google::rpc::Status rpc = ToRpcStatus(status);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      rpc.details_size() > 0 ? rpc.SerializeAsString() : std::string());
}

void AddRateLimitMetadata(grpc::ServerContextBase& context,
                          const std::optional<RateLimitState>& rate_limit,
                          const absl::Status& status) {
  if (!rate_limit.has_value()) return;
  const bool trailing = !status.ok();
  for (const RateLimitHeader& h : RateLimitHeaders(*rate_limit)) {
    if (trailing) {
      context.AddTrailingMetadata(std::string(h.name), h.value);
    } else {
      context.AddInitialMetadata(std::string(h.name), h.value);
    }
  }
}

}  // namespace anyai::server
