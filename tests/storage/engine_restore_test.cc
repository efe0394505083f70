// The quota engine with a UsageStore as its sink and loader: limits survive a restart (SPEC §6),
// and a storage failure reaches Admit() as an error rather than being ignored.
#include <memory>
#include <string>
#include <utility>

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

// One process lifetime: database, usage store and engine, wired as the server wires them.
struct Gateway {
  std::unique_ptr<Database> db;
  std::unique_ptr<UsageStore> usage;
  std::unique_ptr<quota::Engine> engine;
  quota::PlanId free_plan;
  quota::ClassId llm;
};

absl::StatusOr<Gateway> Start(const std::string& data_dir) {
  Gateway g;
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.data_dir = data_dir});
  if (!db.ok()) return db.status();
  g.db = *std::move(db);
  absl::StatusOr<std::unique_ptr<quota::Engine>> probe =
      quota::Engine::Create(quota::DefaultPlanTable(), {});
  if (!probe.ok()) return probe.status();
  absl::StatusOr<std::unique_ptr<UsageStore>> usage =
      UsageStore::Open(*g.db, UsageClassesOf(**probe), {.clock = [] { return kStart; }});
  if (!usage.ok()) return usage.status();
  g.usage = *std::move(usage);
  absl::StatusOr<std::unique_ptr<quota::Engine>> engine = quota::Engine::Create(
      quota::DefaultPlanTable(), {.sink = g.usage.get(), .loader = g.usage.get()});
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
  EXPECT_EQ(classes[llm].sub_bucket, absl::Seconds(1));  // 10/min: one minute / 60
  EXPECT_EQ(classes[llm].longest_window, absl::Hours(24));
  const int imagine = (*engine)->FindClass(quota::kImagine)->index;
  EXPECT_EQ(classes[imagine].sub_bucket, absl::Minutes(24));  // 20/day only
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
