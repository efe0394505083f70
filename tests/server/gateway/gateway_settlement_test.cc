// The Gateway's reservations and settlements over real parts (RocksDB in a temp dir, the engine,
// the builtin provider behind a scripted wrapper that fails on demand, as an upstream does):
// a call reserves its estimate and settles to what it used, a failure before any output gives
// everything back, a stream settles what its client received, and the in-flight slot is freed
// on every path.
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/chat_cost.h"
#include "server/gateway/token_count.h"
#include "tests/server/gateway/gateway_rig.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);
constexpr int64_t kTokenLimit = 5000;
constexpr int64_t kDefaultReserve = 300;

quota::PlanTable Plans() {
  quota::PlanTable plans = quota::DefaultPlanTable();
  for (quota::Plan& p : plans.plans) {
    p.default_token_reserve = kDefaultReserve;
    for (quota::ClassLimits& c : p.classes) {
      if (c.feature_class == quota::kLlm) {
        c.token_windows = {{absl::Minutes(1), kTokenLimit}};
        c.max_concurrent = 1;
      }
    }
  }
  return plans;
}

class GatewaySettlementTest : public ::testing::Test {
 protected:
  void Build(bool charge_upstream_failures = false) {
    rig_ = std::make_unique<GatewayRig>(Plans(), kNow);
    rig_->Start([&](GatewayParts& parts) {
      parts.providers = {{"builtin", &provider_}};
      parts.charge_upstream_failures = charge_upstream_failures;
    });
    gateway_ = rig_->gateway.get();
    engine_ = rig_->engine.get();
    catalogue_ = rig_->catalogue.get();
  }

  static v1::ChatCompletionRequest Chat(std::optional<int> max_tokens = std::nullopt) {
    v1::ChatCompletionRequest r;
    r.set_model("phi-2");  // an llm model
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content(
        "Tell me a long story about the sea, the wind and the lighthouse keeper who counted "
        "every wave that broke on the rocks below his window.");
    if (max_tokens.has_value()) r.set_max_tokens(*max_tokens);
    return r;
  }

  quota::ClassUsage Llm() {
    absl::StatusOr<quota::UsageSnapshot> u =
        engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
    EXPECT_THAT(u, IsOk());
    return u->classes[0];
  }

  ScriptedProvider provider_{kNow};
  std::unique_ptr<GatewayRig> rig_;
  Gateway* gateway_ = nullptr;
  quota::Engine* engine_ = nullptr;
  const Catalogue* catalogue_ = nullptr;
  const Caller anonymous_{.authorization = std::nullopt,
                          .peer = "203.0.113.7",
                          .forwarded_for = "",
                          .public_base_url = ""};
};

TEST_F(GatewaySettlementTest, AChatSettlesToTheUsageItReports) {
  Build();
  Outcome<v1::ChatCompletion> out = gateway_->Chat(anonymous_, Chat(/*max_tokens=*/1000));
  ASSERT_THAT(out.result, IsOk());
  const int64_t total = out.result->usage().total_tokens();
  ASSERT_GT(total, 0);
  const quota::ClassUsage llm = Llm();
  EXPECT_EQ(llm.token_windows[0].used, total);
  EXPECT_EQ(llm.token_windows[0].reserved, 0);
  EXPECT_EQ(llm.windows[0].used, 1);
  EXPECT_EQ(llm.in_flight, 0);
  // The figures the client gets are the settled ones.
  ASSERT_TRUE(out.rate_limit.has_value() && out.rate_limit->tokens.has_value());
  EXPECT_EQ(out.rate_limit->tokens->remaining, kTokenLimit - total);
}

TEST_F(GatewaySettlementTest, AReplyLongerThanTheDefaultReserveIsChargedInFull) {
  Build();
  v1::ChatCompletionRequest r = Chat();
  // No max_tokens: kDefaultReserve completion tokens were reserved; the builtin reply is
  // shorter or longer, and whatever it is, the settled figure is its usage.
  Outcome<v1::ChatCompletion> out = gateway_->Chat(anonymous_, r);
  ASSERT_THAT(out.result, IsOk());
  EXPECT_EQ(Llm().token_windows[0].used, out.result->usage().total_tokens());
}

TEST_F(GatewaySettlementTest, AnUpstreamFailureRefundsTheWholeCall) {
  Build();
  provider_.mode = ScriptedProvider::Mode::kFailBeforeOutput;
  EXPECT_THAT(gateway_->Chat(anonymous_, Chat(500)).result,
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  const quota::ClassUsage llm = Llm();
  EXPECT_EQ(llm.windows[0].used, 0);
  EXPECT_EQ(llm.token_windows[0].used, 0);
  EXPECT_EQ(llm.in_flight, 0);
  // A stream that fails before its first chunk: the same.
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(500), [](const auto&) { return true; },
      [](const v1::ChatCompletionChunk&) { return true; });
  EXPECT_FALSE(s.status.ok());
  EXPECT_EQ(Llm().windows[0].used, 0);
  EXPECT_EQ(Llm().token_windows[0].used, 0);
}

