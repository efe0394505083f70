// Engine micro-benchmarks against the mutex + hash map baseline, in one binary (SPEC §11).
// Every benchmark reports `decisions_per_second` (all threads together); ns per decision per
// thread is threads / that. bench/run_engine_bench.sh runs this and writes the table in
// bench/RESULTS.md.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bench/mutex_baseline.h"
#include "benchmark/benchmark.h"
#include "quota/engine.h"

namespace anyai::bench {
namespace {

constexpr int64_t kT0 = 1'767'225'600'000'000;  // 2026-01-01, microseconds
constexpr int kManyTenants = 1'000'000;
// One class with the llm windows (1 min, 1 day). Plan "bench" has limits no benchmark reaches
// (time advances kStepUs per decision per thread: at most 2 x 3.5M a day), so every decision
// is an admission; plan "tight" is the seed's free llm row, for the refusal benchmarks.
const std::vector<int64_t> kWindowsUs = {60'000'000, 86'400'000'000};
const std::vector<int64_t> kLimits = {8'000'000, 8'000'000};
const std::vector<int64_t> kTightLimits = {10, 2000};
constexpr int64_t kStepUs = 25'000;

quota::PlanTable BenchPlans() {
  quota::PlanTable t;
  for (const auto& [name, limits] :
       {std::pair{"bench", kLimits}, std::pair{"tight", kTightLimits}}) {
    t.plans.push_back(quota::Plan{
        .name = name,
        .max_message_chars = 1,
        .classes = {{"llm", {{absl::Minutes(1), limits[0]}, {absl::Hours(24), limits[1]}}}}});
  }
  return t;
}

std::vector<std::string> TenantNames(int n) {
  std::vector<std::string> names;
  names.reserve(n);
  for (int i = 0; i < n; ++i)
    names.push_back(absl::StrCat("ip:10.", i >> 16, ".", (i >> 8) & 255, ".", i & 255));
  return names;
}

// What every benchmark shares: the two limiters and the tenant names, built once.
struct Fixture {
  std::unique_ptr<quota::Engine> engine;
  quota::PlanId plan;
  quota::PlanId tight;
  quota::ClassId cls;
  std::unique_ptr<MutexSlidingWindow> baseline;
  std::unique_ptr<MutexSlidingWindow> tight_baseline;
  std::vector<std::string> names;

  static Fixture& Get() {
    static Fixture* f = [] {
      auto* f = new Fixture;
      f->engine = *quota::Engine::Create(BenchPlans(), {});
      f->plan = *f->engine->FindPlan("bench");
      f->tight = *f->engine->FindPlan("tight");
      f->cls = *f->engine->FindClass("llm");
      f->baseline = std::make_unique<MutexSlidingWindow>(kWindowsUs, kLimits);
      f->tight_baseline = std::make_unique<MutexSlidingWindow>(kWindowsUs, kTightLimits);
      f->names = TenantNames(kManyTenants);
      // Make all 1M tenants resident in both, so the random-access runs measure lookups.
      for (const std::string& n : f->names) {
        (void)f->engine->Admit(n, f->plan, f->cls, absl::FromUnixMicros(kT0));
        f->baseline->Admit(n, kT0);
      }
      return f;
    }();
    return *f;
  }
};

// The latest time any run reached: each run starts there, so that time never goes back for a
// tenant across runs (the engine would treat an earlier time as the latest one seen, freezing
// the clock and filling the windows).
std::atomic<int64_t> g_latest_us{kT0 + 1'000'000};

// Time advances kStepUs per decision per thread (step 0: frozen), so sub-buckets roll over.
template <typename Decide>
void Run(benchmark::State& state, Decide decide, int64_t step_us = kStepUs) {
  int64_t now = g_latest_us.load() + state.thread_index() * 7;
  for (auto _ : state) {
    benchmark::DoNotOptimize(decide(now));
    now += step_us;
  }
  for (int64_t seen = g_latest_us.load();
       seen < now && !g_latest_us.compare_exchange_weak(seen, now);) {
  }
  state.counters["decisions_per_second"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// The engine benchmarks decide into one Decision per thread, reused (Engine::Admit's in-place
// overload), as a server's call site would; BM_Engine_HotTenantStatusOr is the StatusOr one.
bool EngineAdmit(Fixture& f, std::string_view tenant, quota::PlanId plan, int64_t now,
                 quota::Decision& d) {
  return f.engine->Admit(tenant, plan, f.cls, absl::FromUnixMicros(now), d).ok() && d.admitted;
}

void BM_Engine_HotTenant(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  quota::Decision d;
  Run(state, [&](int64_t now) { return EngineAdmit(f, "hot", f.plan, now, d); });
}
void BM_Engine_HotTenantStatusOr(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  Run(state, [&](int64_t now) {
    return f.engine->Admit("hot", f.plan, f.cls, absl::FromUnixMicros(now))->admitted;
  });
}
void BM_Mutex_HotTenant(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  Run(state, [&](int64_t now) { return f.baseline->Admit("hot", now); });
}

// A tenant over its limit (10 a minute) with a frozen clock: every decision is a refusal, which
// also computes when to retry. What a 429 flood costs.
void BM_Engine_RefusedTenant(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  quota::Decision d;
  Run(
      state, [&](int64_t now) { return EngineAdmit(f, "flood", f.tight, now, d); }, 0);
}
void BM_Mutex_RefusedTenant(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  Run(
      state, [&](int64_t now) { return f.tight_baseline->Admit("flood", now); }, 0);
}

// Each thread its own hot tenant: the scaling case (no shared cache lines but the table's).
void BM_Engine_DistinctTenants(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  const std::string tenant = absl::StrCat("hot-", state.thread_index());
  quota::Decision d;
  Run(state, [&](int64_t now) { return EngineAdmit(f, tenant, f.plan, now, d); });
}
void BM_Mutex_DistinctTenants(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  const std::string tenant = absl::StrCat("hot-", state.thread_index());
  Run(state, [&](int64_t now) { return f.baseline->Admit(tenant, now); });
}

void BM_Engine_1MTenantsRandom(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  std::mt19937 gen(state.thread_index() + 1);
  std::uniform_int_distribution<int> pick(0, kManyTenants - 1);
  quota::Decision d;
  Run(state, [&](int64_t now) { return EngineAdmit(f, f.names[pick(gen)], f.plan, now, d); });
}
void BM_Mutex_1MTenantsRandom(benchmark::State& state) {
  Fixture& f = Fixture::Get();
  std::mt19937 gen(state.thread_index() + 1);
  std::uniform_int_distribution<int> pick(0, kManyTenants - 1);
  Run(state, [&](int64_t now) { return f.baseline->Admit(f.names[pick(gen)], now); });
}

// Reserve + Settle (issue 11): a call whose cost is known only at its end. A separate engine
// whose plan gives `llm` the request windows above and token windows of the same lengths, with
// limits no benchmark reaches (time advances as above; each call holds kReserveTokens while in
// flight and keeps kUsedTokens), so every call is admitted and every settlement refunds
// kReserveTokens - kUsedTokens into the sub-bucket it was reserved in. A separate engine so that
// the Admit-only benchmarks above keep a class without a token meter. Each iteration is one
// Reserve and one Settle of the same call; `decisions_per_second` counts calls.
const std::vector<int64_t> kTokenLimits = {1'000'000'000'000, 1'000'000'000'000};
constexpr int64_t kReserveTokens = 1000;  // e.g. the prompt + max_tokens
constexpr int64_t kUsedTokens = 300;      // what the provider's usage reported

struct CostFixture {
  std::unique_ptr<quota::Engine> engine;
  quota::PlanId plan;
  quota::ClassId cls;
  std::unique_ptr<MutexCostWindow> baseline;

  static CostFixture& Get() {
    static CostFixture* f = [] {
      Fixture& base = Fixture::Get();  // the tenant names
      auto* f = new CostFixture;
      quota::PlanTable t;
      t.plans.push_back(quota::Plan{
          .name = "bench_tokens",
          .max_message_chars = 1,
          .classes = {{.feature_class = "llm",
                       .windows = {{absl::Minutes(1), kLimits[0]}, {absl::Hours(24), kLimits[1]}},
                       .token_windows = {{absl::Minutes(1), kTokenLimits[0]},
                                         {absl::Hours(24), kTokenLimits[1]}}}}});
      f->engine = *quota::Engine::Create(std::move(t), {});
      f->plan = *f->engine->FindPlan("bench_tokens");
      f->cls = *f->engine->FindClass("llm");
      f->baseline =
          std::make_unique<MutexCostWindow>(kWindowsUs, kLimits, kWindowsUs, kTokenLimits);
      // All 1M tenants resident in both, each with one settled call.
      for (const std::string& n : base.names) {
        auto r = f->engine->Reserve(n, f->plan, f->cls, {.requests = 1, .tokens = kReserveTokens},
                                    absl::FromUnixMicros(kT0));
        (void)f->engine->Settle(*r, {.requests = 1, .tokens = kUsedTokens},
                                absl::FromUnixMicros(kT0));
        MutexCostWindow::Reservation m = f->baseline->Reserve(n, kReserveTokens, kT0);
        f->baseline->Settle(m, kUsedTokens, kT0);
      }
      return f;
    }();
    return *f;
  }
};

// True when the call was admitted and its settlement gave back what it did not use (the
// benchmarks count the calls where that failed in `unexpected`, which should stay 0).
// `r` is the thread's one Reservation, reused (Engine::Reserve's in-place overload).
bool EngineReserveSettle(CostFixture& f, std::string_view tenant, int64_t now,
                         quota::Reservation& r) {
  if (!f.engine
           ->Reserve(tenant, f.plan, f.cls, {.requests = 1, .tokens = kReserveTokens},
                     absl::FromUnixMicros(now), r)
           .ok() ||
      !r.admitted()) {
    return false;
  }
  absl::StatusOr<quota::Settlement> s =
      f.engine->Settle(r, {.requests = 1, .tokens = kUsedTokens}, absl::FromUnixMicros(now));
  return s.ok() && s->refunded.tokens == kReserveTokens - kUsedTokens;
}
bool MutexReserveSettle(CostFixture& f, std::string_view tenant, int64_t now) {
  MutexCostWindow::Reservation r = f.baseline->Reserve(tenant, kReserveTokens, now);
  f.baseline->Settle(r, kUsedTokens, now);
  return r.admitted;
}

// Run() with `decide` returning whether the call went as expected; counts those that did not.
template <typename Decide>
void RunCounted(benchmark::State& state, Decide decide) {
  int64_t unexpected = 0;
  Run(state, [&](int64_t now) {
    const bool ok = decide(now);
    unexpected += !ok;
    return ok;
  });
  state.counters["unexpected"] = static_cast<double>(unexpected);
}

void BM_EngineReserveSettle_HotTenant(benchmark::State& state) {
  CostFixture& f = CostFixture::Get();
  quota::Reservation r;
  RunCounted(state, [&](int64_t now) { return EngineReserveSettle(f, "hot", now, r); });
}
void BM_MutexReserveSettle_HotTenant(benchmark::State& state) {
  CostFixture& f = CostFixture::Get();
  RunCounted(state, [&](int64_t now) { return MutexReserveSettle(f, "hot", now); });
}
void BM_EngineReserveSettle_1MTenantsRandom(benchmark::State& state) {
  CostFixture& f = CostFixture::Get();
  const std::vector<std::string>& names = Fixture::Get().names;
  std::mt19937 gen(state.thread_index() + 1);
  std::uniform_int_distribution<int> pick(0, kManyTenants - 1);
  quota::Reservation r;
  RunCounted(state, [&](int64_t now) { return EngineReserveSettle(f, names[pick(gen)], now, r); });
}
void BM_MutexReserveSettle_1MTenantsRandom(benchmark::State& state) {
  CostFixture& f = CostFixture::Get();
  const std::vector<std::string>& names = Fixture::Get().names;
  std::mt19937 gen(state.thread_index() + 1);
  std::uniform_int_distribution<int> pick(0, kManyTenants - 1);
  RunCounted(state, [&](int64_t now) { return MutexReserveSettle(f, names[pick(gen)], now); });
}

// No MinTime() here: a benchmark's own MinTime wins over --benchmark_min_time, which is how
// bench/run_engine_bench.sh sets the run length.
#define THREADS ->Threads(1)->Threads(2)->UseRealTime()
BENCHMARK(BM_Engine_HotTenant) THREADS;
BENCHMARK(BM_Engine_HotTenantStatusOr) THREADS;
BENCHMARK(BM_Mutex_HotTenant) THREADS;
BENCHMARK(BM_Engine_RefusedTenant) THREADS;
BENCHMARK(BM_Mutex_RefusedTenant) THREADS;
BENCHMARK(BM_Engine_DistinctTenants) THREADS;
BENCHMARK(BM_Mutex_DistinctTenants) THREADS;
BENCHMARK(BM_Engine_1MTenantsRandom) THREADS;
BENCHMARK(BM_Mutex_1MTenantsRandom) THREADS;
BENCHMARK(BM_EngineReserveSettle_HotTenant) THREADS;
BENCHMARK(BM_MutexReserveSettle_HotTenant) THREADS;
BENCHMARK(BM_EngineReserveSettle_1MTenantsRandom) THREADS;
BENCHMARK(BM_MutexReserveSettle_1MTenantsRandom) THREADS;

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// Bytes per resident tenant: RSS growth while 1M fresh tenants each make one `llm` request on
// the default free plan (one class used, its two windows), divided by 1M. Run in a fresh
// process (--benchmark_filter=Memory) so earlier benchmarks' heap does not blur the delta.
void BM_Engine_MemoryPerTenant(benchmark::State& state) {
  for (auto _ : state) {
    auto engine = *quota::Engine::Create(quota::DefaultPlanTable(), {});
    const quota::PlanId plan = *engine->FindPlan("free");
    const quota::ClassId llm = *engine->FindClass("llm");
    const std::vector<std::string> names = TenantNames(kManyTenants);
    const int64_t before = ResidentBytes();
    for (const std::string& n : names) {
      (void)engine->Admit(n, plan, llm, absl::FromUnixMicros(kT0 + 3'000'000));
    }
    const int64_t after = ResidentBytes();
    state.counters["bytes_per_tenant"] = static_cast<double>(after - before) / kManyTenants;
    state.counters["resident_tenants"] = static_cast<double>(engine->resident_tenants());
  }
}
// The same, with each tenant's requests in two sub-buckets, so that its history slots exist
// (61 per window): what a tenant costs once it is used over time rather than once.
void BM_Engine_MemoryPerTenantWithHistory(benchmark::State& state) {
  for (auto _ : state) {
    auto engine = *quota::Engine::Create(quota::DefaultPlanTable(), {});
    const quota::PlanId plan = *engine->FindPlan("free");
    const quota::ClassId llm = *engine->FindClass("llm");
    const std::vector<std::string> names = TenantNames(kManyTenants);
    const int64_t before = ResidentBytes();
    for (int64_t t : {kT0 + 3'000'000, kT0 + 5'000'000}) {
      for (const std::string& n : names) {
        (void)engine->Admit(n, plan, llm, absl::FromUnixMicros(t));
      }
    }
    const int64_t after = ResidentBytes();
    state.counters["bytes_per_tenant"] = static_cast<double>(after - before) / kManyTenants;
  }
}

void BM_Mutex_MemoryPerTenant(benchmark::State& state) {
  for (auto _ : state) {
    MutexSlidingWindow baseline(kWindowsUs, kLimits);
    const std::vector<std::string> names = TenantNames(kManyTenants);
    const int64_t before = ResidentBytes();
    for (const std::string& n : names) baseline.Admit(n, kT0 + 3'000'000);
    const int64_t after = ResidentBytes();
    state.counters["bytes_per_tenant"] = static_cast<double>(after - before) / kManyTenants;
  }
}
BENCHMARK(BM_Engine_MemoryPerTenant)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Engine_MemoryPerTenantWithHistory)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Mutex_MemoryPerTenant)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace anyai::bench

BENCHMARK_MAIN();
