// The engine under contention: many threads, one tenant, a frozen clock and a moving one.
// Run under ThreadSanitizer in CI. Invariant checked: never more than L admissions in any
// window, all-or-nothing across windows, exactly L admitted when the clock is frozen.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quota/engine.h"
#include "quota/sliding_window.h"
#include "tests/quota/memory_usage.h"
#include "tests/testing/status_matchers.h"

namespace anyai::quota {
namespace {

constexpr int kThreads = 8;
const absl::Time kT0 = absl::FromUnixSeconds(1'767'225'600);

PlanTable Plans(std::vector<Window> windows) {
  PlanTable t;
  t.plans.push_back(Plan{.name = "p", .max_message_chars = 1, .classes = {{"c", windows}}});
  return t;
}

// Runs `attempts` Admit calls on each of kThreads threads, all at `now`; returns admissions.
int Hammer(Engine& engine, const std::string& tenant, int attempts, absl::Time now) {
  const PlanId plan = *engine.FindPlan("p");
  const ClassId cls = *engine.FindClass("c");
  std::atomic<int> admitted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int i = 0; i < attempts; ++i) {
        absl::StatusOr<Decision> d = engine.Admit(tenant, plan, cls, now);
        if (d.ok() && d->admitted) admitted.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  return admitted.load();
}

TEST(ConcurrencyTest, ThreadsHammeringOneTenantWithAFrozenClockAdmitExactlyTheLimit) {
  for (int limit : {1, 10, 1000}) {
    auto engine = *Engine::Create(Plans({{absl::Minutes(1), limit}}), {});
    EXPECT_EQ(Hammer(*engine, "hot", 2 * limit / kThreads + 50, kT0), limit) << limit;
  }
}

TEST(ConcurrencyTest, AllOrNothingHoldsUnderContention) {
  // The longer window is the tighter one: requests the minute window would take must not be
  // half-counted when the hour window refuses them.
  auto engine = *Engine::Create(Plans({{absl::Minutes(1), 100}, {absl::Hours(1), 37}}), {});
  EXPECT_EQ(Hammer(*engine, "hot", 200, kT0), 37);
  const UsageSnapshot u = *engine->Usage("hot", *engine->FindPlan("p"), kT0);
  EXPECT_EQ(u.classes[0].windows[0].used, 37);
  EXPECT_EQ(u.classes[0].windows[1].used, 37);
}

TEST(ConcurrencyTest, FirstUseOfOneTenantFromManyThreadsCreatesItOnce) {
  auto engine = *Engine::Create(Plans({{absl::Minutes(1), 5}}), {});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Hammer(*engine, absl::StrCat("new-", i), 3, kT0), 5);
  }
  EXPECT_EQ(engine->resident_tenants(), 20u);
}

// A moving clock shared by all threads, rolling sub-buckets over while they race: every
// admission's stamp is recorded, and afterwards no 61-bucket span of any window holds more
// than its limit (the bucket form of "no interval of length W holds more than L").
TEST(ConcurrencyTest, NoWindowIsEverOverfilledWhileTheClockMoves) {
  ClassGeometry g;
  g.window_us = {1'000'000, 3'000'000};
  g.base_us = 1'000'000;
  g.ratio = {1, 3};
  const std::vector<int64_t> limits = {7, 12};
  SlidingWindows windows(g);
  std::atomic<int64_t> clock{absl::ToUnixMicros(kT0)};
  std::mutex mu;
  std::map<int64_t, int64_t> admitted_per_stamp;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::map<int64_t, int64_t> mine;
      for (int i = 0; i < 4000; ++i) {
        // Thread 0 moves time forward by a fraction of a sub-bucket now and then.
        if (t == 0 && i % 5 == 0) clock.fetch_add(3'000, std::memory_order_relaxed);
        const WindowOutcome o = windows.TryAdmit(clock.load(std::memory_order_relaxed), limits);
        if (o.admitted) ++mine[o.stamp];
      }
      std::lock_guard<std::mutex> lock(mu);
      for (auto [s, n] : mine) admitted_per_stamp[s] += n;
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_FALSE(admitted_per_stamp.empty());
  int64_t total = 0;
  for (auto [s, n] : admitted_per_stamp) total += n;
  for (int w = 0; w < g.windows(); ++w) {
    std::map<int64_t, int64_t> per_bucket;
    for (auto [s, n] : admitted_per_stamp) per_bucket[s / g.ratio[w]] += n;
    for (auto [b, n] : per_bucket) {
      int64_t in_span = 0;
      for (auto it = per_bucket.lower_bound(b - 60); it != per_bucket.end() && it->first <= b;
           ++it) {
        in_span += it->second;
      }
      ASSERT_LE(in_span, limits[w]) << "window " << w << " bucket " << b;
    }
  }
  // And the windows were really used: at least the limit of the long window was reached.
  EXPECT_GE(total, limits[1]);
  // The final counts equal what was recorded as admitted.
  const int64_t now = clock.load();
  const WindowOutcome o = windows.Read(now, limits);
  int64_t expected = 0;
  for (auto [s, n] : admitted_per_stamp) {
    if (s / g.ratio[1] >= g.StampAt(now) / g.ratio[1] - 60) expected += n;
  }
  EXPECT_EQ(o.windows[1].used, expected);
}

// Eviction while admissions are in flight must not let a copy restored from the store miss an
// admission and admit over the limit: the day window never slides here, so at most L in all.
TEST(ConcurrencyTest, EvictionsDuringAdmissionsNeverAdmitOverTheLimit) {
  constexpr int kLimit = 5;
  MemoryUsage store;
  store.set_write_delay(std::chrono::microseconds(200));
  auto engine = *Engine::Create(
      Plans({{absl::Hours(24), kLimit}}),
      {.sink = &store, .loader = &store, .idle_timeout = absl::Microseconds(1), .shards = 1});
  const PlanId plan = *engine->FindPlan("p");
  const ClassId cls = *engine->FindClass("c");
  std::atomic<int64_t> clock{absl::ToUnixMicros(kT0)};
  std::atomic<bool> stop{false};
  std::atomic<int> admitted{0};
  std::thread evictor([&] {
    // 20000 evictions (40000 s of clock: the day window never slides) while the threads ask.
    while (admitted.load() == 0) std::this_thread::yield();
    for (int i = 0, after = 0; i < 20000 && after < 2000; ++i) {
      clock.fetch_add(2'000'000);  // 2 s: past the idle timeout and the 1 s touch granularity
      engine->EvictIdle(absl::FromUnixMicros(clock.load()));
      if (admitted.load() >= kLimit) ++after;
    }
    stop = true;
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        absl::StatusOr<Decision> d =
            engine->Admit("t", plan, cls, absl::FromUnixMicros(clock.load()));
        if (d.ok() && d->admitted) admitted.fetch_add(1);
      }
    });
  }
  evictor.join();
  for (auto& th : threads) th.join();
  EXPECT_LE(admitted.load(), kLimit);  // never over the limit
  EXPECT_GT(admitted.load(), 0);
}

TEST(ConcurrencyTest, EvictionRacingWithAdmissionsIsSafe) {
  auto engine = *Engine::Create(Plans({{absl::Seconds(1), 1000000}}),
                                {.idle_timeout = absl::Seconds(1), .shards = 2});
  const PlanId plan = *engine->FindPlan("p");
  const ClassId cls = *engine->FindClass("c");
  std::atomic<bool> stop{false};
  std::atomic<int64_t> clock{absl::ToUnixMicros(kT0)};
  std::thread evictor([&] {
    while (!stop.load()) {
      clock.fetch_add(200'000);
      engine->EvictIdle(absl::FromUnixMicros(clock.load()));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        const std::string tenant = absl::StrCat("t", (i * 7 + t) % 300);
        ASSERT_OK(engine->Admit(tenant, plan, cls, absl::FromUnixMicros(clock.load())));
      }
    });
  }
  for (auto& th : threads) th.join();
  stop = true;
  evictor.join();
  SUCCEED();
}

}  // namespace
}  // namespace anyai::quota
