// The engine through its public header: plans, decisions and their figures, usage snapshots,
// persistence hooks (sink and loader), eviction.
#include "quota/engine.h"

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/quota/memory_usage.h"
#include "tests/testing/status_matchers.h"

namespace anyai::quota {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'767'225'600);  // 2026-01-01T00:00:00Z

std::unique_ptr<Engine> MakeEngine(PlanTable plans = DefaultPlanTable(),
                                   EngineOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(std::move(plans), options);
  EXPECT_THAT(e, IsOk());
  return *std::move(e);
}

PlanTable ShortWindows() {
  PlanTable t;
  t.plans.push_back(Plan{.name = "free",
                         .max_message_chars = 10,
                         .classes = {{"llm", {{absl::Seconds(1), 3}, {absl::Seconds(5), 5}}}}});
  t.plans.push_back(Plan{.name = "premium",
                         .max_message_chars = 10,
                         .classes = {{"llm", {{absl::Seconds(1), 6}, {absl::Seconds(5), 20}}}}});
  return t;
}

TEST(EngineTest, RefusesAnInvalidPlanTable) {
  PlanTable t = ShortWindows();
  t.plans[0].classes[0].windows[0].limit = 0;
  EXPECT_THAT(Engine::Create(t, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("plan \"free\", class \"llm\"")));
}

TEST(EngineTest, FindsPlansAndClassesByName) {
  auto engine = MakeEngine();
  EXPECT_THAT(engine->FindPlan("premium"), IsOk());
  EXPECT_THAT(engine->FindClass("vision"), IsOk());
  EXPECT_THAT(engine->FindPlan("gold"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("gold")));
  EXPECT_THAT(engine->FindClass("video"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(engine->SubBucketWidth(*engine->FindClass("llm")), absl::Seconds(1));
}

// Every row of the seed's table, both plans: the limit of the tightest window is enforced.
TEST(EngineTest, EnforcesEveryDefaultRowAtItsTightestWindow) {
  auto engine = MakeEngine();
  const std::map<std::tuple<std::string, std::string>, int> first_window_limit = {
      {{"free", "llm"}, 10},
      {{"premium", "llm"}, 30},
      {{"free", "closed_llm"}, 25},
      {{"premium", "closed_llm"}, 50},
      {{"free", "image_generation"}, 120},
      {{"premium", "image_generation"}, 120},
      {{"free", "globalask"}, 120},
      {{"premium", "globalask"}, 120},
      {{"free", "imagine"}, 20},
      {{"premium", "imagine"}, 20},
      {{"free", "vision"}, 25},
      {{"premium", "vision"}, 25},
      {{"free", "meta"}, 600},
      {{"premium", "meta"}, 600},
  };
  for (const auto& [row, limit] : first_window_limit) {
    const auto& [plan_name, class_name] = row;
    SCOPED_TRACE(plan_name + "/" + class_name);
    const PlanId plan = *engine->FindPlan(plan_name);
    const ClassId cls = *engine->FindClass(class_name);
    const std::string tenant = "t-" + plan_name + "-" + class_name;
    for (int i = 0; i < limit; ++i) {
      absl::StatusOr<Decision> d = engine->Admit(tenant, plan, cls, kT0);
      ASSERT_THAT(d, IsOk());
      ASSERT_TRUE(d->admitted) << "request " << i + 1;
      EXPECT_EQ(d->remaining, limit - i - 1);
      EXPECT_EQ(d->limit, limit);
    }
    absl::StatusOr<Decision> refused = engine->Admit(tenant, plan, cls, kT0);
    ASSERT_THAT(refused, IsOk());
    EXPECT_FALSE(refused->admitted);
    EXPECT_EQ(engine->class_name(refused->refused_class), class_name);
    EXPECT_GT(refused->retry_after, absl::ZeroDuration());
  }
}

TEST(EngineTest, TheDayWindowBindsAcrossMinutes) {
  auto engine = MakeEngine();
  const PlanId free = *engine->FindPlan("free");
  const ClassId closed = *engine->FindClass("closed_llm");
  int admitted = 0;
  // 25/hour and 100/day: over a day, exactly 100 get through.
  for (int minute = 0; minute < 24 * 60; minute += 2) {
    for (int i = 0; i < 3; ++i) {
      admitted += engine->Admit("t", free, closed, kT0 + absl::Minutes(minute))->admitted;
    }
  }
  EXPECT_EQ(admitted, 100);
  absl::StatusOr<Decision> d = engine->Admit("t", free, closed, kT0 + absl::Hours(23));
  EXPECT_FALSE(d->admitted);
  EXPECT_EQ(d->refused_window, absl::Hours(24));
  EXPECT_EQ(d->limit, 100);
}

TEST(EngineTest, ReportsTheTightestWindowAndRetryAfter) {
  auto engine = MakeEngine(ShortWindows());
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  absl::StatusOr<Decision> d = engine->Admit("t", free, llm, kT0);
  EXPECT_EQ(d->limit, 3);  // 3/s leaves 2, 5 per 5 s leaves 4: the 1 s window is tightest
  EXPECT_EQ(d->remaining, 2);
  ASSERT_OK(engine->Admit("t", free, llm, kT0));
  ASSERT_OK(engine->Admit("t", free, llm, kT0));
  d = engine->Admit("t", free, llm, kT0);
  EXPECT_FALSE(d->admitted);
  EXPECT_EQ(d->refused_window, absl::Seconds(1));
  // Counted in the sub-bucket starting at kT0: frees one window and one sub-bucket later.
  EXPECT_EQ(d->retry_after, absl::Microseconds(1016667));  // 61/60 s, rounded up to a µs
  EXPECT_TRUE(engine->Admit("t", free, llm, kT0 + d->retry_after)->admitted);
}

TEST(EngineTest, TenantsArePrivateAndPlansChangeLimitsNotCounts) {
  auto engine = MakeEngine(ShortWindows());
  const PlanId free = *engine->FindPlan("free");
  const PlanId premium = *engine->FindPlan("premium");
  const ClassId llm = *engine->FindClass("llm");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(engine->Admit("a", free, llm, kT0)->admitted);
  EXPECT_FALSE(engine->Admit("a", free, llm, kT0)->admitted);
  EXPECT_TRUE(engine->Admit("b", free, llm, kT0)->admitted);
  // Upgraded, the same tenant keeps its 3 and may have 3 more this second.
  int more = 0;
  for (int i = 0; i < 10; ++i) more += engine->Admit("a", premium, llm, kT0)->admitted;
  EXPECT_EQ(more, 3);
}

TEST(EngineTest, UsageSnapshotReportsEveryClassAndWindowOfThePlan) {
  auto engine = MakeEngine();
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  for (int i = 0; i < 4; ++i) ASSERT_OK(engine->Admit("t", free, llm, kT0 + absl::Seconds(i)));
  absl::StatusOr<UsageSnapshot> u = engine->Usage("t", free, kT0 + absl::Seconds(10));
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->plan, "free");
  ASSERT_EQ(u->classes.size(), 7u);
  const ClassUsage& c = u->classes[0];
  EXPECT_EQ(c.feature_class, "llm");
  ASSERT_EQ(c.windows.size(), 2u);
  EXPECT_EQ(c.windows[0].window, absl::Minutes(1));
  EXPECT_EQ(c.windows[0].used, 4);
  EXPECT_EQ(c.windows[0].limit, 10);
  EXPECT_EQ(c.windows[0].remaining, 6);
  EXPECT_EQ(c.windows[0].reset, absl::Seconds(51));  // the one at kT0 frees at 61 s
  EXPECT_EQ(c.windows[1].window, absl::Hours(24));
  EXPECT_EQ(c.windows[1].used, 4);
  EXPECT_EQ(c.windows[1].remaining, 1996);
  EXPECT_EQ(u->classes[4].feature_class, "imagine");
  EXPECT_EQ(u->classes[4].windows[0].used, 0);
  EXPECT_EQ(u->classes[4].windows[0].reset, absl::ZeroDuration());
  // Reading usage counts nothing.
  EXPECT_EQ(engine->Usage("t", free, kT0 + absl::Seconds(10))->classes[0].windows[0].used, 4);
}

TEST(EngineTest, AStoppedEngineIsRestoredFromItsSink) {
  MemoryUsage store;
  const EngineOptions options{.sink = &store, .loader = &store};
  {
    auto first = MakeEngine(ShortWindows(), options);
    const PlanId free = *first->FindPlan("free");
    const ClassId llm = *first->FindClass("llm");
    int admitted = 0;
    for (int i = 0; i < 8; ++i) {
      admitted += first->Admit("t", free, llm, kT0 + absl::Milliseconds(300 * i))->admitted;
    }
    ASSERT_EQ(admitted, 5);  // the 5-per-5-s window is full
  }
  auto second = MakeEngine(ShortWindows(), options);
  const PlanId free = *second->FindPlan("free");
  const ClassId llm = *second->FindClass("llm");
  EXPECT_FALSE(second->Admit("t", free, llm, kT0 + absl::Seconds(3))->admitted);
  absl::StatusOr<UsageSnapshot> u = second->Usage("t", free, kT0 + absl::Seconds(3));
  EXPECT_EQ(u->classes[0].windows[1].used, 5);
}

TEST(EngineTest, EvictedTenantsAreRestoredOnNextUse) {
  MemoryUsage store;
  auto engine = MakeEngine(ShortWindows(),
                           {.sink = &store, .loader = &store, .idle_timeout = absl::Seconds(2)});
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  for (int i = 0; i < 5; ++i)
    ASSERT_OK(engine->Admit("t", free, llm, kT0 + absl::Milliseconds(400 * i)));
  EXPECT_EQ(engine->resident_tenants(), 1u);
  EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(2)), 0u);  // used 0.4 s ago
  EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(4)), 1u);
  EXPECT_EQ(engine->resident_tenants(), 0u);
  // Later maintenance frees the evicted copy once no thread can hold it any more.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(4)), 0u);
  const int loads = store.loads();
  EXPECT_FALSE(engine->Admit("t", free, llm, kT0 + absl::Seconds(4))->admitted);
  EXPECT_EQ(store.loads(), loads + 1);
  EXPECT_EQ(engine->resident_tenants(), 1u);
}

