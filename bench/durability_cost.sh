#!/usr/bin/env bash
# What persistence costs: admitted gRPC CreateChatCompletion calls (a premium key on
# bench/bench-config.textproto's raised limits, bench/grpc_load at 64 in flight) with usage in
# memory only (DURABILITY_MEMORY), the default (DURABILITY_PROCESS_CRASH) and DURABILITY_FSYNC,
# one after the other for each build, REPS times; calls/s, the server's CPU per call and how many
# calls one usage write carried (group commit), then the medians and the two ratios of the
# issue's targets (default / memory, fsync / default).
# Usage: [MODES="..."] bench/durability_cost.sh [seconds=5] [reps=3] BUILD_DIR...
#   bench/durability_cost.sh 5 3 build
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} reps=${2:-3}
shift 2
builds=("${@:-build}")
source bench/bench_lib.sh
read -r -a modes <<<"${MODES:-DURABILITY_MEMORY DURABILITY_PROCESS_CRASH DURABILITY_FSYNC}"
lines="$work/lines"
for rep in $(seq "$reps"); do
  for build in "${builds[@]}"; do
    for mode in "${modes[@]}"; do
      DURABILITY=$mode start_grpc_anyai "$build" admitted
      line=$(measure_cpu_per_call "$build/bin/grpc_load" "$secs" "$port" --request=anyai_chat \
               "${call_metadata[@]}")
      # Group commit: how many calls one usage write carried (RocksDB writes and their calls).
      line+=$(curl -s -m 5 "http://127.0.0.1:$http_port/metrics" | awk '
        /^anyai_storage_writes_total\{store="usage"\}/ {w=$2}
        /^anyai_storage_write_calls_total\{store="usage"\}/ {c=$2}
        END {if (w > 0) printf " calls_per_write=%.1f", c / w; else printf " calls_per_write=-"}')
      stop
      echo "rep $rep $build $mode: $line" | tee -a "$lines"
    done
  done
done
echo
echo "| build | mode | calls/s (median) | CPU µs per call (median) | calls per usage write (median) |"
echo "|---|---|---|---|---|"
for build in "${builds[@]}"; do
  for mode in "${modes[@]}"; do
    grep " $build $mode: " "$lines" | awk -v b="$build" -v m="$mode" '
      {for (i=1;i<=NF;i++) {split($i,kv,"="); if (kv[1]=="rps") r[NR]=kv[2]; if (kv[1]=="cpu_us_per_call") c[NR]=kv[2]; if (kv[1]=="calls_per_write") g[NR]=(kv[2]=="-"?0:kv[2])}}
      function med(a, n,   i,j,t) { for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (a[j]<a[i]) {t=a[i];a[i]=a[j];a[j]=t}; return a[int((n+1)/2)] }
      END {printf "| %s | %s | %d | %.1f | %.1f |\n", b, m, med(r, NR), med(c, NR), med(g, NR)}'
  done | tee -a "$work/table"
done
echo
awk -F'|' '{gsub(/ /,"",$3); rate[$2 $3]=$4+0; b[$2]=1}
  END {for (x in b) printf "%s default/memory = %.2fx (target >= 0.85x), fsync/default = %.2fx (target >= 0.5x)\n",
         x, rate[x "DURABILITY_PROCESS_CRASH"] / rate[x "DURABILITY_MEMORY"],
         rate[x "DURABILITY_FSYNC"] / rate[x "DURABILITY_PROCESS_CRASH"]}' "$work/table"
