#!/usr/bin/env bash
# Engine micro-benchmarks (issue "Foundation and the quota engine", SPEC §11): the lock-free
# engine against the mutex + hash map baseline, in one binary and one run, reported as ratios.
# Memory benchmarks run each in a fresh process so that freed heap does not blur RSS deltas.
# Usage: bench/run_engine_bench.sh [min_time_seconds=2] [repetitions=3] [reserve]
#   -> Markdown on stdout
# (each speed benchmark runs at least min_time per repetition; the table shows the median of the
# repetitions, or with 1 repetition its one run). BUILD_DIR (default build) is the build tree;
# QUOTA_BENCH, when set, is a quota_bench binary to run instead (nothing is built), e.g. one
# built from an older commit, to compare two engines run by run on a loaded machine.
# With `reserve` (issue 11) it runs instead the Reserve + Settle benchmarks next to Admit alone,
# engine and mutex baseline, one hot tenant and 1M tenants, and prints their table.
set -euo pipefail
cd "$(dirname "$0")/.."
min_time=${1:-2}
reps=${2:-3}
part=${3:-admit}
build=${BUILD_DIR:-build}
if [[ -n "${QUOTA_BENCH:-}" ]]; then
  bench=$QUOTA_BENCH
else
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target quota_bench >/dev/null
  bench="$build"/bin/quota_bench
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [[ "$part" == reserve ]]; then
  "$bench" \
    --benchmark_filter='^BM_(Engine|Mutex)(ReserveSettle)?_(HotTenant|1MTenantsRandom)/' \
    --benchmark_min_time="$min_time" --benchmark_repetitions="$reps" \
    --benchmark_report_aggregates_only=true --benchmark_format=json >"$out/speed.json" 2>/dev/null
  /usr/bin/python3 - "$out" "$reps" <<'PY'
import json, sys, os
out, reps = sys.argv[1], int(sys.argv[2])
speed = json.load(open(os.path.join(out, "speed.json")))
rate, unexpected = {}, 0
for b in speed["benchmarks"]:
    # Over every repetition: a mean above 0 means some repetition saw one.
    if b.get("aggregate_name") == "mean" or (reps <= 1 and b.get("run_type") == "iteration"):
        unexpected += b.get("unexpected", 0)
    if reps > 1 and b.get("aggregate_name") != "median":
        continue
    if reps <= 1 and b.get("run_type") != "iteration":
        continue
    parts = b["run_name"].split("/")  # e.g. BM_EngineReserveSettle_HotTenant/real_time/threads:2
    impl, case = parts[0].split("_", 2)[1:]
    rate[(impl, case, int(parts[-1].split(":")[1]))] = b["decisions_per_second"]
ctx = speed["context"]
runs = f"medians of {reps} repetitions" if reps > 1 else "one repetition"
print(f"Machine: {ctx['num_cpus']} CPUs @ {ctx['mhz_per_cpu']} MHz; {runs}; calls per second over "
      f"all threads (a Reserve + Settle pair is one call); calls not admitted or not refunded as "
      f"expected: {unexpected:g}.\n")
print("| case | threads | engine Admit calls/s | engine Reserve+Settle calls/s | engine R+S ns/call per thread "
      "| mutex Admit calls/s | mutex Reserve+Settle calls/s | engine R+S / engine Admit "
      "| mutex R+S / mutex Admit | engine R+S / mutex R+S |")
print("|---|---|---|---|---|---|---|---|---|---|")
for case, label in [("HotTenant", "one hot tenant"), ("1MTenantsRandom", "1M tenants, random access")]:
    for t in (1, 2):
        ea, er = rate.get(("Engine", case, t)), rate.get(("EngineReserveSettle", case, t))
        ma, mr = rate.get(("Mutex", case, t)), rate.get(("MutexReserveSettle", case, t))
        if None in (ea, er, ma, mr):
            continue
        print(f"| {label} | {t} | {ea/1e6:.2f} M | {er/1e6:.2f} M | {t*1e9/er:.0f} | {ma/1e6:.2f} M "
              f"| {mr/1e6:.2f} M | {er/ea:.2f}x | {mr/ma:.2f}x | {er/mr:.2f}x |")
