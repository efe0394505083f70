// The quota engine with a UsageStore as its sink and loader: limits survive a restart (SPEC §6),
// for every meter, reservations as settled, and a storage failure reaches Admit() as an error
// rather than being ignored.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "quota/plan.h"
#include "storage/database.h"
#include "storage/usage_schema.h"
#include "storage/usage_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::storage {
namespace {

using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);

// The seed's plans, with llm also limited to 10'000 tokens a minute and 100'000 a day, and
// 5 USD (5'000'000 micro-USD) a day, on both plans.
quota::PlanTable TokenPlans() {
  quota::PlanTable plans = quota::DefaultPlanTable();
  for (quota::Plan& plan : plans.plans) {
    for (quota::ClassLimits& limits : plan.classes) {
      if (limits.feature_class != quota::kLlm) continue;
      limits.token_windows = {{absl::Minutes(1), 10'000}, {absl::Hours(24), 100'000}};
      limits.spend_windows = {{absl::Hours(24), 5'000'000}};
    }
  }
  return plans;
}

// One process lifetime: database, usage store and engine, wired as the server wires them.
struct Gateway {
  std::unique_ptr<Database> db;
  std::unique_ptr<UsageStore> usage;
  std::unique_ptr<quota::Engine> engine;
  quota::PlanId free_plan;
  quota::ClassId llm;
};

absl::StatusOr<Gateway> Start(const std::string& data_dir,
                              const quota::PlanTable& plans = quota::DefaultPlanTable()) {
  Gateway g;
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = data_dir});
  if (!db.ok()) return db.status();
  g.db = *std::move(db);
  absl::StatusOr<std::unique_ptr<quota::Engine>> probe = quota::Engine::Create(plans, {});
  if (!probe.ok()) return probe.status();
  absl::StatusOr<std::unique_ptr<UsageStore>> usage =
      UsageStore::Open(*g.db, UsageClassesOf(**probe), {.clock = [] { return kStart; }});
  if (!usage.ok()) return usage.status();
  g.usage = *std::move(usage);
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(plans, {.sink = g.usage.get(), .loader = g.usage.get()});
  if (!engine.ok()) return engine.status();
  g.engine = *std::move(engine);
  g.free_plan = *g.engine->FindPlan(quota::kFreePlan);
  g.llm = *g.engine->FindClass(quota::kLlm);
  return g;
}

// Admits `n` requests at `at`; returns how many were admitted.
int AdmitMany(Gateway& g, const std::string& tenant, int n, absl::Time at) {
  int admitted = 0;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<quota::Decision> d = g.engine->Admit(tenant, g.free_plan, g.llm, at);
    EXPECT_OK(d);
    if (d.ok() && d->admitted) ++admitted;
  }
  return admitted;
}

TEST(EngineRestoreTest, UsageClassesDescribeTheEnginesClasses) {
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine =
      quota::Engine::Create(quota::DefaultPlanTable(), {});
  ASSERT_OK(engine);

  const std::vector<ClassInfo> classes = UsageClassesOf(**engine);

  ASSERT_EQ(static_cast<int>(classes.size()), (*engine)->class_count());
  const int llm = (*engine)->FindClass(quota::kLlm)->index;
  EXPECT_EQ(classes[llm].name, "llm");
  EXPECT_EQ(classes[llm].requests.sub_bucket, absl::Seconds(1));  // 10/min: one minute / 60
  EXPECT_EQ(classes[llm].requests.longest_window, absl::Hours(24));
  // The seed limits requests only.
  EXPECT_EQ(classes[llm].tokens, MeterWindows{});
  EXPECT_EQ(classes[llm].spend, MeterWindows{});
  const int imagine = (*engine)->FindClass(quota::kImagine)->index;
  EXPECT_EQ(classes[imagine].requests.sub_bucket, absl::Minutes(24));  // 20/day only
}

