#!/usr/bin/env bash
# The server's CPU per refused HTTP chat call: an anonymous 429 flood (wrk -t1 -c64, no key, the
# default free plan), builds run one after the other, REPS times; one line per run.
# Usage: bench/http_refused_cpu.sh SECONDS REPS BUILD_DIR...   e.g. 5 3 /tmp/before/build build
set -euo pipefail
cd "$(dirname "$0")/.."
secs=$1 reps=$2; shift 2
source bench/bench_lib.sh
hz=$(getconf CLK_TCK)
for rep in $(seq "$reps"); do
  for build in "$@"; do
    port=$(free_port)
    "$build/bin/anyai-server" --data_dir="$work/d-$RANDOM" --grpc_listen=127.0.0.1:0 \
      --http_listen="127.0.0.1:$port" --admin_listen=127.0.0.1:0 >/dev/null 2>&1 & pid=$!
    wait_port "$port"
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(wrk -t1 -c64 -d"${secs}s" -s bench/wrk_chat_anonymous.lua "http://127.0.0.1:$port/v1/chat/completions")
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
    rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *//p' <<<"$out")
    awk -v r="$reqs" -v d=$((t1 - t0)) -v hz="$hz" -v rps="$rps" -v b="$build" -v rep="$rep" -v n="$non2xx" \
      'BEGIN { printf "rep %s %s refused-http: requests=%s rps=%s non2xx=%s cpu_us_per_call=%.1f\n", rep, b, r, rps, n, d * 1e6 / hz / r }'
    stop
  done
done
