#include "server/gateway/errors.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::StatusIs;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

RateLimitInfo FreeLlm() {
  RateLimitInfo info;
  info.feature_class = "llm";
  info.plan = "free";
  info.window = absl::Minutes(1);
  info.limit = 10;
  info.retry_after = absl::Seconds(12);
  return info;
}

TEST(InvalidRequestTest, IsInvalidArgumentNamedByTheFirstViolation) {
  absl::Status status = InvalidRequest(
      {{"messages[2].content", "required"}, {"max_tokens", "must be between 1 and 32768"}});
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("messages[2].content: required")));
  std::optional<google::rpc::BadRequest> bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 2);
  EXPECT_EQ(bad->field_violations(0).field(), "messages[2].content");
  EXPECT_EQ(bad->field_violations(0).description(), "required");
  EXPECT_EQ(bad->field_violations(1).field(), "max_tokens");
  EXPECT_EQ(ErrorField(status), "messages[2].content");
  EXPECT_FALSE(GetQuotaFailure(status).has_value());
  EXPECT_FALSE(GetErrorInfo(status).has_value());
}

TEST(InvalidRequestTest, EmptyListStillGivesAnError) {
  absl::Status status = InvalidRequest({});
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, Eq("invalid request")));
  ASSERT_TRUE(GetBadRequest(status).has_value());
  EXPECT_EQ(GetBadRequest(status)->field_violations_size(), 0);
  EXPECT_EQ(ErrorField(status), "");
}

TEST(InvalidFieldTest, IsOneViolation) {
  absl::Status status = InvalidField("top_p", "must be between 0 and 1, got 2");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               Eq("top_p: must be between 0 and 1, got 2")));
  ASSERT_TRUE(GetBadRequest(status).has_value());
  EXPECT_EQ(GetBadRequest(status)->field_violations_size(), 1);
  EXPECT_EQ(ErrorField(status), "top_p");
}

TEST(UnknownModelTest, IsNotFoundAndNamesTheModelAndField) {
  absl::Status status = UnknownModel("model", "gpt-5");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"gpt-5\"")));
  EXPECT_EQ(ErrorField(status), "model");
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "MODEL_NOT_FOUND");
  EXPECT_EQ(info->domain(), "anyai.v1");
  EXPECT_THAT(info->metadata(),
              UnorderedElementsAre(Pair("field", "model"), Pair("model", "gpt-5")));
  std::optional<google::rpc::ResourceInfo> resource = GetResourceInfo(status);
  ASSERT_TRUE(resource.has_value());
  EXPECT_EQ(resource->resource_type(), "model");
  EXPECT_EQ(resource->resource_name(), "gpt-5");
  EXPECT_FALSE(GetBadRequest(status).has_value());
}

TEST(UnknownModelTest, EscapesAndTruncatesHostileIds) {
  const std::string hostile = std::string("\xff\"\n", 3) + std::string(500, 'x');
  absl::Status status = UnknownModel("model", hostile);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("\\xff\\\"\\n")));
  EXPECT_LT(status.message().size(), 200u);
  EXPECT_THAT(std::string(status.message()), HasSubstr("..."));
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("model").find('\xff'), std::string::npos);
}

TEST(RateLimitedTest, SaysWhichClassAndWindowRefused) {
  absl::Status status = RateLimited(FreeLlm());
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       Eq("Rate limit exceeded for llm: 10 requests per 1m on the free plan; "
                          "retry after 12s")));
}

TEST(RateLimitedTest, CarriesQuotaFailureRetryInfoAndErrorInfo) {
  absl::Status status = RateLimited(FreeLlm());

  std::optional<google::rpc::QuotaFailure> quota = GetQuotaFailure(status);
  ASSERT_TRUE(quota.has_value());
  ASSERT_EQ(quota->violations_size(), 1);
  EXPECT_EQ(quota->violations(0).subject(), "feature_class:llm");
  EXPECT_EQ(quota->violations(0).description(), "10 requests per 1m on the free plan");

  std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status);
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->retry_delay().seconds(), 12);
  EXPECT_EQ(retry->retry_delay().nanos(), 0);

  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "RATE_LIMIT_EXCEEDED");
  EXPECT_EQ(info->domain(), "anyai.v1");
  EXPECT_THAT(info->metadata(),
              UnorderedElementsAre(Pair("feature_class", "llm"), Pair("window_seconds", "60"),
                                   Pair("limit", "10"), Pair("plan", "free")));
  EXPECT_FALSE(GetBadRequest(status).has_value());
  EXPECT_EQ(ErrorField(status), "");
}

TEST(RateLimitedTest, RoundsTheMessageUpButKeepsTheExactDelay) {
  RateLimitInfo info = FreeLlm();
  info.feature_class = "closed_llm";
  info.window = absl::Hours(1);
  info.limit = 25;
  info.retry_after = absl::Milliseconds(11250);
  info.tenant_description = "key sk-ab…wxyz";
  absl::Status status = RateLimited(info);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               Eq("Rate limit exceeded for closed_llm: 25 requests per 1h on the "
                                  "free plan (key sk-ab…wxyz); retry after 12s")));
  ASSERT_TRUE(GetRetryInfo(status).has_value());
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 11);
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().nanos(), 250000000);
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("window_seconds"), "3600");
}

