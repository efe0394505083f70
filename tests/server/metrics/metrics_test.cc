// Metrics as a GatewayObserver, read back from its text exposition: decisions and settlements
// from the real engine (Reserve, Settle) on a frozen clock, counted by feature class and plan;
// tokens and spend reserved, settled, refunded and over; calls in flight; refusals named by the
// limit that refused; no label per key or IP.
#include "server/metrics/metrics.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "tests/server/metrics/exposition.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::server::testing::ExpectSample;
using ::anyai::server::testing::LabelNames;
using ::anyai::server::testing::ValueOf;
using ::anyai::testing::IsOk;
using ::testing::IsSubsetOf;
using ::testing::Optional;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);
constexpr char kTenant[] = "key:0123456789abcdef";

// llm limits requests, tokens (a 1m window, as long as its request window) and spend, and two
// calls in flight; meta is released at once, as the Gateway's /models and /check are.
quota::PlanTable Plans() {
  quota::PlanTable t;
  for (const auto& [name, scale] : {std::pair{"free", 1}, std::pair{"premium", 10}}) {
    t.plans.push_back(quota::Plan{
        .name = name,
        .max_message_chars = 1000,
        .classes = {{.feature_class = quota::kLlm,
                     .windows = {{absl::Minutes(1), 10 * scale}},
                     .token_windows = {{absl::Minutes(1), 1000 * scale}},
                     .spend_windows = {{absl::Hours(24), 50'000 * scale}},
                     .max_concurrent = 2},
                    {.feature_class = quota::kMeta, .windows = {{absl::Minutes(1), 600}}}}});
  }
  return t;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest()
      : engine_(*quota::Engine::Create(Plans(), {})),
        metrics_(Metrics::Create(*engine_, {})),
        free_(*engine_->FindPlan("free")),
        premium_(*engine_->FindPlan("premium")),
        llm_(*engine_->FindClass(quota::kLlm)),
        meta_(*engine_->FindClass(quota::kMeta)) {}

  // Reserve() as the Gateway does it: the decision is observed, admitted or not.
  quota::Reservation Reserve(quota::PlanId plan, quota::ClassId cls, const quota::Cost& cost) {
    absl::StatusOr<quota::Reservation> r = engine_->Reserve(kTenant, plan, cls, cost, kNow);
    EXPECT_THAT(r, IsOk());
    metrics_->ObserveDecision(plan, r->decision(), cls, absl::Microseconds(3));
    return *std::move(r);
  }

  // Settle() as Gateway::Finish does it: the settlement is observed with what was reserved.
  quota::Settlement Settle(quota::PlanId plan, quota::ClassId cls, quota::Reservation& r,
                           const quota::Cost& used) {
    const quota::Cost reserved = r.reserved();
    absl::StatusOr<quota::Settlement> s = engine_->Settle(r, used, kNow);
    EXPECT_THAT(s, IsOk());
    metrics_->ObserveSettlement(plan, cls, reserved, used, *s);
    return *s;
  }

  std::optional<double> Value(const std::string& name, const std::string& cls,
                              const std::string& plan) const {
    return ValueOf(metrics_->Render(), name, {{"feature_class", cls}, {"plan", plan}});
  }

  std::optional<double> Refusals(const std::string& plan, const std::string& limit,
                                 const std::string& window) const {
    return ValueOf(metrics_->Render(), "anyai_quota_decisions_total",
                   {{"feature_class", "llm"},
                    {"plan", plan},
                    {"outcome", "refused"},
                    {"limit", limit},
                    {"window", window}});
  }

  std::unique_ptr<quota::Engine> engine_;
  std::unique_ptr<Metrics> metrics_;
  const quota::PlanId free_, premium_;
  const quota::ClassId llm_, meta_;
};

TEST_F(MetricsTest, ASettlementCountsReservedSettledAndRefundedTokensAndSpend) {
  quota::Reservation r = Reserve(free_, llm_, {.requests = 1, .tokens = 900, .micro_usd = 9000});
  ASSERT_TRUE(r.admitted());
  const quota::Settlement s =
      Settle(free_, llm_, r, {.requests = 1, .tokens = 312, .micro_usd = 3120});
  ASSERT_EQ(s.refunded.tokens, 588);

  EXPECT_THAT(Value("anyai_tokens_reserved_total", "llm", "free"), Optional(900.0));
  EXPECT_THAT(Value("anyai_tokens_settled_total", "llm", "free"), Optional(312.0));
  EXPECT_THAT(Value("anyai_tokens_refunded_total", "llm", "free"), Optional(588.0));
  EXPECT_THAT(Value("anyai_tokens_overage_total", "llm", "free"), Optional(0.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_reserved_total", "llm", "free"), Optional(9000.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_settled_total", "llm", "free"), Optional(3120.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_refunded_total", "llm", "free"), Optional(5880.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_overage_total", "llm", "free"), Optional(0.0));
  // Another plan's series did not move.
  EXPECT_THAT(Value("anyai_tokens_reserved_total", "llm", "premium"), Optional(0.0));
  EXPECT_THAT(Value("anyai_tokens_settled_total", "llm", "premium"), Optional(0.0));
}

TEST_F(MetricsTest, UseBeyondTheReservationCountsAsOverage) {
  quota::Reservation r = Reserve(premium_, llm_, {.requests = 1, .tokens = 100, .micro_usd = 10});
  Settle(premium_, llm_, r, {.requests = 1, .tokens = 150, .micro_usd = 25});

  EXPECT_THAT(Value("anyai_tokens_overage_total", "llm", "premium"), Optional(50.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_overage_total", "llm", "premium"), Optional(15.0));
  EXPECT_THAT(Value("anyai_tokens_refunded_total", "llm", "premium"), Optional(0.0));
  // What was used is reserved - refunded + overage.
  EXPECT_THAT(Value("anyai_tokens_settled_total", "llm", "premium"), Optional(150.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_settled_total", "llm", "premium"), Optional(25.0));
}

TEST_F(MetricsTest, AFailureSettledToNothingRefundsEverything) {
  quota::Reservation r = Reserve(free_, llm_, {.requests = 1, .tokens = 700, .micro_usd = 70});
  Settle(free_, llm_, r, {.requests = 0});

  EXPECT_THAT(Value("anyai_tokens_settled_total", "llm", "free"), Optional(0.0));
  EXPECT_THAT(Value("anyai_tokens_refunded_total", "llm", "free"), Optional(700.0));
  EXPECT_THAT(Value("anyai_spend_micro_usd_refunded_total", "llm", "free"), Optional(70.0));
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(0.0));
}

TEST_F(MetricsTest, CallsInFlightRiseOnAdmissionAndFallOnSettlement) {
  quota::Reservation a = Reserve(free_, llm_, {.requests = 1, .tokens = 10});
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(1.0));
  quota::Reservation b = Reserve(free_, llm_, {.requests = 1, .tokens = 10});
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(2.0));
  // The third is refused by the concurrency limit: it holds nothing, so it is not in flight.
  quota::Reservation c = Reserve(free_, llm_, {.requests = 1, .tokens = 10});
  ASSERT_FALSE(c.admitted());
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(2.0));
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "premium"), Optional(0.0));

  Settle(free_, llm_, a, {.requests = 1, .tokens = 5});
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(1.0));
  Settle(free_, llm_, b, {.requests = 1, .tokens = 5});
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(0.0));
}

