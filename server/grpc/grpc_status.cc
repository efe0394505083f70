#include "server/grpc/grpc_status.h"

#include "google/rpc/status.pb.h"
#include "server/gateway/errors.h"
#include "server/gateway/render_memo.h"

namespace anyai::server {

namespace {

grpc::Status Render(const absl::Status& status) {
  const google::rpc::Status rpc = ToRpcStatus(status);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      rpc.details_size() > 0 ? rpc.SerializeAsString() : std::string());
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    // A 429 flood hands out copies of one status while its refusal repeats (errors.h,
    // RateLimited): its details are serialized once, each call copies two strings.
    thread_local StatusRenderings<grpc::Status> memo;
    return memo.Get(status, Render);
  }
  return Render(status);
}

void AddRateLimitMetadata(grpc::ServerContextBase& context,
                          const std::optional<RateLimitState>& rate_limit,
                          const absl::Status& status) {
  if (!rate_limit.has_value()) return;
  const bool trailing = !status.ok();
  // gRPC copies the name it is given; one reused buffer per thread spares a heap string per entry
  // (most names are longer than the short-string buffer).
  thread_local std::string name;
  for (const RateLimitHeader& h : RateLimitHeaders(*rate_limit)) {
    name.assign(h.name);
    if (trailing) {
      context.AddTrailingMetadata(name, h.value);
    } else {
      context.AddInitialMetadata(name, h.value);
    }
  }
}

}  // namespace anyai::server