TEST_F(GatewaySettlementTest, WithChargeUpstreamFailuresAFailureKeepsItsReservation) {
  Build(/*charge_upstream_failures=*/true);
  provider_.mode = ScriptedProvider::Mode::kFailBeforeOutput;
  v1::ChatCompletionRequest r = Chat(500);
  EXPECT_FALSE(gateway_->Chat(anonymous_, r).result.ok());
  const ModelInfo& model = *catalogue_->Resolve("phi-2");
  EXPECT_EQ(Llm().token_windows[0].used, ChatEstimate(r, model, kDefaultReserve).tokens);
  EXPECT_EQ(Llm().windows[0].used, 1);
}

TEST_F(GatewaySettlementTest, AnUpstreamRefusalIsNeverChargedEvenWithTheSwitch) {
  Build(/*charge_upstream_failures=*/true);
  provider_.mode = ScriptedProvider::Mode::kRefuse;
  EXPECT_THAT(gateway_->Chat(anonymous_, Chat(500)).result,
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(Llm().token_windows[0].used, 0);
  EXPECT_EQ(Llm().windows[0].used, 0);
}

TEST_F(GatewaySettlementTest, AUnaryCallWhoseClientLeftChargesItsPrompt) {
  Build();
  provider_.mode = ScriptedProvider::Mode::kClientGone;
  EXPECT_THAT(gateway_->Chat(anonymous_, Chat(500)).result,
              StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(Llm().token_windows[0].used, PromptTokens(Chat()));
  EXPECT_EQ(Llm().windows[0].used, 1);
  EXPECT_EQ(Llm().in_flight, 0);
}

TEST_F(GatewaySettlementTest, AStreamTheClientLeavesSettlesWhatItReceived) {
  Build();
  int64_t received = 0;
  int chunks = 0;
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk& chunk) {
        if (chunks == 2) return false;  // gone after two chunks
        ++chunks;
        for (const auto& c : chunk.choices()) received += CountTokens(c.delta().content());
        return true;
      });
  EXPECT_THAT(s.status, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  ASSERT_GT(received, 0);
  const quota::ClassUsage llm = Llm();
  EXPECT_EQ(llm.token_windows[0].used, PromptTokens(Chat()) + received);
  EXPECT_EQ(llm.windows[0].used, 1);
  EXPECT_EQ(llm.in_flight, 0);
}

TEST_F(GatewaySettlementTest, AStreamCutMidwaySettlesWhatItProduced) {
  Build();
  provider_.mode = ScriptedProvider::Mode::kFailAfterChunks;
  provider_.chunks = 3;  // the first may carry only the role
  int64_t received = 0;
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk& chunk) {
        for (const auto& c : chunk.choices()) received += CountTokens(c.delta().content());
        return true;
      });
  EXPECT_FALSE(s.status.ok());
  ASSERT_GT(received, 0);
  EXPECT_EQ(Llm().token_windows[0].used, PromptTokens(Chat()) + received);
}

TEST_F(GatewaySettlementTest, AFinishedStreamSettlesToItsUsageChunk) {
  Build();
  int64_t usage_total = -1;
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk& chunk) {
        if (chunk.has_usage()) usage_total = chunk.usage().total_tokens();
        return true;
      });
  ASSERT_THAT(s.status, IsOk());
  ASSERT_GT(usage_total, 0);
  EXPECT_EQ(Llm().token_windows[0].used, usage_total);
}

TEST_F(GatewaySettlementTest, AClientGoneBeforeTheStreamStartsIsRefunded) {
  Build();
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return false; },
      [](const v1::ChatCompletionChunk&) { return true; });
  EXPECT_THAT(s.status, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(Llm().windows[0].used, 0);
  EXPECT_EQ(Llm().token_windows[0].used, 0);
  EXPECT_EQ(Llm().in_flight, 0);
}

TEST_F(GatewaySettlementTest, TheConcurrencyLimitHoldsWhileAStreamIsInFlight) {
  Build();
  std::optional<absl::Status> second;
  provider_.during_stream = [&] {
    if (!second.has_value()) second = gateway_->Chat(anonymous_, Chat(10)).result.status();
  };
  StreamOutcome s = gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return true; },
      [](const v1::ChatCompletionChunk&) { return true; });
  ASSERT_THAT(s.status, IsOk());
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(*second, StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  provider_.during_stream = nullptr;
  EXPECT_EQ(Llm().in_flight, 0);
  EXPECT_THAT(gateway_->Chat(anonymous_, Chat(10)).result, IsOk());
}

TEST_F(GatewaySettlementTest, AnEndpointFailureGivesItsRequestBack) {
  Build();
  provider_.mode = ScriptedProvider::Mode::kFailBeforeOutput;
  v1::ImagineRequest r;
  r.set_prompt("a lighthouse");
  EXPECT_FALSE(gateway_->Imagine(anonymous_, r).result.ok());
  absl::StatusOr<quota::UsageSnapshot> u =
      engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
  for (const quota::ClassUsage& c : u->classes) {
    if (c.feature_class == quota::kImagine) {
      EXPECT_EQ(c.windows[0].used, 0);
    }
  }
  provider_.mode = ScriptedProvider::Mode::kAnswer;
  ASSERT_THAT(gateway_->Imagine(anonymous_, r).result, IsOk());
  u = engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
  for (const quota::ClassUsage& c : u->classes) {
    if (c.feature_class == quota::kImagine) {
      EXPECT_EQ(c.windows[0].used, 1);
    }
  }
}

}  // namespace
}  // namespace anyai::server
