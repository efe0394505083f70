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
              UnorderedElementsAre(Pair("feature_class", "llm"), Pair("limit_kind", "requests"),
                                   Pair("window_seconds", "60"), Pair("limit", "10"),
                                   Pair("plan", "free")));
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

RateLimitInfo FreeLlmTokens() {
  RateLimitInfo info = FreeLlm();
  info.kind = quota::LimitKind::kTokens;
  info.limit = 20000;
  info.requested = 1200;
  return info;
}

TEST(RateLimitedTest, ATokenWindowSaysWhatTheRequestNeeds) {
  absl::Status status = RateLimited(FreeLlmTokens());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               Eq("Rate limit exceeded for llm: 20000 tokens per 1m on the free "
                                  "plan (this request needs 1200); retry after 12s")));
  ASSERT_TRUE(GetQuotaFailure(status).has_value());
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).subject(), "feature_class:llm");
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(),
            "20000 tokens per 1m on the free plan");
  ASSERT_TRUE(GetRetryInfo(status).has_value());
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().seconds(), 12);
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->reason(), "RATE_LIMIT_EXCEEDED");
  EXPECT_THAT(GetErrorInfo(status)->metadata(),
              UnorderedElementsAre(Pair("feature_class", "llm"), Pair("limit_kind", "tokens"),
                                   Pair("window_seconds", "60"), Pair("limit", "20000"),
                                   Pair("requested", "1200"), Pair("plan", "free")));
}

TEST(RateLimitedTest, TheTenantSharesTheParenthesesWithWhatTheRequestNeeds) {
  RateLimitInfo info = FreeLlmTokens();
  info.limit = 1;
  info.requested = 1;
  info.window = absl::Hours(24);
  info.retry_after = absl::Milliseconds(3'600'001);
  info.tenant_description = "key sk-ab…wxyz";
  EXPECT_THAT(RateLimited(info),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       Eq("Rate limit exceeded for llm: 1 token per 24h on the free plan (this "
                          "request needs 1; key sk-ab…wxyz); retry after 3601s")));
}

TEST(RateLimitedTest, ASpendWindowIsInDollars) {
  RateLimitInfo info = FreeLlm();
  info.feature_class = "closed_llm";
  info.kind = quota::LimitKind::kSpend;
  info.window = absl::Hours(24);
  info.limit = 1'000'000;
  info.requested = 12'500;
  info.retry_after = absl::Seconds(3600);
  absl::Status status = RateLimited(info);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               Eq("Rate limit exceeded for closed_llm: $1.00 of spend per 24h on "
                                  "the free plan (this request may cost up to $0.0125); retry "
                                  "after 3600s")));
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(),
            "$1.00 of spend per 24h on the free plan");
  EXPECT_THAT(GetErrorInfo(status)->metadata(),
              UnorderedElementsAre(Pair("feature_class", "closed_llm"), Pair("limit_kind", "spend"),
                                   Pair("window_seconds", "86400"), Pair("limit", "1000000"),
                                   Pair("requested", "12500"), Pair("plan", "free")));
}

TEST(RateLimitedTest, ConcurrencySaysHowManyCallsMayBeInFlight) {
  RateLimitInfo info = FreeLlm();
  info.kind = quota::LimitKind::kConcurrency;
  info.window = absl::ZeroDuration();
  info.limit = 4;
  info.requested = 1;
  info.retry_after = absl::Milliseconds(250);
  info.tenant_description = "anonymous";
  absl::Status status = RateLimited(info);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               Eq("Rate limit exceeded for llm: at most 4 calls in flight on the "
                                  "free plan (anonymous); retry after 1s")));
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(),
            "at most 4 calls in flight on the free plan");
  EXPECT_EQ(GetRetryInfo(status)->retry_delay().nanos(), 250'000'000);
  EXPECT_THAT(GetErrorInfo(status)->metadata(),
              UnorderedElementsAre(Pair("feature_class", "llm"), Pair("limit_kind", "concurrency"),
                                   Pair("limit", "4"), Pair("plan", "free")));
  info.limit = 1;
  EXPECT_THAT(RateLimited(info).message(), HasSubstr("at most 1 call in flight"));
}

TEST(RateLimitedTest, ARequestThatNeverFitsSaysSoAndHasNoRetryHint) {
  RateLimitInfo info = FreeLlmTokens();
  info.requested = 30000;
  info.never_fits = true;
  info.retry_after = absl::ZeroDuration();
  absl::Status status = RateLimited(info);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               Eq("Rate limit exceeded for llm: this request needs 30000 tokens "
                                  "but the free plan allows 20000 per 1m: it can never be "
                                  "admitted; lower max_tokens or shorten the prompt")));
  EXPECT_THAT(status.message(), Not(HasSubstr("retry")));
  EXPECT_FALSE(GetRetryInfo(status).has_value());
  EXPECT_EQ(GetQuotaFailure(status)->violations(0).description(),
            "20000 tokens per 1m on the free plan");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("never_fits"), "true");
  EXPECT_EQ(GetErrorInfo(status)->metadata().at("requested"), "30000");

  info.kind = quota::LimitKind::kSpend;
  info.window = absl::Hours(24);
  info.limit = 10'000;
  info.requested = 50'000;
  info.tenant_description = "key sk-ab…wxyz";
  EXPECT_THAT(RateLimited(info),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       Eq("Rate limit exceeded for llm: this request may cost up to $0.05 but the "
                          "free plan allows $0.01 per 24h (key sk-ab…wxyz): it can never be "
                          "admitted; lower max_tokens or shorten the prompt")));
}

TEST(RateLimitedTest, OnlyARequestThatNeverFitsHasNoNeverFitsMetadata) {
  EXPECT_FALSE(GetErrorInfo(RateLimited(FreeLlmTokens()))->metadata().contains("never_fits"));
  EXPECT_FALSE(GetErrorInfo(RateLimited(FreeLlm()))->metadata().contains("requested"));
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