TEST(EngineRestoreTest, UsageClassesDescribeEveryMeterTheEngineLimits) {
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine = quota::Engine::Create(TokenPlans(), {});
  ASSERT_OK(engine);

  const std::vector<ClassInfo> classes = UsageClassesOf(**engine);

  const int llm = (*engine)->FindClass(quota::kLlm)->index;
  EXPECT_EQ(classes[llm].tokens, (MeterWindows{absl::Seconds(1), absl::Hours(24)}));
  EXPECT_EQ(classes[llm].spend, (MeterWindows{absl::Minutes(24), absl::Hours(24)}));
  const int vision = (*engine)->FindClass(quota::kVision)->index;
  EXPECT_EQ(classes[vision].tokens, MeterWindows{});
}

// The token and spend windows of llm in a snapshot: (window, used) pairs.
std::vector<std::pair<absl::Duration, int64_t>> LlmCostUsage(Gateway& g, const std::string& tenant,
                                                             absl::Time at) {
  std::vector<std::pair<absl::Duration, int64_t>> used;
  absl::StatusOr<quota::UsageSnapshot> usage = g.engine->Usage(tenant, g.free_plan, at);
  EXPECT_OK(usage);
  if (!usage.ok()) return used;
  for (const quota::ClassUsage& c : usage->classes) {
    if (c.feature_class != quota::kLlm) continue;
    for (const quota::WindowUsage& w : c.token_windows) used.emplace_back(w.window, w.used);
    for (const quota::WindowUsage& w : c.spend_windows) used.emplace_back(w.window, w.used);
  }
  return used;
}

