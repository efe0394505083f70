// The cap on resident tenants (EngineOptions::max_resident_tenants, engine.h): a flood of new
// tenants keeps memory at the cap, the least recently used leave first, an evicted tenant comes
// back from storage with its exact counts, pinned tenants (open reservations) never leave,
// without a loader the cap refuses rather than forgets, and many threads flooding and
// reserving at once keep both the cap and every limit (run under ThreadSanitizer by the TSan
// configuration).
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "tests/quota/memory_usage.h"
#include "tests/testing/status_matchers.h"

namespace anyai::quota {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'767'225'600);  // 2026-01-01T00:00:00Z

// New tenants in the flood tests: fewer under ThreadSanitizer, which runs them ~50x slower
// (still 20 times the cap).
#if defined(__SANITIZE_THREAD__)
constexpr int kFlood = 20'000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kFlood = 20'000;
#else
constexpr int kFlood = 100'000;
#endif
#else
constexpr int kFlood = 100'000;
#endif

// One plan "p", one class "c": `requests` per day (the window never slides in these tests, so
// every count must survive every eviction), and 1000 tokens per day.
PlanTable DayPlan(int64_t requests) {
  PlanTable t;
  t.plans.push_back(Plan{.name = "p",
                         .max_message_chars = 10,
                         .classes = {{.feature_class = "c",
                                      .windows = {{absl::Hours(24), requests}},
                                      .token_windows = {{absl::Hours(24), 1000}}}}});
  return t;
}

// MemoryUsage that also counts the loads of each tenant: a tenant loaded twice was evicted in
// between.
class CountingStore : public UsageSink, public UsageLoader {
 public:
  absl::Status Record(absl::Span<const Admission> changes) override {
    return store_.Record(changes);
  }
  absl::StatusOr<std::vector<BucketCount>> Load(std::string_view tenant) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++loads_[std::string(tenant)];
    }
    return store_.Load(tenant);
  }
  int loads(const std::string& tenant) {
    std::lock_guard<std::mutex> lock(mu_);
    return loads_[tenant];
  }
  int64_t Total(std::string_view tenant, ClassId c, Meter meter) {
    return store_.Total(tenant, c, meter);
  }

 private:
  MemoryUsage store_;
  std::mutex mu_;
  std::map<std::string, int> loads_;
};

std::unique_ptr<Engine> MakeEngine(PlanTable plans, EngineOptions options) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(std::move(plans), options);
  EXPECT_THAT(e, IsOk());
  return *std::move(e);
}

