#!/usr/bin/env bash
# A DWARF call-graph profile of anyai-server under CreateChatCompletion load, on gRPC or HTTP:
# the server started as bench_lib.sh's `start_grpc_anyai BUILD_DIR admitted|refused` does
# (durability $DURABILITY, default DURABILITY_PROCESS_CRASH; refused: anonymous on the default
# free plan), driven for 6 s by bench/grpc_load at 64 in flight (grpc) or wrk -t2 -c64 with
# bench/wrk_chat.lua or, refused, bench/wrk_chat_anonymous.lua (http), and
# `perf record -F 2000 --call-graph dwarf -p PID` over 3 s of it (after 1 s). Prints the driver's
# summary, whose rate times 3 is about the calls the profile covers; read OUT with
# bench/perf_shares.py. Needs root and linux-perf.
# Usage: [DURABILITY=...] bench/profile_call.sh grpc|http BUILD_DIR admitted|refused OUT.data
set -euo pipefail
cd "$(dirname "$0")/.."
front=$1 build=$2 kind=$3 out=$4
source bench/bench_lib.sh
DURABILITY=${DURABILITY:-DURABILITY_PROCESS_CRASH} start_grpc_anyai "$build" "$kind"
if [[ $front == grpc ]]; then
  "$build/bin/grpc_load" --target="127.0.0.1:$port" --inflight=64 --duration=6 --warmup=0 \
    --request=anyai_chat "${call_metadata[@]}" >"$work/load.txt" &
else
  script=bench/wrk_chat.lua
  [[ -z "$api_key" ]] && script=bench/wrk_chat_anonymous.lua
  ANYAI_KEY=$api_key wrk -t2 -c64 -d6s -s "$script" \
    "http://127.0.0.1:$http_port/v1/chat/completions" >"$work/load.txt" &
fi
load=$!
sleep 1
perf record -F 2000 --call-graph dwarf,16384 -p "$pid" -o "$out" -- sleep 3 >/dev/null 2>&1
wait "$load"
grep -E 'calls=|Requests/sec|Non-2xx' "$work/load.txt"
stop
