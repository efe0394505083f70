// The Gateway over real parts (RocksDB in a temp dir, the engine, the builtin provider):
// what a storage failure does under each policy, and that nothing reaches the engine before
// authentication and validation pass.
#include "server/gateway/gateway.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/providers/builtin/builtin_provider.h"
#include "server/gateway/catalogue.h"
#include "storage/database.h"
#include "storage/rocksdb_key_store.h"
#include "storage/usage_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'767'225'600);

class GatewayTest : public ::testing::Test {
 protected:
  void Build(StorageFailurePolicy policy) {
    db_ = *storage::Database::Open({.data_dir = dir_.Sub("db")});
    keys_ = *storage::RocksDbKeyStore::Open(*db_);
    quota::PlanTable plans = quota::DefaultPlanTable();
    std::vector<storage::ClassInfo> classes;
    {
      auto probe = *quota::Engine::Create(plans, {});
      classes = storage::UsageClassesOf(*probe);
    }
    usage_ = *storage::UsageStore::Open(*db_, classes, {.clock = [] { return kNow; }});
    engine_ = *quota::Engine::Create(plans, {.sink = usage_.get(), .loader = usage_.get()});
    catalogue_ = std::make_unique<Catalogue>(*Catalogue::Create(DefaultModels()));
    GatewayParts parts;
    parts.engine = engine_.get();
    parts.keys = keys_.get();
    parts.catalogue = catalogue_.get();
    parts.image_models = DefaultImageGenerationModels();
    parts.imagine_models = DefaultImagineModels();
    parts.vision_models = DefaultVisionModels();
    parts.providers = {{"builtin", &builtin_}};
    parts.storage_failure_policy = policy;
    parts.clock = [] { return kNow; };
    gateway_ = *Gateway::Create(std::move(parts));
  }

  static v1::ChatCompletionRequest Chat() {
    v1::ChatCompletionRequest r;
    r.set_model("phi-2");
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content("hello");
    return r;
  }

  ::anyai::testing::TempDir dir_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::RocksDbKeyStore> keys_;
  std::unique_ptr<storage::UsageStore> usage_;
  std::unique_ptr<quota::Engine> engine_;
  std::unique_ptr<Catalogue> catalogue_;
  BuiltinProvider builtin_{[] { return kNow; }};
  std::unique_ptr<Gateway> gateway_;
  const Caller anonymous_{.authorization = "", .peer = "203.0.113.7", .forwarded_for = ""};
};

TEST_F(GatewayTest, AStorageFailureRefusesRequestsWhenFailingClosed) {
  Build(StorageFailurePolicy::kFailClosed);
  ASSERT_THAT(gateway_->AdmitChat(anonymous_, Chat()), IsOk());
  db_->InjectFailure(storage::InjectedFailure::kWrites);
  EXPECT_THAT(gateway_->AdmitChat(anonymous_, Chat()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("storage unavailable")));
  db_->InjectFailure(storage::InjectedFailure::kNone);
  EXPECT_THAT(gateway_->AdmitChat(anonymous_, Chat()), IsOk());
}

TEST_F(GatewayTest, AStorageFailureServesUnmeteredWhenFailingOpen) {
  Build(StorageFailurePolicy::kFailOpen);
  db_->InjectFailure(storage::InjectedFailure::kWrites);
  absl::StatusOr<Admitted> admitted = gateway_->AdmitChat(anonymous_, Chat());
  ASSERT_THAT(admitted, IsOk());
  EXPECT_EQ(admitted->decision.limit, 0);  // no usable figures: no x-ratelimit headers
  EXPECT_NE(admitted->provider, nullptr);
}

TEST_F(GatewayTest, AKeyStoreFailureIsUnavailableNotUnauthenticated) {
  Build(StorageFailurePolicy::kFailClosed);
  absl::StatusOr<storage::CreatedKey> key = keys_->Create("premium", "t", kNow);
  ASSERT_THAT(key, IsOk());
  const std::string header = "Bearer " + key->key;
  db_->InjectFailure(storage::InjectedFailure::kReadsAndWrites);
  EXPECT_THAT(gateway_->Authenticate({.authorization = header, .peer = "", .forwarded_for = ""}),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST_F(GatewayTest, NothingIsCountedBeforeAuthenticationAndValidationPass) {
  Build(StorageFailurePolicy::kFailClosed);
  v1::ChatCompletionRequest bad = Chat();
  bad.mutable_messages(0)->set_role("system");
  bad.add_messages()->set_role("system");
  EXPECT_THAT(gateway_->AdmitChat(anonymous_, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(
      gateway_->AdmitChat(
          {.authorization = "Bearer sk-nope", .peer = "203.0.113.7", .forwarded_for = ""}, Chat()),
      StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  absl::StatusOr<quota::UsageSnapshot> usage =
      engine_->Usage("ip:203.0.113.7", *engine_->FindPlan("free"), kNow);
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->classes[0].windows[0].used, 0);
}

TEST_F(GatewayTest, XForwardedForCountsOnlyFromTrustedProxies) {
  Build(StorageFailurePolicy::kFailClosed);
  const Caller direct{.authorization = "", .peer = "198.51.100.1", .forwarded_for = "10.9.9.9"};
  EXPECT_EQ(gateway_->Authenticate(direct)->tenant, "ip:198.51.100.1");
}

TEST_F(GatewayTest, OneClientIsOneTenantHoweverItsAddressIsWritten) {
  Build(StorageFailurePolicy::kFailClosed);
  EXPECT_EQ(
      gateway_
          ->Authenticate({.authorization = "", .peer = "::ffff:203.0.113.7", .forwarded_for = ""})
          ->tenant,
      "ip:203.0.113.7");
  EXPECT_EQ(
      gateway_->Authenticate({.authorization = "", .peer = "2001:DB8:0:0::1", .forwarded_for = ""})
          ->tenant,
      "ip:2001:db8::1");
  v1::GetUsageRequest by_ip;
  by_ip.set_ip("::FFFF:203.0.113.7");
  EXPECT_EQ(gateway_->GetUsage(by_ip)->tenant(), "ip:203.0.113.7");
}

TEST_F(GatewayTest, CheckingABadKeyCountsNothing) {
  Build(StorageFailurePolicy::kFailClosed);
  EXPECT_THAT(gateway_->CheckKey(anonymous_, "sk-anyai-nope", nullptr),
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

}  // namespace
}  // namespace anyai::server
