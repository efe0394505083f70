// The Gateway over real parts (RocksDB in a temp dir, the engine, the builtin provider): what a
// storage failure does under each policy, that nothing reaches the engine before authentication
// and validation pass, and what every Outcome carries back to the fronts.
#include "server/gateway/gateway.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/error_kind.h"
#include "server/providers/builtin/builtin_provider.h"
#include "tests/server/gateway/gateway_rig.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);

class GatewayTest : public ::testing::Test {
 protected:
  void Build(StorageFailurePolicy policy) {
    rig_ = std::make_unique<GatewayRig>(quota::DefaultPlanTable(), kNow);
    rig_->Start([&](GatewayParts& parts) {
      parts.providers = {{"builtin", &builtin_}};
      parts.storage_failure_policy = policy;
    });
    db_ = rig_->db.get();
    keys_ = rig_->keys.get();
    engine_ = rig_->engine.get();
    gateway_ = rig_->gateway.get();
  }

  static v1::ChatCompletionRequest Chat() {
    v1::ChatCompletionRequest r;
    r.set_model("phi-2");
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content("hello");
    return r;
  }

  BuiltinProvider builtin_{[] { return kNow; }};
  std::unique_ptr<GatewayRig> rig_;
  storage::Database* db_ = nullptr;
  storage::RocksDbKeyStore* keys_ = nullptr;
  quota::Engine* engine_ = nullptr;
  Gateway* gateway_ = nullptr;
  const Caller anonymous_{.authorization = std::nullopt,
                          .peer = "203.0.113.7",
                          .forwarded_for = "",
                          .public_base_url = ""};
};

// Which calls a front may answer on the thread that read them: a chat only when its model's
// provider answers from memory and admissions do not wait for the disk.
TEST(GatewayAnswersWithoutBlockingTest, FollowsTheProviderAndTheDurability) {
  BuiltinProvider builtin([] { return kNow; });
  ScriptedProvider upstream(kNow);  // stands for an upstream: it may block
  struct Case {
    Provider* provider;
    bool wait_for_disk;
    bool chat;    // a chat of a known model, by id and by alias
    bool models;  // /models
  };
  for (const Case& c : {Case{&builtin, false, true, true}, Case{&upstream, false, false, true},
                        Case{&builtin, true, false, false}, Case{&upstream, true, false, false}}) {
    GatewayRig rig(quota::DefaultPlanTable(), kNow);
    rig.Start([&](GatewayParts& parts) {
      parts.providers = {{"builtin", c.provider}};
      parts.admissions_wait_for_disk = c.wait_for_disk;
    });
    const Gateway& g = *rig.gateway;
    EXPECT_EQ(g.AnswersWithoutBlocking(Endpoint::kChatCompletions, "phi-2"), c.chat);
    EXPECT_EQ(g.AnswersWithoutBlocking(Endpoint::kChatCompletions, "claude-3-opus"), c.chat);
    // An unknown model is refused before anything is counted or asked.
    EXPECT_EQ(g.AnswersWithoutBlocking(Endpoint::kChatCompletions, "no-such-model"),
              !c.wait_for_disk);
    EXPECT_EQ(g.AnswersWithoutBlocking(Endpoint::kModels), c.models);
    for (Endpoint e : {Endpoint::kImagesGenerations, Endpoint::kImagine, Endpoint::kAsk,
                       Endpoint::kVision, Endpoint::kCheck}) {
      EXPECT_FALSE(g.AnswersWithoutBlocking(e)) << EndpointName(e);
    }
  }
}

TEST_F(GatewayTest, AStorageFailureRefusesRequestsWhenFailingClosed) {
  Build(StorageFailurePolicy::kFailClosed);
  ASSERT_THAT(gateway_->Chat(anonymous_, Chat()).result, IsOk());
  db_->InjectFailure(storage::InjectedFailure::kWrites);
  Outcome<v1::ChatCompletion> refused = gateway_->Chat(anonymous_, Chat());
  EXPECT_THAT(refused.result,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("storage is unavailable")));
  EXPECT_EQ(ErrorKindOf(refused.result.status()).http_status, 503);
  db_->InjectFailure(storage::InjectedFailure::kNone);
  EXPECT_THAT(gateway_->Chat(anonymous_, Chat()).result, IsOk());
}