TEST(EngineTest, ATenantUsedRightAfterItsEvictionComesBackWithItsCounts) {
  MemoryUsage store;
  auto engine = MakeEngine(ShortWindows(),
                           {.sink = &store, .loader = &store, .idle_timeout = absl::Seconds(2)});
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(engine->Admit("t", free, llm, kT0 + absl::Milliseconds(400 * i))->admitted);
  }
  EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(4)), 1u);
  const int loads = store.loads();
  // Not freed yet (a thread could still be counting into it): it is brought back, not reloaded.
  EXPECT_FALSE(engine->Admit("t", free, llm, kT0 + absl::Seconds(4))->admitted);
  EXPECT_EQ(store.loads(), loads);
  EXPECT_EQ(engine->resident_tenants(), 1u);
}

TEST(EngineTest, WithoutALoaderTenantsStayUntilTheirCountsExpire) {
  auto engine = MakeEngine(ShortWindows(), {.idle_timeout = absl::Seconds(1)});
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  ASSERT_OK(engine->Admit("t", free, llm, kT0));
  EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(3)), 0u);  // still counted in the 5 s window
  EXPECT_EQ(engine->EvictIdle(kT0 + absl::Seconds(6)), 1u);
}

TEST(EngineTest, ASinkErrorIsReturned) {
  MemoryUsage store;
  auto engine = MakeEngine(ShortWindows(), {.sink = &store, .loader = &store});
  store.set_fail(true);
  EXPECT_THAT(engine->Admit("t", *engine->FindPlan("free"), *engine->FindClass("llm"), kT0),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk on fire")));
}

TEST(EngineTest, InvalidIdsAreErrors) {
  auto engine = MakeEngine();
  EXPECT_THAT(engine->Admit("t", PlanId{7}, ClassId{0}, kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(engine->Admit("t", PlanId{0}, ClassId{}, kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(EngineTest, ManyTenantsGrowTheTable) {
  auto engine = MakeEngine(DefaultPlanTable(), {.shards = 4});
  const PlanId free = *engine->FindPlan("free");
  const ClassId llm = *engine->FindClass("llm");
  for (int i = 0; i < 20000; ++i) {
    ASSERT_TRUE(engine->Admit(absl::StrCat("ip:", i), free, llm, kT0)->admitted);
  }
  EXPECT_EQ(engine->resident_tenants(), 20000u);
  for (int i = 0; i < 20000; i += 997) {
    EXPECT_EQ(engine->Usage(absl::StrCat("ip:", i), free, kT0)->classes[0].windows[0].used, 1);
  }
}

}  // namespace
}  // namespace anyai::quota