TEST(ResidentCapTest, ANegativeCapIsRefused) {
  EXPECT_THAT(Engine::Create(DayPlan(5), {.max_resident_tenants = -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(ResidentCapTest, AFloodOfNewTenantsStaysAtTheCap) {
  CountingStore store;
  auto engine = MakeEngine(DayPlan(5), {.sink = &store,
                                        .loader = &store,
                                        .idle_timeout = absl::Hours(1),
                                        .max_resident_tenants = 1000});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  size_t most = 0;
  for (int i = 0; i < kFlood; ++i) {
    absl::StatusOr<Decision> d =
        engine->Admit(absl::StrCat("ip:", i), p, c, kT0 + absl::Milliseconds(i));
    ASSERT_OK(d);
    ASSERT_TRUE(d->admitted) << i;  // the cap refuses nobody
    most = std::max(most, engine->resident_tenants());
  }
  EXPECT_LE(most, 1000u);  // one thread: no slack
  EXPECT_EQ(engine->resident_tenants(), 1000u);
  // And every one was counted in storage: a tenant evicted long ago is loaded with its count.
  EXPECT_EQ(engine->Usage("ip:0", p, kT0 + absl::Seconds(200))->classes[0].windows[0].used, 1);
  EXPECT_EQ(store.loads("ip:0"), 2);
}

TEST(ResidentCapTest, TheLeastRecentlyUsedLeaveFirst) {
  CountingStore store;
  // One shard, so that an evicted copy is freed soon after (a copy not yet freed would be
  // brought back on the tenant's next use, and no load would show that it had been evicted).
  auto engine = MakeEngine(DayPlan(1'000'000), {.sink = &store,
                                                .loader = &store,
                                                .idle_timeout = absl::Hours(1),
                                                .max_resident_tenants = 1000,
                                                .shards = 1});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  // A new tenant every 100 ms, and one tenant used every 10 s: the hot one is always among the
  // most recent tenth (the resident ones span 100 s), so it is never the oldest of the
  // candidates. Evicting without regard to use would evict it about once a lap of the hand.
  constexpr int kNew = kFlood;
  for (int i = 0; i < kNew; ++i) {
    const absl::Time now = kT0 + absl::Milliseconds(100) * i;
    ASSERT_TRUE(engine->Admit(absl::StrCat("ip:", i), p, c, now)->admitted);
    if (i % 100 == 0) {
      ASSERT_TRUE(engine->Admit("hot", p, c, now)->admitted);
    }
  }
  EXPECT_EQ(store.loads("hot"), 1);
  // The newest tenants are still resident: using them loads nothing.
  const absl::Time end = kT0 + absl::Milliseconds(100) * kNew;
  for (int i = kNew - 100; i < kNew; ++i) {
    ASSERT_OK(engine->Usage(absl::StrCat("ip:", i), p, end));
    EXPECT_EQ(store.loads(absl::StrCat("ip:", i)), 1) << i;
  }
  // The oldest are not.
  EXPECT_LE(engine->resident_tenants(), 1000u);
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK(engine->Usage(absl::StrCat("ip:", i), p, end));
    EXPECT_EQ(store.loads(absl::StrCat("ip:", i)), 2) << i;
  }
}

TEST(ResidentCapTest, AnEvictedTenantComesBackWithItsExactCounts) {
  CountingStore store;
  auto engine = MakeEngine(DayPlan(5), {.sink = &store,
                                        .loader = &store,
                                        .idle_timeout = absl::Hours(1),
                                        .max_resident_tenants = 100});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  ASSERT_TRUE(engine->Admit("keep", p, c, kT0)->admitted);
  ASSERT_TRUE(engine->Admit("keep", p, c, kT0)->admitted);
  absl::StatusOr<Reservation> r =
      engine->Reserve("keep", p, c, {.requests = 1, .tokens = 600}, kT0);
  ASSERT_OK(r);
  ASSERT_TRUE(r->admitted());
  ASSERT_OK(engine->Settle(*r, {.requests = 1, .tokens = 250}, kT0));  // 350 tokens back
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(engine->Admit(absl::StrCat("ip:", i), p, c, kT0 + absl::Milliseconds(i))->admitted);
  }
  const absl::Time later = kT0 + absl::Seconds(10);
  UsageSnapshot u = *engine->Usage("keep", p, later);
  EXPECT_EQ(store.loads("keep"), 2);  // evicted, then loaded again
  EXPECT_EQ(u.classes[0].windows[0].used, 3);
  EXPECT_EQ(u.classes[0].token_windows[0].used, 250);
  // 5 requests a day: two more, then refused; 1000 tokens a day: 750 more, not 751.
  EXPECT_FALSE(engine->Reserve("keep", p, c, {.requests = 1, .tokens = 751}, later)->admitted());
  absl::StatusOr<Reservation> last =
      engine->Reserve("keep", p, c, {.requests = 1, .tokens = 750}, later);
  ASSERT_TRUE(last->admitted());
  ASSERT_OK(engine->Settle(*last, {.requests = 1, .tokens = 750}, later));
  EXPECT_TRUE(engine->Admit("keep", p, c, later)->admitted);
  EXPECT_FALSE(engine->Admit("keep", p, c, later)->admitted);
  EXPECT_EQ(store.Total("keep", c, Meter::kRequests), 5);
  EXPECT_EQ(store.Total("keep", c, Meter::kTokens), 1000);
}

TEST(ResidentCapTest, PinnedTenantsAreNeverEvictedAndNewOnesAreStillServed) {
  CountingStore store;
  constexpr int kCap = 10;
  auto engine = MakeEngine(DayPlan(5), {.sink = &store,
                                        .loader = &store,
                                        .idle_timeout = absl::Hours(1),
                                        .max_resident_tenants = kCap});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  std::vector<Reservation> open;
  for (int i = 0; i < kCap; ++i) {
    absl::StatusOr<Reservation> r =
        engine->Reserve(absl::StrCat("pinned:", i), p, c, {.requests = 1, .tokens = 100}, kT0);
    ASSERT_OK(r);
    ASSERT_TRUE(r->admitted());
    open.push_back(*std::move(r));
  }
  // Every resident tenant is pinned: a new one is served all the same, over the cap by itself
  // only (the next new one evicts it).
  for (int i = 0; i < 1000; ++i) {
    const absl::Time now = kT0 + absl::Milliseconds(i);
    ASSERT_TRUE(engine->Admit(absl::StrCat("ip:", i), p, c, now)->admitted) << i;
    EXPECT_LE(engine->resident_tenants(), size_t{kCap} + 1);
  }
  for (int i = 0; i < kCap; ++i) {
    const std::string id = absl::StrCat("pinned:", i);
    ASSERT_OK(engine->Usage(id, p, kT0 + absl::Seconds(1)));
    EXPECT_EQ(store.loads(id), 1) << id;  // still resident: never evicted
    ASSERT_OK(engine->Settle(open[i], {.requests = 1, .tokens = 40}, kT0 + absl::Seconds(1)));
    EXPECT_EQ(store.Total(id, c, Meter::kTokens), 40);
  }
  // Unpinned, they may go: the cap holds again.
  for (int i = 1000; i < 1100; ++i) {
    ASSERT_TRUE(engine->Admit(absl::StrCat("ip:", i), p, c, kT0 + absl::Seconds(2))->admitted);
  }
  EXPECT_LE(engine->resident_tenants(), size_t{kCap});
}

TEST(ResidentCapTest, WithoutALoaderTheCapRefusesANewTenantRatherThanForgetCounts) {
  PlanTable plans;
  plans.plans.push_back(Plan{.name = "p",
                             .max_message_chars = 10,
                             .classes = {{"c", {{absl::Seconds(1), 3}, {absl::Seconds(5), 5}}}}});
  auto engine = MakeEngine(plans, {.max_resident_tenants = 3});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  for (const char* t : {"a", "b", "c"}) ASSERT_TRUE(engine->Admit(t, p, c, kT0)->admitted);
  // a, b and c are counted in the 5 s window: none can be forgotten, so d cannot come in.
  EXPECT_THAT(engine->Admit("d", p, c, kT0 + absl::Seconds(1)),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_EQ(engine->resident_tenants(), 3u);
  // A resident tenant is served as ever, its count intact.
  EXPECT_TRUE(engine->Admit("a", p, c, kT0 + absl::Seconds(1))->admitted);
  EXPECT_EQ(engine->Usage("a", p, kT0 + absl::Seconds(1))->classes[0].windows[1].used, 2);
  // Once their windows are empty they may go, and d comes in.
  EXPECT_TRUE(engine->Admit("d", p, c, kT0 + absl::Seconds(7))->admitted);
  EXPECT_LE(engine->resident_tenants(), 3u);
}

// Many threads: a flood of tenants from a pool far larger than the cap, admissions and
// reservations held across other calls, settled in full or refunded. The cap holds within its
// slack at every step, no tenant is ever admitted past its limit although it leaves and comes
// back many times, and storage ends with exactly what the threads saw charged.
TEST(ResidentCapTest, ManyThreadsKeepTheCapAndEveryLimit) {
  constexpr int kThreads = 8;
  constexpr int kTenants = 4000;
  constexpr int kCap = 200;
  constexpr int kLimit = 4;
  constexpr int kOps = 4000;
  CountingStore store;
  auto engine = MakeEngine(DayPlan(kLimit), {.sink = &store,
                                             .loader = &store,
                                             .idle_timeout = absl::Hours(1),
                                             .max_resident_tenants = kCap});
  const PlanId p = *engine->FindPlan("p");
  const ClassId c = *engine->FindClass("c");
  std::vector<std::atomic<int>> charged(kTenants);
  std::atomic<int64_t> clock{0};
  std::atomic<size_t> most{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937_64 rng(0x5eed + th);
      std::optional<Reservation> held;
      int held_tenant = -1;
      for (int i = 0; i < kOps; ++i) {
        const int t = static_cast<int>(rng() % kTenants);
        const std::string id = absl::StrCat("ip:", t);
        const absl::Time now = kT0 + absl::Microseconds(clock.fetch_add(10));
        if (held.has_value() && rng() % 4 == 0) {
          const bool refund = rng() % 2 == 0;
          if (!engine->Settle(*held, {.requests = refund ? 0 : 1}, now).ok()) ++errors;
          if (refund) charged[held_tenant].fetch_sub(1);
          held.reset();
        }
        if (!held.has_value() && rng() % 3 == 0) {
          absl::StatusOr<Reservation> r = engine->Reserve(id, p, c, {.requests = 1}, now);
          if (!r.ok()) {
            ++errors;
          } else if (r->admitted()) {
            charged[t].fetch_add(1);
            held = *std::move(r);
            held_tenant = t;
          }
        } else {
          absl::StatusOr<Decision> d = engine->Admit(id, p, c, now);
          if (!d.ok()) {
            ++errors;
          } else if (d->admitted) {
            charged[t].fetch_add(1);
          }
        }
        const size_t resident = engine->resident_tenants();
        size_t seen = most.load();
        while (resident > seen && !most.compare_exchange_weak(seen, resident)) {
        }
      }
      if (held.has_value()) {
        if (!engine->Settle(*held, {.requests = 1}, kT0 + absl::Seconds(1)).ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  // Slack: one per thread bringing a tenant in at once, and one pinned per thread.
  EXPECT_LE(most.load(), size_t{kCap + 2 * kThreads});
  int total = 0;
  for (int t = 0; t < kTenants; ++t) {
    const std::string id = absl::StrCat("ip:", t);
    EXPECT_LE(charged[t].load(), kLimit) << id;
    EXPECT_EQ(store.Total(id, c, Meter::kRequests), charged[t].load()) << id;
    total += charged[t].load();
  }
  EXPECT_GT(total, kTenants);  // most tenants were used, many to their limit
  // What the engine reports after the run, reloaded where evicted, is what storage holds.
  for (int t = 0; t < kTenants; t += 37) {
    const std::string id = absl::StrCat("ip:", t);
    EXPECT_EQ(engine->Usage(id, p, kT0 + absl::Seconds(2))->classes[0].windows[0].used,
              charged[t].load())
        << id;
  }
}

}  // namespace
}  // namespace anyai::quota
