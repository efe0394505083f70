// What observing every decision costs (issue "Prometheus metrics": "engine decision latency,
// sampled if a histogram per decision costs too much — say what it costs"): one Admit() with
// its admission persisted to RocksDB (the server's real path) against the two clock reads and
// the histogram and counter updates that Gateway::Admit adds for metrics, in one binary.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "benchmark/benchmark.h"
#include "quota/engine.h"
#include "server/metrics/metrics.h"
#include "storage/database.h"
#include "storage/usage_store.h"

namespace anyai::bench {
namespace {

constexpr int64_t kT0 = 1'767'225'600'000'000;

quota::PlanTable Plans() {
  quota::PlanTable t;
  t.plans.push_back(quota::Plan{
      .name = "bench",
      .max_message_chars = 1,
      .classes = {{"llm", {{absl::Minutes(1), 8'000'000}, {absl::Hours(24), 8'000'000}}}}});
  return t;
}

void BM_AdmitPersisted(benchmark::State& state) {
  char pattern[] = "/tmp/anyai-metrics-bench-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  {
    auto db = *storage::Database::Open({.data_dir = dir + "/db"});
    auto probe = *quota::Engine::Create(Plans(), {});
    auto usage = *storage::UsageStore::Open(*db, storage::UsageClassesOf(*probe));
    auto engine = *quota::Engine::Create(Plans(), {.sink = usage.get(), .loader = usage.get()});
    const quota::PlanId plan = *engine->FindPlan("bench");
    const quota::ClassId cls = *engine->FindClass("llm");
    int64_t now = kT0;
    for (auto _ : state) {
      benchmark::DoNotOptimize(
          engine->Admit("key:0123456789abcdef", plan, cls, absl::FromUnixMicros(now += 25'000)));
    }
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AdmitPersisted);

void BM_ObserveDecision(benchmark::State& state) {
  auto engine = *quota::Engine::Create(Plans(), {});
  auto metrics = server::Metrics::Create(*engine, {});
  const quota::PlanId plan = *engine->FindPlan("bench");
  const quota::ClassId cls = *engine->FindClass("llm");
  quota::Decision decision;
  decision.admitted = true;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(start);
    metrics->ObserveDecision(plan, decision, cls,
                             absl::FromChrono(std::chrono::steady_clock::now() - start));
  }
}
BENCHMARK(BM_ObserveDecision);

}  // namespace
}  // namespace anyai::bench

BENCHMARK_MAIN();