TEST_F(GatewayTest, AStorageFailureServesUnmeteredWhenFailingOpen) {
  Build(StorageFailurePolicy::kFailOpen);
  db_->InjectFailure(storage::InjectedFailure::kWrites);
  Outcome<v1::ChatCompletion> served = gateway_->Chat(anonymous_, Chat());
  ASSERT_THAT(served.result, IsOk());
  EXPECT_FALSE(served.rate_limit.has_value());  // no usable figures: no x-ratelimit headers
}

TEST_F(GatewayTest, AKeyStoreFailureIsUnavailableNotUnauthenticated) {
  Build(StorageFailurePolicy::kFailClosed);
  absl::StatusOr<storage::CreatedKey> key = keys_->Create("premium", "t", kNow);
  ASSERT_THAT(key, IsOk());
  const std::string header = "Bearer " + key->key;
  db_->InjectFailure(storage::InjectedFailure::kReadsAndWrites);
  EXPECT_THAT(
      gateway_->Authenticate(
          {.authorization = header, .peer = "", .forwarded_for = "", .public_base_url = ""}),
      StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST_F(GatewayTest, NothingIsCountedBeforeAuthenticationAndValidationPass) {
  Build(StorageFailurePolicy::kFailClosed);
  v1::ChatCompletionRequest bad = Chat();
  bad.mutable_messages(0)->set_role("system");
  bad.add_messages()->set_role("system");
  Outcome<v1::ChatCompletion> invalid = gateway_->Chat(anonymous_, bad);
  EXPECT_THAT(invalid.result, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_FALSE(invalid.rate_limit.has_value());
  EXPECT_THAT(gateway_
                  ->Chat({.authorization = "Bearer sk-nope",
                          .peer = "203.0.113.7",
                          .forwarded_for = "",
                          .public_base_url = ""},
                         Chat())
                  .result,
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_THAT(gateway_
                  ->Chat({.authorization = "",
                          .peer = "203.0.113.7",
                          .forwarded_for = "",
                          .public_base_url = ""},
                         Chat())
                  .result,
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  absl::StatusOr<quota::UsageSnapshot> usage =
      engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->classes[0].windows[0].used, 0);
}

TEST_F(GatewayTest, XForwardedForCountsOnlyFromTrustedProxies) {
  Build(StorageFailurePolicy::kFailClosed);
  const Caller direct{.authorization = std::nullopt,
                      .peer = "198.51.100.1",
                      .forwarded_for = "10.9.9.9",
                      .public_base_url = ""};
  EXPECT_EQ(gateway_->Authenticate(direct)->tenant, "ip:198.51.100.1");
}

TEST_F(GatewayTest, OneClientIsOneTenantHoweverItsAddressIsWritten) {
  Build(StorageFailurePolicy::kFailClosed);
  EXPECT_EQ(gateway_
                ->Authenticate({.authorization = std::nullopt,
                                .peer = "::ffff:203.0.113.7",
                                .forwarded_for = "",
                                .public_base_url = ""})
                ->tenant,
            "ip:203.0.113.7");
  EXPECT_EQ(gateway_
                ->Authenticate({.authorization = std::nullopt,
                                .peer = "2001:DB8:0:0::1",
                                .forwarded_for = "",
                                .public_base_url = ""})
                ->tenant,
            "ip:2001:db8::/64");
  v1::GetUsageRequest by_ip;
  by_ip.set_ip("::FFFF:203.0.113.7");
  EXPECT_EQ(gateway_->GetUsage(by_ip)->tenant(), "ip:203.0.113.7");
}

TEST_F(GatewayTest, CheckingABadKeyCountsNothing) {
  Build(StorageFailurePolicy::kFailClosed);
  EXPECT_THAT(gateway_->CheckKey(anonymous_, "sk-anyai-nope").result,
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  absl::StatusOr<quota::UsageSnapshot> usage =
      engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
  ASSERT_THAT(usage, IsOk());
  for (const quota::ClassUsage& c : usage->classes) {
    if (c.feature_class == quota::kMeta) {
      EXPECT_EQ(c.windows[0].used, 0);
    }
  }
}

TEST_F(GatewayTest, EveryDecidedCallCarriesItsRateLimitFiguresAndARefusalHasNoneRemaining) {
  Build(StorageFailurePolicy::kFailClosed);
  // The free plan's llm class: 10 per minute.
  for (int i = 1; i <= 10; ++i) {
    Outcome<v1::ChatCompletion> admitted = gateway_->Chat(anonymous_, Chat());
    ASSERT_THAT(admitted.result, IsOk());
    ASSERT_TRUE(admitted.rate_limit.has_value());
    EXPECT_EQ(admitted.rate_limit->limit, 10);
    EXPECT_EQ(admitted.rate_limit->remaining, 10 - i);
  }
  Outcome<v1::ChatCompletion> refused = gateway_->Chat(anonymous_, Chat());
  EXPECT_THAT(refused.result, StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  ASSERT_TRUE(refused.rate_limit.has_value());
  EXPECT_EQ(refused.rate_limit->limit, 10);
  EXPECT_EQ(refused.rate_limit->remaining, 0);
  EXPECT_GT(refused.rate_limit->reset, absl::ZeroDuration());
}

TEST_F(GatewayTest, CheckKeyWithoutAKeyReportsTheCallersAnonymousUsage) {
  Build(StorageFailurePolicy::kFailClosed);
  ASSERT_THAT(gateway_->Chat(anonymous_, Chat()).result, IsOk());
  Outcome<v1::CheckKeyResponse> report = gateway_->CheckKey(anonymous_, "");
  ASSERT_THAT(report.result, IsOk());
  EXPECT_EQ(report.result->plan(), "free");
  EXPECT_TRUE(report.result->masked_key().empty());
  bool saw_llm = false;
  for (const v1::ClassUsage& c : report.result->classes()) {
    if (c.feature_class() == quota::kLlm) {
      saw_llm = true;
      EXPECT_EQ(c.windows(0).used(), 1);
    }
  }
  EXPECT_TRUE(saw_llm);
  EXPECT_TRUE(report.rate_limit.has_value());  // the check itself counted in `meta`
}

TEST_F(GatewayTest, AStreamThatIsRefusedNeverStartsAndOneAdmittedStartsBeforeItsFirstChunk) {
  Build(StorageFailurePolicy::kFailClosed);
  std::vector<std::string> events;
  StreamOutcome out = gateway_->StreamChat(
      anonymous_, Chat(),
      [&](const std::optional<RateLimitState>& r) {
        events.push_back(r.has_value() ? "start" : "start-unmetered");
        return true;
      },
      [&](const v1::ChatCompletionChunk&) {
        events.push_back("chunk");
        return true;
      });
  ASSERT_THAT(out.status, IsOk());
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front(), "start");
  EXPECT_EQ(events[1], "chunk");

  v1::ChatCompletionRequest bad = Chat();
  bad.set_model("no-such-model");
  bool started = false;
  out = gateway_->StreamChat(
      anonymous_, bad, [&](const std::optional<RateLimitState>&) { return started = true; },
      [&](const v1::ChatCompletionChunk&) { return true; });
  EXPECT_THAT(out.status, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_FALSE(started);
}

TEST_F(GatewayTest, AClientGoneBeforeTheHeadCancelsTheStreamWithoutCallingTheProvider) {
  Build(StorageFailurePolicy::kFailClosed);
  int chunks = 0;
  StreamOutcome out = gateway_->StreamChat(
      anonymous_, Chat(), [](const std::optional<RateLimitState>&) { return false; },
      [&](const v1::ChatCompletionChunk&) {
        ++chunks;
        return true;
      });
  EXPECT_THAT(out.status, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  EXPECT_EQ(chunks, 0);
}

}  // namespace
}  // namespace anyai::server