TEST_F(MetricsTest, MetaCallsAreCountedAsDecisionsButNeverInFlight) {
  // The Gateway admits /models and /check and releases them at once, unsettled.
  for (int i = 0; i < 3; ++i) {
    quota::Reservation r = Reserve(free_, meta_, {.requests = 1});
    ASSERT_TRUE(r.admitted());
  }
  const std::string text = metrics_->Render();
  ExpectSample(text, "anyai_quota_decisions_total",
               {{"feature_class", "meta"},
                {"plan", "free"},
                {"outcome", "admitted"},
                {"limit", ""},
                {"window", ""}},
               3);
  EXPECT_EQ(ValueOf(text, "anyai_calls_in_flight", {{"feature_class", "meta"}, {"plan", "free"}}),
            std::nullopt);
  // A settlement reported for meta all the same changes nothing: no gauge goes below zero.
  metrics_->ObserveSettlement(free_, meta_, {.requests = 1}, {.requests = 1}, {});
  EXPECT_EQ(Value("anyai_calls_in_flight", "meta", "free"), std::nullopt);
  EXPECT_EQ(Value("anyai_tokens_settled_total", "meta", "free"), std::nullopt);
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(0.0));
}

TEST_F(MetricsTest, ARefusalCountsAgainstTheLimitThatRefused) {
  // 1001 tokens never fit the 1m token window of 1000: the token window refuses, not the 1m
  // request window of the same length.
  quota::Reservation big = Reserve(free_, llm_, {.requests = 1, .tokens = 1001});
  ASSERT_FALSE(big.admitted());
  ASSERT_EQ(big.decision().refused_kind, quota::LimitKind::kTokens);
  EXPECT_THAT(Refusals("free", "tokens", "1m"), Optional(1.0));
  EXPECT_THAT(Refusals("free", "requests", "1m"), Optional(0.0));

  quota::Reservation costly = Reserve(free_, llm_, {.requests = 1, .micro_usd = 50'001});
  ASSERT_FALSE(costly.admitted());
  EXPECT_THAT(Refusals("free", "spend", "24h"), Optional(1.0));

  quota::Reservation a = Reserve(free_, llm_, {.requests = 1});
  quota::Reservation b = Reserve(free_, llm_, {.requests = 1});
  quota::Reservation third = Reserve(free_, llm_, {.requests = 1});
  ASSERT_FALSE(third.admitted());
  EXPECT_THAT(Refusals("free", "concurrency", ""), Optional(1.0));
  Settle(free_, llm_, a, {.requests = 1});
  Settle(free_, llm_, b, {.requests = 1});

  // The 1m request window: ten admitted in all, the eleventh refused.
  for (int i = 0; i < 8; ++i) {
    quota::Reservation r = Reserve(free_, llm_, {.requests = 1});
    ASSERT_TRUE(r.admitted());
    Settle(free_, llm_, r, {.requests = 1});
  }
  quota::Reservation eleventh = Reserve(free_, llm_, {.requests = 1});
  ASSERT_FALSE(eleventh.admitted());
  EXPECT_THAT(Refusals("free", "requests", "1m"), Optional(1.0));
  EXPECT_THAT(Refusals("free", "tokens", "1m"), Optional(1.0));
  ExpectSample(metrics_->Render(), "anyai_quota_decisions_total",
               {{"feature_class", "llm"},
                {"plan", "free"},
                {"outcome", "admitted"},
                {"limit", ""},
                {"window", ""}},
               10);
}

TEST_F(MetricsTest, NoSeriesIsLabelledByKeyOrAddress) {
  quota::Reservation r = Reserve(free_, llm_, {.requests = 1, .tokens = 10, .micro_usd = 1});
  Settle(free_, llm_, r, {.requests = 1, .tokens = 12, .micro_usd = 2});
  const std::string text = metrics_->Render();
  EXPECT_EQ(text.find("0123456789abcdef"), std::string::npos);
  EXPECT_THAT(LabelNames(text),
              IsSubsetOf({"endpoint", "transport", "code", "feature_class", "plan", "outcome",
                          "limit", "window", "provider", "store", "version", "compiler", "le"}));
}

TEST_F(MetricsTest, IdsOutsideThePlanTableAreIgnored) {
  metrics_->ObserveSettlement(quota::PlanId{7}, llm_, {.requests = 1, .tokens = 5}, {}, {});
  metrics_->ObserveSettlement(free_, quota::ClassId{9}, {.requests = 1, .tokens = 5}, {}, {});
  quota::Decision admitted;
  admitted.admitted = true;
  metrics_->ObserveDecision(free_, admitted, quota::ClassId{-1}, absl::Microseconds(1));
  EXPECT_THAT(Value("anyai_tokens_reserved_total", "llm", "free"), Optional(0.0));
  EXPECT_THAT(Value("anyai_calls_in_flight", "llm", "free"), Optional(0.0));
}

// The checks above fail when a counter is off by one unit, or when the series they name is not
// exported.
TEST_F(MetricsTest, ACounterOffByOneFailsTheCheck) {
  quota::Reservation r = Reserve(free_, llm_, {.requests = 1, .tokens = 400});
  Settle(free_, llm_, r, {.requests = 1, .tokens = 312});
  // Static: EXPECT_FATAL_FAILURE's statement may not use local variables.
  static std::string text;
  text = metrics_->Render();
  ExpectSample(text, "anyai_tokens_settled_total", {{"feature_class", "llm"}, {"plan", "free"}},
               312);
  EXPECT_NONFATAL_FAILURE(ExpectSample(text, "anyai_tokens_settled_total",
                                       {{"feature_class", "llm"}, {"plan", "free"}}, 313),
                          "anyai_tokens_settled_total");
  EXPECT_NONFATAL_FAILURE(ExpectSample(text, "anyai_tokens_refunded_total",
                                       {{"feature_class", "llm"}, {"plan", "free"}}, 89),
                          "anyai_tokens_refunded_total");
  EXPECT_FATAL_FAILURE(ExpectSample(text, "anyai_tokens_settled_total",
                                    {{"feature_class", "llm"}, {"plan", "gold"}}, 312),
                       "samples of anyai_tokens_settled_total");
}

}  // namespace
}  // namespace anyai::server
