// Metrics as the Gateway's observer over real parts (RocksDB in a temp dir, the engine, the
// builtin provider behind a wrapper that fails on demand, as an upstream does): after chats,
// streams that finish, streams the client leaves, failures before any output, refusals and
// meta calls (/models, /check), no call is left in flight, and the settled tokens are the
// engine's own count.
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/gateway.h"
#include "server/metrics/metrics.h"
#include "server/providers/builtin/builtin_provider.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_store.h"
#include "tests/server/metrics/exposition.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::anyai::server::testing::ValueOf;
using ::anyai::testing::IsOk;
using ::testing::Optional;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);
constexpr char kTenant[] = "ip:203.0.113.7";

// The builtin provider, or a failure before any output.
class FailingProvider : public Provider {
 public:
  bool fail = false;

  absl::StatusOr<v1::ChatCompletion> Chat(const v1::ChatCompletionRequest& request) override {
    if (fail) return absl::UnavailableError("upstream answered 503");
    return builtin_.Chat(request);
  }
  absl::Status StreamChat(const v1::ChatCompletionRequest& request,
                          absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) override {
    if (fail) return absl::UnavailableError("connection refused");
    return builtin_.StreamChat(request, emit);
  }
  absl::StatusOr<v1::GenerateImagesResponse> GenerateImages(
      const v1::GenerateImagesRequest& request) override {
    return builtin_.GenerateImages(request);
  }
  absl::StatusOr<v1::ImagineResponse> Imagine(const v1::ImagineRequest& request) override {
    return builtin_.Imagine(request);
  }
  absl::Status Ask(const v1::AskRequest& request,
                   absl::FunctionRef<bool(const v1::AskChunk&)> emit) override {
    return builtin_.Ask(request, emit);
  }
  absl::StatusOr<v1::DescribeImageResponse> DescribeImage(
      const v1::DescribeImageRequest& request) override {
    return builtin_.DescribeImage(request);
  }

 private:
  BuiltinProvider builtin_{[] { return kNow; }};
};

class MetricsGatewayTest : public ::testing::Test {
 protected:
  MetricsGatewayTest() {
    db_ = *storage::Database::Open({.data_dir = dir_.Sub("db")});
    keys_ = *storage::RocksDbKeyStore::Open(*db_);
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
    std::vector<storage::ClassInfo> classes;
    {
      auto probe = *quota::Engine::Create(plans, {});
      classes = storage::UsageClassesOf(*probe);
    }
    usage_ = *storage::UsageStore::Open(*db_, classes, {.clock = [] { return kNow; }});
    engine_ = *quota::Engine::Create(plans, {.sink = usage_.get(), .loader = usage_.get()});
    metrics_ = Metrics::Create(*engine_, {});
    catalogue_ = std::make_unique<Catalogue>(*Catalogue::Create(DefaultModels()));
    GatewayParts parts;
    parts.engine = engine_.get();
    parts.keys = keys_.get();
    parts.catalogue = catalogue_.get();
    parts.image_models = DefaultImageGenerationModels();
    parts.imagine_models = DefaultImagineModels();
    parts.vision_models = DefaultVisionModels();
    parts.providers = {{"builtin", &provider_}};
    parts.observer = metrics_.get();
    parts.clock = [] { return kNow; };
    gateway_ = *Gateway::Create(std::move(parts));
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

  ::anyai::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::RocksDbKeyStore> keys_;
  std::unique_ptr<storage::UsageStore> usage_;
  std::unique_ptr<quota::Engine> engine_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Catalogue> catalogue_;
  FailingProvider provider_;
  std::unique_ptr<Gateway> gateway_;
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
  provider_.fail = true;
  EXPECT_FALSE(gateway_->Chat(anonymous_, Chat(400)).result.ok());
  EXPECT_FALSE(gateway_
                   ->StreamChat(
                       anonymous_, Chat(), [](const auto&) { return true; },
                       [](const v1::ChatCompletionChunk&) { return true; })
                   .status.ok());
  provider_.fail = false;
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
