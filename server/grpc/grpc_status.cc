#include "server/grpc/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "google/rpc/status.pb.h"
#include "server/gateway/errors.h"

namespace anyai::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const google::rpc::Status rpc = ToRpcStatus(status);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      rpc.details_size() > 0 ? rpc.SerializeAsString() : std::string());
}

std::string FormatReset(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return "0s";
  // Whole milliseconds, rounded up, so a client that waits this long finds room.
  d = absl::Ceil(d, absl::Milliseconds(1));
  if (d < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  return absl::FormatDuration(d);
}

void AddRateLimitMetadata(grpc::ServerContextBase& context, const quota::Decision& decision) {
  if (decision.limit <= 0) return;
  context.AddInitialMetadata(kRateLimitLimitHeader, absl::StrCat(decision.limit));
  context.AddInitialMetadata(kRateLimitRemainingHeader, absl::StrCat(decision.remaining));
  context.AddInitialMetadata(kRateLimitResetHeader, FormatReset(decision.reset));
}

void AddRateLimitTrailers(grpc::ServerContextBase& context, const absl::Status& status) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return;
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  const std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  if (!info.has_value() || !retry.has_value()) return;
  auto limit = info->metadata().find("limit");
  if (limit == info->metadata().end()) return;
  context.AddTrailingMetadata(kRateLimitLimitHeader, limit->second);
  context.AddTrailingMetadata(kRateLimitRemainingHeader, "0");
  context.AddTrailingMetadata(
      kRateLimitResetHeader,
      FormatReset(absl::Seconds(retry->retry_delay().seconds()) +
                  absl::Nanoseconds(retry->retry_delay().nanos())));
}

}  // namespace anyai::server