TEST(RateLimitedTest, FractionalWindowsAndNegativeDelays) {
  RateLimitInfo info = FreeLlm();
  info.window = absl::Milliseconds(1500);
  info.limit = 1;
  info.retry_after = -absl::Seconds(1);
  absl::Status status = RateLimited(info);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("1 request per 1.5s on the free plan; retry after 0s")));
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("window_seconds"), "1.5");
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 0);
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().nanos(), 0);
}

TEST(UnauthenticatedTest, IsUnauthenticatedWithErrorInfo) {
  absl::Status status = Unauthenticated("unknown or revoked API key");
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kUnauthenticated, Eq("unknown or revoked API key")));
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->reason(), "API_KEY_INVALID");
  EXPECT_EQ(GetErrorInfo(status)->domain(), "anyai.v1");
}

TEST(AccessorsTest, AbsentOrCorruptPayloadsAreNullopt) {
  EXPECT_FALSE(GetBadRequest(absl::OkStatus()).has_value());
  EXPECT_FALSE(GetRetryInfo(absl::InternalError("x")).has_value());
  absl::Status corrupt = absl::InvalidArgumentError("x");
  corrupt.SetPayload(kBadRequestTypeUrl, absl::Cord("\xff\xff\xff"));
  EXPECT_FALSE(GetBadRequest(corrupt).has_value());
}

TEST(ToRpcStatusTest, OkIsCodeZeroAndNothingElse) {
  google::rpc::Status rpc = ToRpcStatus(absl::OkStatus());
  EXPECT_EQ(rpc.code(), 0);
  EXPECT_EQ(rpc.message(), "");
  EXPECT_EQ(rpc.details_size(), 0);
}

TEST(ToRpcStatusTest, CarriesCodeMessageAndEveryDetailAsAny) {
  absl::Status status = RateLimited(FreeLlm());
  google::rpc::Status rpc = ToRpcStatus(status);
  EXPECT_EQ(rpc.code(), 8);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(rpc.message(), std::string(status.message()));
  ASSERT_EQ(rpc.details_size(), 3);
  // Sorted by type URL.
  EXPECT_EQ(rpc.details(0).type_url(), kErrorInfoTypeUrl);
  EXPECT_EQ(rpc.details(1).type_url(), kQuotaFailureTypeUrl);
  EXPECT_EQ(rpc.details(2).type_url(), kRetryInfoTypeUrl);

  google::rpc::QuotaFailure quota;
  ASSERT_TRUE(rpc.details(1).UnpackTo(&quota));
  EXPECT_EQ(quota.violations(0).subject(), "feature_class:llm");
  google::rpc::RetryInfo retry;
  ASSERT_TRUE(rpc.details(2).UnpackTo(&retry));
  EXPECT_EQ(retry.retry_delay().seconds(), 12);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(rpc.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "RATE_LIMIT_EXCEEDED");
}

TEST(ToRpcStatusTest, IsDeterministicAndSurvivesTheWire) {
  absl::Status status = UnknownModel("model", "nope");
  const std::string wire = ToRpcStatus(status).SerializeAsString();
  for (int i = 0; i < 10; ++i) {
    absl::Status copy = UnknownModel("model", "nope");
    EXPECT_EQ(ToRpcStatus(copy).SerializeAsString(), wire);
  }
  google::rpc::Status parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.code(), 5);  // NOT_FOUND
  EXPECT_EQ(parsed.details_size(), 2);
}

TEST(ToRpcStatusTest, LeavesOutPayloadsThatAreNotAnyTypeUrls) {
  absl::Status status = InvalidField("prompt", "required");
  status.SetPayload("internal/debug", absl::Cord("x"));
  google::rpc::Status rpc = ToRpcStatus(status);
  ASSERT_EQ(rpc.details_size(), 1);
  EXPECT_EQ(rpc.details(0).type_url(), kBadRequestTypeUrl);
}

TEST(FromRpcStatusTest, RoundTripsEveryKindOfError) {
  const std::vector<absl::Status> errors = {InvalidRequest({{"a", "b"}, {"c", "d"}}),
                                            InvalidField("n", "too many"),
                                            UnknownModel("model", "gpt-5"),
                                            RateLimited(FreeLlm()),
                                            Unauthenticated("bad key"),
                                            absl::UnavailableError("upstream down")};
  for (const absl::Status& original : errors) {
    google::rpc::Status rpc = ToRpcStatus(original);
    absl::Status back = FromRpcStatus(rpc);
    EXPECT_EQ(back.code(), original.code());
    EXPECT_EQ(back.message(), original.message());
    EXPECT_TRUE(MessageDifferencer::Equals(ToRpcStatus(back), rpc)) << original;
    EXPECT_EQ(back, original);
  }
}

TEST(FromRpcStatusTest, ZeroIsOkAndUnknownCodesAreUnknown) {
  google::rpc::Status rpc;
  EXPECT_OK(FromRpcStatus(rpc));
  rpc.set_code(99);
  rpc.set_message("odd");
  EXPECT_THAT(FromRpcStatus(rpc), StatusIs(absl::StatusCode::kUnknown, Eq("odd")));
  rpc.set_code(-1);
  EXPECT_THAT(FromRpcStatus(rpc), StatusIs(absl::StatusCode::kUnknown, Not(Eq(""))));
}

TEST(QuoteForMessageTest, EscapesNonPrintableAndTruncates) {
  EXPECT_EQ(QuoteForMessage("gpt-4o"), "gpt-4o");
  EXPECT_EQ(QuoteForMessage("é"), "\\xc3\\xa9");
  EXPECT_EQ(QuoteForMessage("abcdef", 3), "abc...");
}

}  // namespace
}  // namespace anyai::server