TEST(EngineRestoreTest, ASettledCallIsRestoredAtWhatItUsed) {
  TempDir dir;
  {
    absl::StatusOr<Gateway> before = Start(dir.path(), TokenPlans());
    ASSERT_OK(before);
    absl::StatusOr<quota::Reservation> r =
        before->engine->Reserve("key:0123456789abcdef", before->free_plan, before->llm,
                                {.requests = 1, .tokens = 900, .micro_usd = 4'000}, kStart);
    ASSERT_OK(r);
    ASSERT_TRUE(r->admitted());
    ASSERT_OK(before->engine->Settle(*r, {.requests = 1, .tokens = 312, .micro_usd = 1'500},
                                     kStart + absl::Seconds(2)));
  }

  absl::StatusOr<Gateway> after = Start(dir.path(), TokenPlans());
  ASSERT_OK(after);

  EXPECT_THAT(LlmCostUsage(*after, "key:0123456789abcdef", kStart + absl::Seconds(5)),
              ::testing::ElementsAre(std::pair{absl::Minutes(1), int64_t{312}},
                                     std::pair{absl::Hours(24), int64_t{312}},
                                     std::pair{absl::Hours(24), int64_t{1'500}}));
}

TEST(EngineRestoreTest, AReservationNeverSettledStaysChargedInFull) {
  TempDir dir;
  {
    absl::StatusOr<Gateway> before = Start(dir.path(), TokenPlans());
    ASSERT_OK(before);
    absl::StatusOr<quota::Reservation> r =
        before->engine->Reserve("ip:203.0.113.7", before->free_plan, before->llm,
                                {.requests = 1, .tokens = 900, .micro_usd = 4'000}, kStart);
    ASSERT_OK(r);
    ASSERT_TRUE(r->admitted());
    // The process goes away before the call ends: nothing but the reservation was written.
  }

  absl::StatusOr<Gateway> after = Start(dir.path(), TokenPlans());
  ASSERT_OK(after);

  EXPECT_THAT(LlmCostUsage(*after, "ip:203.0.113.7", kStart + absl::Seconds(5)),
              ::testing::ElementsAre(std::pair{absl::Minutes(1), int64_t{900}},
                                     std::pair{absl::Hours(24), int64_t{900}},
                                     std::pair{absl::Hours(24), int64_t{4'000}}));
}

TEST(EngineRestoreTest, ATokenLimitReachedBeforeARestartStillHoldsAfterIt) {
  TempDir dir;
  {
    absl::StatusOr<Gateway> before = Start(dir.path(), TokenPlans());
    ASSERT_OK(before);
    absl::StatusOr<quota::Reservation> r = before->engine->Reserve(
        "ip:203.0.113.7", before->free_plan, before->llm, {.requests = 1, .tokens = 9'500}, kStart);
    ASSERT_OK(r);
    ASSERT_TRUE(r->admitted());
    ASSERT_OK(before->engine->Settle(*r, {.requests = 1, .tokens = 9'000}, kStart));
  }

  absl::StatusOr<Gateway> after = Start(dir.path(), TokenPlans());
  ASSERT_OK(after);

  absl::StatusOr<quota::Reservation> too_much =
      after->engine->Reserve("ip:203.0.113.7", after->free_plan, after->llm,
                             {.requests = 1, .tokens = 1'001}, kStart + absl::Seconds(30));
  ASSERT_OK(too_much);
  EXPECT_FALSE(too_much->admitted());
  EXPECT_EQ(too_much->decision().refused_kind, quota::LimitKind::kTokens);
  absl::StatusOr<quota::Reservation> fits =
      after->engine->Reserve("ip:203.0.113.7", after->free_plan, after->llm,
                             {.requests = 1, .tokens = 1'000}, kStart + absl::Seconds(30));
  ASSERT_OK(fits);
  EXPECT_TRUE(fits->admitted());
}

TEST(EngineRestoreTest, ALimitReachedBeforeARestartStillHoldsAfterIt) {
  TempDir dir;
  {
    absl::StatusOr<Gateway> before = Start(dir.path());
    ASSERT_OK(before);
    ASSERT_EQ(AdmitMany(*before, "ip:203.0.113.7", 12, kStart), 10);  // free llm: 10/min
  }

  absl::StatusOr<Gateway> after = Start(dir.path());
  ASSERT_OK(after);

  EXPECT_EQ(AdmitMany(*after, "ip:203.0.113.7", 1, kStart + absl::Seconds(30)), 0);
  EXPECT_EQ(AdmitMany(*after, "ip:198.51.100.2", 1, kStart + absl::Seconds(30)), 1);
  EXPECT_EQ(AdmitMany(*after, "ip:203.0.113.7", 10, kStart + absl::Seconds(62)), 10);
}

TEST(EngineRestoreTest, TheDailyCountSurvivesARestart) {
  TempDir dir;
  {
    absl::StatusOr<Gateway> before = Start(dir.path());
    ASSERT_OK(before);
    ASSERT_EQ(AdmitMany(*before, "key:0123456789abcdef", 7, kStart), 7);
  }

  absl::StatusOr<Gateway> after = Start(dir.path());
  ASSERT_OK(after);
  absl::StatusOr<quota::UsageSnapshot> usage =
      after->engine->Usage("key:0123456789abcdef", after->free_plan, kStart + absl::Hours(1));

  ASSERT_OK(usage);
  bool found = false;
  for (const quota::ClassUsage& c : usage->classes) {
    if (c.feature_class != quota::kLlm) continue;
    for (const quota::WindowUsage& w : c.windows) {
      if (w.window != absl::Hours(24)) continue;
      found = true;
      EXPECT_EQ(w.used, 7);
    }
  }
  EXPECT_TRUE(found);
}

TEST(EngineRestoreTest, AStorageFailureReachesAdmitAsAnError) {
  TempDir dir;
  absl::StatusOr<Gateway> g = Start(dir.path());
  ASSERT_OK(g);

  g->db->InjectFailure(InjectedFailure::kWrites);

  EXPECT_THAT(g->engine->Admit("ip:203.0.113.7", g->free_plan, g->llm, kStart),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
}

TEST(EngineRestoreTest, ALoadFailureReachesAdmitAsAnError) {
  TempDir dir;
  absl::StatusOr<Gateway> g = Start(dir.path());
  ASSERT_OK(g);

  g->db->InjectFailure(InjectedFailure::kReadsAndWrites);

  EXPECT_THAT(g->engine->Admit("ip:203.0.113.7", g->free_plan, g->llm, kStart),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
}

}  // namespace
}  // namespace anyai::storage
