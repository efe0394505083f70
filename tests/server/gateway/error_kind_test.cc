// server/gateway/error_kind.cc: the one status table the HTTP answers and the metrics share.
#include "server/gateway/error_kind.h"

#include "gtest/gtest.h"
#include "server/gateway/errors.h"

namespace anyai::server {
namespace {

TEST(ErrorKindOf, TellsAFailingUpstreamFromTheGatewaysOwnStorage) {
  EXPECT_EQ(ErrorKindOf(absl::UnavailableError("usage storage unavailable")).http_status, 503);
  const ErrorKind upstream = ErrorKindOf(FromProvider(absl::UnavailableError("upstream 500")));
  EXPECT_EQ(upstream.http_status, 502);
  EXPECT_EQ(upstream.code, "upstream_error");
}

TEST(ErrorKindOf, A429NamesTheKindOfLimitAsOpenAIsTypeDoes) {
  RateLimitInfo info{.feature_class = "llm",
                     .plan = "free",
                     .window = absl::Minutes(1),
                     .limit = 20000,
                     .retry_after = absl::Seconds(3),
                     .tenant_description = ""};
  EXPECT_EQ(ErrorKindOf(RateLimited(info)).type, "requests");
  info.kind = quota::LimitKind::kTokens;
  EXPECT_EQ(ErrorKindOf(RateLimited(info)).type, "tokens");
  EXPECT_EQ(ErrorKindOf(RateLimited(info)).http_status, 429);
  info.kind = quota::LimitKind::kConcurrency;
  EXPECT_EQ(ErrorKindOf(RateLimited(info)).type, "concurrency");
  EXPECT_EQ(ErrorKindOf(absl::ResourceExhaustedError("no details")).type, "requests");
}

TEST(ErrorKindOf, AClientThatLeftIs499) {
  EXPECT_EQ(ErrorKindOf(absl::CancelledError("gone")).http_status, 499);
}

TEST(ErrorKindOf, ModelNotFoundHasItsOwnCode) {
  EXPECT_EQ(ErrorKindOf(UnknownModel("model", "gpt-17")).code, "model_not_found");
  EXPECT_EQ(ErrorKindOf(absl::NotFoundError("no such key")).code, "not_found");
}

TEST(FromProvider, LeavesEveryOtherCodeAlone) {
  const absl::Status slow = absl::DeadlineExceededError("slow");
  EXPECT_EQ(FromProvider(slow), slow);
  EXPECT_EQ(ErrorKindOf(FromProvider(slow)).http_status, 504);
  EXPECT_EQ(FromProvider(absl::OkStatus()), absl::OkStatus());
}

}  // namespace
}  // namespace anyai::server
