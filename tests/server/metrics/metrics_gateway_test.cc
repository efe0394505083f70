// Metrics as the Gateway's observer over real parts (RocksDB in a temp dir, the engine, the
// builtin provider behind a wrapper that fails on demand, as an upstream does): after chats,
// streams that finish, streams the client leaves, failures before any output, refusals and
// meta calls (/models, /check), no call is left in flight, and the settled tokens are the
// engine's own count.
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/server/gateway/gateway_rig.h"
#include "tests/server/metrics/exposition.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::server::testing::ValueOf;
using ::anyai::testing::IsOk;
using ::testing::Optional;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);
constexpr char kTenant[] = "ip:203.0.113.7";

quota::PlanTable Plans() {
  quota::PlanTable plans = quota::DefaultPlanTable();
  for (quota::Plan& p : plans.plans) {
    p.default_token_reserve = 300;
    for (quota::ClassLimits& c : p.classes) {
      if (c.feature_class == quota::kLlm) {
        c.windows = {{absl::Minutes(1), 100'000}};
        c.token_windows = {{absl::Minutes(1), 10'000'000}};
        c.max_concurrent = 1;
      }
    }
  }
  return plans;
}

class MetricsGatewayTest : public ::testing::Test {
 protected:
  MetricsGatewayTest() : rig_(Plans(), kNow) {
    metrics_ = Metrics::Create(*rig_.engine, {});
    rig_.Start([&](GatewayParts& parts) {
      parts.providers = {{"builtin", &provider_}};
      parts.observer = metrics_.get();
    });
    gateway_ = rig_.gateway.get();
    engine_ = rig_.engine.get();
  }

  static v1::ChatCompletionRequest Chat(std::optional<int> max_tokens = std::nullopt) {
    v1::ChatCompletionRequest r;
    r.set_model("phi-2");  // an llm model
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content("Tell me about the lighthouse keeper who counted every wave.");
    if (max_tokens.has_value()) r.set_max_tokens(*max_tokens);
    return r;
  }

  std::optional<double> Llm(const std::string& name) const {
    return ValueOf(metrics_->Render(), name, {{"feature_class", "llm"}, {"plan", "free"}});
  }

  int64_t EngineTokensUsed() {
    absl::StatusOr<quota::UsageSnapshot> u =
        engine_->Usage(kTenant, *engine_->FindPlan("free"), kNow);
    EXPECT_THAT(u, IsOk());
    for (const quota::ClassUsage& c : u->classes) {
      if (c.feature_class == quota::kLlm) return c.token_windows[0].used;
    }
    return -1;
  }

  GatewayRig rig_;
  std::unique_ptr<Metrics> metrics_;
  ScriptedProvider provider_{kNow};
  Gateway* gateway_ = nullptr;
  quota::Engine* engine_ = nullptr;
  const Caller anonymous_{.authorization = std::nullopt,
                          .peer = "203.0.113.7",
                          .forwarded_for = "",
                          .public_base_url = ""};
};

TEST_F(MetricsGatewayTest, EveryPathLeavesNoCallInFlightAndSettlesTheEnginesTokens) {
  // Answered, with and without max_tokens.
  ASSERT_THAT(gateway_->Chat(anonymous_, Chat(400)).result, IsOk());
  ASSERT_THAT(gateway_->Chat(anonymous_, Chat()).result, IsOk());
  // Failed before any output: refunded.
  provider_.mode = ScriptedProvider::Mode::kFailBeforeOutput;
  EXPECT_FALSE(gateway_->Chat(anonymous_, Chat(400)).result.ok());
  EXPECT_FALSE(gateway_
                   ->StreamChat(
                       anonymous_, Chat(), [](const auto&) { return true; },
                       [](const v1::ChatCompletionChunk&) { return true; })
                   .status.ok());
  provider_.mode = ScriptedProvider::Mode::kAnswer;
  // A stream to its end; 1,000 streams whose client leaves after the first chunk; a client
  // gone before its stream started.
  ASSERT_THAT(gateway_
                  ->StreamChat(
                      anonymous_, Chat(), [](const auto&) { return true; },
                      [](const v1::ChatCompletionChunk&) { return true; })
                  .status,
              IsOk());
  for (int i = 0; i < 1000; ++i) {
    int chunks = 0;
    gateway_->StreamChat(
        anonymous_, Chat(), [](const auto&) { return true; },
        [&](const v1::ChatCompletionChunk&) { return ++chunks < 2; });
  }
  gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return false; },
      [](const v1::ChatCompletionChunk&) { return true; });
  // Refused by the concurrency limit (1) while a stream is in flight: observed mid-stream.
  std::optional<double> in_flight_during_stream;
  std::optional<bool> second_admitted;
  gateway_->StreamChat(
      anonymous_, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk&) {
        if (!second_admitted.has_value()) {
          in_flight_during_stream = Llm("anyai_calls_in_flight");
          second_admitted = gateway_->Chat(anonymous_, Chat(10)).result.ok();
        }
        return true;
      });
  EXPECT_THAT(in_flight_during_stream, Optional(1.0));
  EXPECT_EQ(second_admitted, false);
  // Meta calls: admitted and released at once.
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(gateway_->ListModels(anonymous_).result, IsOk());
    gateway_->GetModel(anonymous_, "phi-2");
    ASSERT_THAT(gateway_->CheckKey(anonymous_, "").result, IsOk());
  }

  EXPECT_THAT(Llm("anyai_calls_in_flight"), Optional(0.0));
  const std::string text = metrics_->Render();
  EXPECT_EQ(ValueOf(text, "anyai_calls_in_flight", {{"feature_class", "meta"}, {"plan", "free"}}),
            std::nullopt);
  // What was settled is what the engine counts, and reserved - refunded + overage = settled.
  const int64_t used = EngineTokensUsed();
  ASSERT_GT(used, 0);
  EXPECT_THAT(Llm("anyai_tokens_settled_total"), Optional(static_cast<double>(used)));
  const double reserved = *Llm("anyai_tokens_reserved_total");
  const double refunded = *Llm("anyai_tokens_refunded_total");
  const double overage = *Llm("anyai_tokens_overage_total");
  EXPECT_GT(refunded, 0);  // the failures, the cancelled streams, the unused max_tokens
  EXPECT_EQ(reserved - refunded + overage, static_cast<double>(used));
  // phi-2 has no price: no spend.
  EXPECT_THAT(Llm("anyai_spend_micro_usd_settled_total"), Optional(0.0));
}

}  // namespace
}  // namespace anyai::server