PY
  exit 0
fi
"$bench" \
  --benchmark_filter='^BM_(Engine|Mutex)_(HotTenant|RefusedTenant|DistinctTenants|1MTenantsRandom)/' \
  --benchmark_min_time="$min_time" --benchmark_repetitions="$reps" \
  --benchmark_report_aggregates_only=true --benchmark_format=json >"$out/speed.json" 2>/dev/null
for b in BM_Engine_MemoryPerTenant BM_Engine_MemoryPerTenantWithHistory BM_Mutex_MemoryPerTenant; do
  "$bench" --benchmark_filter="^$b/" --benchmark_format=json >"$out/$b.json"
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import json, sys, glob, os
out, reps = sys.argv[1], int(sys.argv[2])
speed = json.load(open(os.path.join(out, "speed.json")))
rate = {}
for b in speed["benchmarks"]:
    # Google Benchmark computes aggregates only over 2+ repetitions; one run stands for itself.
    if reps > 1 and b.get("aggregate_name") != "median":
        continue
    if reps <= 1 and b.get("run_type") != "iteration":
        continue
    name = b["run_name"]  # e.g. BM_Engine_HotTenant/real_time/threads:2
    parts = name.split("/")
    impl, case = parts[0].split("_", 2)[1:]
    threads = int(parts[-1].split(":")[1])
    rate[(impl, case, threads)] = b["decisions_per_second"]
ctx = speed["context"]
runs = f"medians of {reps} repetitions" if reps > 1 else "one repetition"
print(f"Machine: {ctx['num_cpus']} CPUs @ {ctx['mhz_per_cpu']} MHz; {runs}; "
      f"decisions per second over all threads.\n")
print("| case | threads | engine decisions/s | engine ns/decision per thread | mutex baseline decisions/s | engine / baseline |")
print("|---|---|---|---|---|---|")
for case, label in [("HotTenant", "one hot tenant, admitted"),
                    ("RefusedTenant", "one tenant over its limit, refused"),
                    ("DistinctTenants", "one tenant per thread"),
                    ("1MTenantsRandom", "1M tenants, random access")]:
    for t in (1, 2):
        e, m = rate.get(("Engine", case, t)), rate.get(("Mutex", case, t))
        if e is None or m is None:
            continue
        print(f"| {label} | {t} | {e/1e6:.2f} M | {t*1e9/e:.0f} | {m/1e6:.2f} M | {e/m:.2f}x |")
print()
for case, label in [("DistinctTenants", "one tenant per thread"), ("1MTenantsRandom", "1M tenants, random")]:
    e1, e2 = rate.get(("Engine", case, 1)), rate.get(("Engine", case, 2))
    m1, m2 = rate.get(("Mutex", case, 1)), rate.get(("Mutex", case, 2))
    if e1 and e2 and m1 and m2:
        print(f"- scaling, {label}: engine 2 threads / 1 thread = {e2/e1:.2f}x; baseline {m2/m1:.2f}x")
print()
print("| memory at 1M resident tenants, one class (`llm`, 2 windows) | bytes per tenant |")
print("|---|---|")
for b, label in [("BM_Engine_MemoryPerTenant", "engine, one request each (no history slots yet)"),
                 ("BM_Engine_MemoryPerTenantWithHistory", "engine, requests in two sub-buckets (history slots allocated)"),
                 ("BM_Mutex_MemoryPerTenant", "mutex baseline")]:
    j = json.load(open(os.path.join(out, b + ".json")))
    print(f"| {label} | {j['benchmarks'][0]['bytes_per_tenant']:.0f} |")
PY
