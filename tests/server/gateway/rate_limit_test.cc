// server/gateway/rate_limit.cc: the rate-limit figures of a call (RateLimitOf, Settled) and the
// headers both fronts send for them: OpenAI's x-ratelimit-* and the IETF RateLimit-Policy and
// RateLimit fields.
#include "server/gateway/rate_limit.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace anyai::server {
namespace {

using quota::LimitKind;
using quota::LimitState;
using quota::MeterState;
using ::testing::ElementsAre;
using ::testing::Pair;

// The headers as (name, value) pairs, for ElementsAre.
std::vector<std::pair<std::string, std::string>> Pairs(const RateLimitState& state) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const RateLimitHeader& h : RateLimitHeaders(state)) {
    out.emplace_back(std::string(h.name), h.value);
  }
  return out;
}

LimitState Limit(LimitKind kind, absl::Duration window, int64_t limit, int64_t remaining,
                 absl::Duration reset = absl::ZeroDuration()) {
  return LimitState{
      .kind = kind, .window = window, .limit = limit, .remaining = remaining, .reset = reset};
}

// The free plan of deploy/config/token-limits.textproto for closed_llm, plus a concurrency
// limit: every kind of limit, as an admitted call's decision reports them.
quota::Decision AdmittedWithEveryKind() {
  quota::Decision d;
  d.admitted = true;
  d.limit = 25;
  d.remaining = 24;
  d.reset = absl::Milliseconds(3'599'500);
  d.tokens = MeterState{.limit = 50'000, .remaining = 48'800, .reset = absl::Seconds(3600)};
  d.spend = MeterState{.limit = 1'000'000, .remaining = 987'500, .reset = absl::Hours(24)};
  d.in_flight = 1;
  d.max_concurrent = 2;
  d.limits = {
      Limit(LimitKind::kRequests, absl::Hours(1), 25, 24, absl::Milliseconds(3'599'500)),
      Limit(LimitKind::kRequests, absl::Hours(24), 100, 99, absl::Hours(24)),
      Limit(LimitKind::kTokens, absl::Hours(1), 50'000, 48'800, absl::Seconds(3600)),
      Limit(LimitKind::kTokens, absl::Hours(24), 200'000, 198'800, absl::Hours(24)),
      Limit(LimitKind::kSpend, absl::Hours(24), 1'000'000, 987'500, absl::Hours(24)),
      Limit(LimitKind::kSpend, absl::Hours(24 * 30), 10'000'000, 9'987'500, absl::Hours(24 * 30)),
      Limit(LimitKind::kConcurrency, absl::ZeroDuration(), 2, 1)};
  return d;
}

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

TEST(RateLimitOf, CarriesTheTokenWindowAndEveryLimitOfTheDecision) {
  const quota::Decision d = AdmittedWithEveryKind();
  const RateLimitState s = RateLimitOf(d);
  EXPECT_EQ(s.limit, 25);
  EXPECT_EQ(s.remaining, 24);
  EXPECT_EQ(s.reset, absl::Milliseconds(3'599'500));
  EXPECT_EQ(s.tokens, d.tokens);
  EXPECT_EQ(s.limits, d.limits);
}

TEST(RateLimitOf, ACallRefusedByATokenWindowReportsThatWindowAndTheWaitUntilItFits) {
  quota::Decision d;
  d.admitted = false;
  d.limit = 10;
  d.remaining = 7;
  d.reset = absl::Seconds(40);
  // The tightest token window is the minute, but the day refused: it frees last.
  d.tokens = MeterState{.limit = 20'000, .remaining = 300, .reset = absl::Seconds(50)};
  d.limits = {Limit(LimitKind::kRequests, absl::Minutes(1), 10, 7, absl::Seconds(40)),
              Limit(LimitKind::kTokens, absl::Minutes(1), 20'000, 300, absl::Seconds(50)),
              Limit(LimitKind::kTokens, absl::Hours(24), 1'000'000, 800, absl::Hours(20))};
  d.refused_kind = LimitKind::kTokens;
  d.refused_window = absl::Hours(24);
  d.refused_limit = 1'000'000;
  d.requested = 1200;
  d.retry_after = absl::Hours(3);
  const RateLimitState s = RateLimitOf(d);
  EXPECT_EQ(s.remaining, 0);  // no request is admitted before the call fits
  EXPECT_EQ(s.reset, absl::Hours(3));
  EXPECT_EQ(s.tokens, (MeterState{.limit = 1'000'000, .remaining = 800, .reset = absl::Hours(3)}));
  EXPECT_EQ(s.limits, d.limits);  // the IETF fields say what the engine saw
}

TEST(RateLimitOf, ACallThatCanNeverFitLeavesTheFiguresAsTheyAre) {
  quota::Decision d;
  d.admitted = false;
  d.limit = 10;
  d.remaining = 9;
  d.reset = absl::Seconds(40);
  d.tokens = MeterState{.limit = 20'000, .remaining = 19'000, .reset = absl::Seconds(50)};
  d.limits = {Limit(LimitKind::kRequests, absl::Minutes(1), 10, 9, absl::Seconds(40)),
              Limit(LimitKind::kTokens, absl::Minutes(1), 20'000, 19'000, absl::Seconds(50)),
              Limit(LimitKind::kTokens, absl::Hours(24), 1'000'000, 999'000, absl::Hours(20))};
  d.refused_kind = LimitKind::kTokens;
  d.refused_window = absl::Minutes(1);
  d.refused_limit = 20'000;
  d.requested = 30'000;
  d.never_fits = true;
  d.retry_after = absl::ZeroDuration();
  // A smaller call would be admitted now: 9 requests and 19000 tokens are still there.
  EXPECT_EQ(
      RateLimitOf(d),
      (RateLimitState{
          .limit = 10,
          .remaining = 9,
          .reset = absl::Seconds(40),
          .tokens = MeterState{.limit = 20'000, .remaining = 19'000, .reset = absl::Seconds(50)},
          .limits = d.limits}));
}

TEST(RateLimitOf, ACallRefusedByConcurrencyKeepsTheTokenFigures) {
  quota::Decision d = AdmittedWithEveryKind();
  d.admitted = false;
  d.refused_kind = LimitKind::kConcurrency;
  d.refused_limit = 2;
  d.retry_after = absl::Seconds(1);
  const RateLimitState s = RateLimitOf(d);
  EXPECT_EQ(s.remaining, 0);
  EXPECT_EQ(s.reset, absl::Seconds(1));
  EXPECT_EQ(s.tokens, d.tokens);
}

TEST(Settled, ARefundRaisesTheTokenAndSpendFiguresAndTheSlotComesBack) {
  const RateLimitState before = RateLimitOf(AdmittedWithEveryKind());
  // Reserved 1200 tokens and $0.0125; used 312 tokens and $0.0031.
  const RateLimitState after = Settled(
      before,
      {.refunded = {.requests = 0, .tokens = 888, .micro_usd = 9'400}, .overage = {.requests = 0}});
  EXPECT_EQ(after.limit, 25);
  EXPECT_EQ(after.remaining, 24);
  EXPECT_EQ(after.reset, before.reset);
  EXPECT_EQ(after.tokens,
            (MeterState{.limit = 50'000, .remaining = 49'688, .reset = absl::Seconds(3600)}));
  ASSERT_EQ(after.limits.size(), 7u);
  EXPECT_EQ(after.limits[0].remaining, 24);
  EXPECT_EQ(after.limits[1].remaining, 99);
  EXPECT_EQ(after.limits[2].remaining, 49'688);
  EXPECT_EQ(after.limits[3].remaining, 199'688);
  EXPECT_EQ(after.limits[4].remaining, 996'900);
  EXPECT_EQ(after.limits[5].remaining, 9'996'900);
  EXPECT_EQ(after.limits[6].remaining, 2);  // the settlement freed the call's slot
  for (size_t i = 0; i < after.limits.size(); ++i) {
    EXPECT_EQ(after.limits[i].reset, before.limits[i].reset) << i;
  }
}

TEST(Settled, AnOverageLowersThemButNeverBelowZero) {
  const RateLimitState after =
      Settled(RateLimitOf(AdmittedWithEveryKind()),
              {.refunded = {.requests = 0},
               .overage = {.requests = 0, .tokens = 49'000, .micro_usd = 5'000'000}});
  EXPECT_EQ(after.tokens->remaining, 0);    // 48800 - 49000
  EXPECT_EQ(after.limits[2].remaining, 0);  // the hour: 48800 - 49000
  EXPECT_EQ(after.limits[3].remaining, 149'800);
  EXPECT_EQ(after.limits[4].remaining, 0);          // $0.9875 - $5
  EXPECT_EQ(after.limits[5].remaining, 4'987'500);  // $9.9875 - $5
  EXPECT_EQ(after.remaining, 24);                   // requests are not in the overage
}

TEST(Settled, AFullRefundGivesBackTheRequestWithinTheLimit) {
  RateLimitState before = RateLimitOf(AdmittedWithEveryKind());
  before.limits[1].remaining = 100;  // clamped: never above the limit
  const RateLimitState after =
      Settled(before, {.refunded = {.requests = 1, .tokens = 1200, .micro_usd = 12'500},
                       .overage = {.requests = 0}});
  EXPECT_EQ(after.limits[0].remaining, 25);
  EXPECT_EQ(after.limits[1].remaining, 100);
  EXPECT_EQ(after.remaining, 25);
  EXPECT_EQ(after.limits[2].remaining, 50'000);
  EXPECT_EQ(after.tokens->remaining, 50'000);
  EXPECT_EQ(after.limits[4].remaining, 1'000'000);
}

TEST(Settled, TheTightestTokenWindowIsPickedAgain) {
  // Before: the day has fewer tokens left (80) than the minute (90). A refund of 50 fills the
  // minute to its limit of 100 and the day to 130: the minute is now the tightest.
  RateLimitState before{.limit = 10, .remaining = 9, .reset = absl::Seconds(60)};
  before.tokens = MeterState{.limit = 1000, .remaining = 80, .reset = absl::Hours(5)};
  before.limits = {Limit(LimitKind::kRequests, absl::Minutes(1), 10, 9, absl::Seconds(60)),
                   Limit(LimitKind::kTokens, absl::Minutes(1), 100, 90, absl::Seconds(30)),
                   Limit(LimitKind::kTokens, absl::Hours(24), 1000, 80, absl::Hours(5))};
  const RateLimitState after =
      Settled(before, {.refunded = {.requests = 0, .tokens = 50}, .overage = {.requests = 0}});
  EXPECT_EQ(after.tokens, (MeterState{.limit = 100, .remaining = 100, .reset = absl::Seconds(30)}));
  // A refund of 20: the minute at 100 (its limit), the day at 100 too. A tie goes to the later
  // window, as the engine breaks it.
  const RateLimitState tie =
      Settled(before, {.refunded = {.requests = 0, .tokens = 20}, .overage = {.requests = 0}});
  EXPECT_EQ(tie.tokens, (MeterState{.limit = 1000, .remaining = 100, .reset = absl::Hours(5)}));
}

TEST(Settled, WithoutTheLimitsTheFiguresMoveAlone) {
  RateLimitState before{.limit = 10, .remaining = 9, .reset = absl::Seconds(60)};
  before.tokens = MeterState{.limit = 1000, .remaining = 600, .reset = absl::Seconds(30)};
  const RateLimitState after = Settled(before, {.refunded = {.requests = 1, .tokens = 500},
                                                .overage = {.requests = 0, .tokens = 0}});
  EXPECT_EQ(after.remaining, 10);
  EXPECT_EQ(after.tokens,
            (MeterState{.limit = 1000, .remaining = 1000, .reset = absl::Seconds(30)}));
  EXPECT_TRUE(after.limits.empty());
  // Nothing moved: the same state.
  EXPECT_EQ(Settled(before, {}), before);
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
  ASSERT_EQ(headers.size(), 3u);  // no token window, no limits: the request trio alone
  EXPECT_EQ(headers[0].name, "x-ratelimit-limit-requests");
  EXPECT_EQ(headers[0].value, "10");
  EXPECT_EQ(headers[1].name, "x-ratelimit-remaining-requests");
  EXPECT_EQ(headers[1].value, "0");
  EXPECT_EQ(headers[2].name, "x-ratelimit-reset-requests");
  EXPECT_EQ(headers[2].value, "12.3s");
}

TEST(RateLimitHeaders, TokensFollowTheRequestsInOpenAisFormat) {
  RateLimitState s{.limit = 10, .remaining = 9, .reset = absl::Seconds(6)};
  s.tokens = MeterState{.limit = 20'000, .remaining = 18'800, .reset = absl::Milliseconds(59'500)};
  EXPECT_THAT(Pairs(s), ElementsAre(Pair("x-ratelimit-limit-requests", "10"),
                                    Pair("x-ratelimit-remaining-requests", "9"),
                                    Pair("x-ratelimit-reset-requests", "6s"),
                                    Pair("x-ratelimit-limit-tokens", "20000"),
                                    Pair("x-ratelimit-remaining-tokens", "18800"),
                                    Pair("x-ratelimit-reset-tokens", "59.5s")));
}

TEST(RateLimitHeaders, TheIetfFieldsHaveOneItemPerLimit) {
  EXPECT_THAT(
      Pairs(RateLimitOf(AdmittedWithEveryKind())),
      ElementsAre(
          Pair("x-ratelimit-limit-requests", "25"), Pair("x-ratelimit-remaining-requests", "24"),
          Pair("x-ratelimit-reset-requests", "59m59.5s"), Pair("x-ratelimit-limit-tokens", "50000"),
          Pair("x-ratelimit-remaining-tokens", "48800"), Pair("x-ratelimit-reset-tokens", "1h0m0s"),
          Pair("ratelimit-policy",
               R"("requests-1h";q=25;w=3600, "requests-1d";q=100;w=86400, )"
               R"("tokens-1h";q=50000;w=3600, "tokens-1d";q=200000;w=86400, )"
               R"("spend-1d";q=1000000;w=86400, "spend-30d";q=10000000;w=2592000, )"
               R"("concurrency";q=2;qu="concurrent-requests")"),
          Pair("ratelimit", R"("requests-1h";r=24;t=3600, "requests-1d";r=99;t=86400, )"
                            R"("tokens-1h";r=48800;t=3600, "tokens-1d";r=198800;t=86400, )"
                            R"("spend-1d";r=987500;t=86400, "spend-30d";r=9987500;t=2592000, )"
                            R"("concurrency";r=1)")));
}

TEST(RateLimitHeaders, TheSeedsRequestWindowsAloneGetTheIetfFieldsToo) {
  RateLimitState s{.limit = 10, .remaining = 9, .reset = absl::Milliseconds(200)};
  s.limits = {Limit(LimitKind::kRequests, absl::Minutes(1), 10, 9, absl::Milliseconds(200)),
              Limit(LimitKind::kRequests, absl::Hours(24), 2000, 1999, absl::ZeroDuration())};
  EXPECT_THAT(
      Pairs(s),
      ElementsAre(
          Pair("x-ratelimit-limit-requests", "10"), Pair("x-ratelimit-remaining-requests", "9"),
          Pair("x-ratelimit-reset-requests", "200ms"),
          Pair("ratelimit-policy", R"("requests-1m";q=10;w=60, "requests-1d";q=2000;w=86400)"),
          Pair("ratelimit",  // t rounded up; 0 when nothing is counted
               R"("requests-1m";r=9;t=1, "requests-1d";r=1999;t=0)")));
}

TEST(RateLimitHeaders, SubSecondWindowsAreNamedExactlyAndRoundedUpToWholeSeconds) {
  RateLimitState s{.limit = 3, .remaining = 0, .reset = absl::Milliseconds(1'001)};
  s.limits = {
      Limit(LimitKind::kRequests, absl::Milliseconds(1'500), 3, 0, absl::Milliseconds(1'001)),
      Limit(LimitKind::kRequests, absl::Seconds(90), 5, 2, absl::Seconds(89))};
  const auto headers = RateLimitHeaders(s);
  ASSERT_EQ(headers.size(), 5u);
  EXPECT_EQ(headers[3].value, R"("requests-1500ms";q=3;w=2, "requests-90s";q=5;w=90)");
  EXPECT_EQ(headers[4].value, R"("requests-1500ms";r=0;t=2, "requests-90s";r=2;t=89)");
}

TEST(LimitName, IsTheKindAndTheWindowInItsLargestWholeUnit) {
  EXPECT_EQ(LimitName(Limit(LimitKind::kRequests, absl::Seconds(60), 1, 0)), "requests-1m");
  EXPECT_EQ(LimitName(Limit(LimitKind::kRequests, absl::Hours(24), 1, 0)), "requests-1d");
  EXPECT_EQ(LimitName(Limit(LimitKind::kTokens, absl::Hours(48), 1, 0)), "tokens-2d");
  EXPECT_EQ(LimitName(Limit(LimitKind::kTokens, absl::Hours(36), 1, 0)), "tokens-36h");
  EXPECT_EQ(LimitName(Limit(LimitKind::kSpend, absl::Hours(24 * 31), 1, 0)), "spend-31d");
  EXPECT_EQ(LimitName(Limit(LimitKind::kSpend, absl::Seconds(1), 1, 0)), "spend-1s");
  EXPECT_EQ(LimitName(Limit(LimitKind::kRequests, absl::Microseconds(1'000'001), 1, 0)),
            "requests-1000001us");
  EXPECT_EQ(LimitName(Limit(LimitKind::kConcurrency, absl::ZeroDuration(), 4, 4)), "concurrency");
}

TEST(LimitKindName, NamesEveryKind) {
  EXPECT_STREQ(LimitKindName(LimitKind::kRequests), "requests");
  EXPECT_STREQ(LimitKindName(LimitKind::kTokens), "tokens");
  EXPECT_STREQ(LimitKindName(LimitKind::kSpend), "spend");
  EXPECT_STREQ(LimitKindName(LimitKind::kConcurrency), "concurrency");
}

TEST(FormatUsd, ShowsCentsAndTheDigitsItNeeds) {
  EXPECT_EQ(FormatUsd(0), "$0.00");
  EXPECT_EQ(FormatUsd(1), "$0.000001");
  EXPECT_EQ(FormatUsd(10'000), "$0.01");
  EXPECT_EQ(FormatUsd(12'500), "$0.0125");
  EXPECT_EQ(FormatUsd(1'000'000), "$1.00");
  EXPECT_EQ(FormatUsd(1'500'000), "$1.50");
  EXPECT_EQ(FormatUsd(12'000'001), "$12.000001");
  EXPECT_EQ(FormatUsd(int64_t{1} << 50), "$1125899906.842624");
  EXPECT_EQ(FormatUsd(-2'500'000), "-$2.50");
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
