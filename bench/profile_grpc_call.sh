#!/usr/bin/env bash
# A DWARF call-graph profile of anyai-server under gRPC CreateChatCompletion load: the server
# started as bench_lib.sh's `start_grpc_anyai BUILD_DIR admitted|refused` does (durability
# $DURABILITY, default DURABILITY_PROCESS_CRASH), bench/grpc_load at 64 in flight for 6 s, and
# `perf record -F 2000 --call-graph dwarf -p PID` over 3 s of it (after 1 s). Prints grpc_load's
# summary, whose rps times 3 is about the calls the profile covers; read OUT with
# bench/perf_shares.py. Needs root and linux-perf.
# Usage: [DURABILITY=...] bench/profile_grpc_call.sh BUILD_DIR admitted|refused OUT.data
set -euo pipefail
cd "$(dirname "$0")/.."
build=$1 kind=$2 out=$3
source bench/bench_lib.sh
DURABILITY=${DURABILITY:-DURABILITY_PROCESS_CRASH} start_grpc_anyai "$build" "$kind"
"$build/bin/grpc_load" --target="127.0.0.1:$port" --inflight=64 --duration=6 --warmup=0 \
  --request=anyai_chat "${call_metadata[@]}" >"$work/load.txt" &
load=$!
sleep 1
perf record -F 2000 --call-graph dwarf,16384 -p "$pid" -o "$out" -- sleep 3 >/dev/null 2>&1
wait "$load"
cat "$work/load.txt"
stop
