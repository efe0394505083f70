// server/gateway/rate_limit.cc: the x-ratelimit-* values both fronts send.
#include "server/gateway/rate_limit.h"

#include "gtest/gtest.h"

namespace anyai::server {
namespace {

TEST(RateLimitOf, AnAdmittedCallReportsItsTightestWindow) {
  quota::Decision d;
  d.admitted = true;
  d.limit = 30;
  d.remaining = 29;
  d.reset = absl::Seconds(61);
  d.retry_after = absl::Seconds(5);
  EXPECT_EQ(RateLimitOf(d),
            (RateLimitState{.limit = 30, .remaining = 29, .reset = absl::Seconds(61)}));
}

TEST(RateLimitOf, ARefusedCallHasNothingRemainingAndResetsWhenItCanBeAdmitted) {
  quota::Decision d;
  d.admitted = false;
  d.limit = 10;
  d.remaining = 3;  // whatever the engine says of other windows, the refusing one is full
  d.reset = absl::Seconds(50);
  d.retry_after = absl::Milliseconds(12'300);
  EXPECT_EQ(RateLimitOf(d),
            (RateLimitState{.limit = 10, .remaining = 0, .reset = absl::Milliseconds(12'300)}));
}

TEST(RateLimitHeaders, UseOpenAisNamesAndFormats) {
  const auto headers =
      RateLimitHeaders({.limit = 10, .remaining = 0, .reset = absl::Milliseconds(12'300)});
  EXPECT_EQ(headers[0].name, "x-ratelimit-limit-requests");
  EXPECT_EQ(headers[0].value, "10");
  EXPECT_EQ(headers[1].name, "x-ratelimit-remaining-requests");
  EXPECT_EQ(headers[1].value, "0");
  EXPECT_EQ(headers[2].name, "x-ratelimit-reset-requests");
  EXPECT_EQ(headers[2].value, "12.3s");
}

TEST(FormatReset, RoundsUpToWholeMilliseconds) {
  EXPECT_EQ(FormatReset(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatReset(-absl::Seconds(1)), "0s");
  EXPECT_EQ(FormatReset(absl::Microseconds(19'001)), "20ms");
  EXPECT_EQ(FormatReset(absl::Seconds(360)), "6m0s");
  EXPECT_EQ(FormatReset(absl::Seconds(1)), "1s");
  EXPECT_EQ(FormatReset(absl::Seconds(61)), "1m1s");
  EXPECT_EQ(FormatReset(absl::Milliseconds(60'050)), "1m0.05s");
  EXPECT_EQ(FormatReset(absl::Hours(26) + absl::Seconds(5)), "26h0m5s");
}

}  // namespace
}  // namespace anyai::server
