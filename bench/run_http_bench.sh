#!/usr/bin/env bash
# End-to-end HTTP benchmark (SPEC §11): requests per second and latency of anyai-server's
# OpenAI-compatible front against nginx `limit_req` returning a static body
# (bench/anchors/nginx-limit-req.sh), both driven by wrk -t2 on loopback in one run.
# anyai-server is measured on GET /v1/models (auth-free, metered by the `meta` class: the
# front's own cost) and on POST /v1/chat/completions with a key (auth + validation + admission
# persisted to RocksDB + builtin answer). Prints a Markdown table.
# Usage: bench/run_http_bench.sh [seconds=10] [connections=64]
# Env: ANCHORS (default bench/anchors), BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
anchors=${ANCHORS:-bench/anchors}
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target anyai-server anyai-admin >/dev/null
source bench/bench_lib.sh

summary() {  # wrk --latency output on stdin -> "rps p50 p99"
  awk '/Requests\/sec:/ {rps=$2}
       /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
       END {print rps, p50, p99}'
}

anchor=$(bash "$anchors/nginx-limit-req.sh" "$conns" "$secs" | summary)

cfg="$work/bench.textproto"
cp bench/bench-config.textproto "$cfg"
ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-server --config="$cfg" --data_dir="$work/data" \
  --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 \
  >"$work/ports" 2>"$work/server.log" & pid=$!
for _ in $(seq 100); do grep -q '^admin listening' "$work/ports" 2>/dev/null && break; sleep 0.1; done
http=$(sed -n 's/^http listening on //p' "$work/ports")
admin=$(sed -n 's/^admin listening on //p' "$work/ports")
key=$(ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-admin --server="$admin" keys create --plan=premium \
      --label=bench | grep '^sk-anyai-')
models=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "http://$http/v1/models" | summary)
chat=$(ANYAI_KEY=$key wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/wrk_chat.lua \
       "http://$http/v1/chat/completions" | summary)

read -r a_rps a_p50 a_p99 <<<"$anchor"
echo "| target (wrk -t2 -c$conns -d${secs}s) | requests/s | vs nginx limit_req | p50 | p99 |"
echo "|---|---|---|---|---|"
echo "| nginx 1.22 limit_req + static JSON (anchor) | $a_rps | 1.00 | $a_p50 | $a_p99 |"
for row in "GET /v1/models (8 KB JSON, meta class)|$models" "POST /v1/chat/completions (key, admitted, persisted)|$chat"; do
  name=${row%%|*}; read -r rps p50 p99 <<<"${row#*|}"
  printf '| anyai-server %s | %s | %.2f | %s | %s |\n' "$name" "$rps" \
    "$(awk -v x="$rps" -v y="$a_rps" 'BEGIN{print x/y}')" "$p50" "$p99"
done
