#!/usr/bin/env bash
# What the default durability writes per admitted gRPC call: bench/grpc_load runs SECS at 64 in
# flight against a fresh anyai-server started as bench_lib.sh's `start_grpc_anyai BUILD admitted`
# does (bench/bench-config.textproto, a premium key), then prints the calls, the usage sink's
# Record calls (anyai_storage_write_calls_total{store="usage"}) and RocksDB writes
# (anyai_storage_writes_total{store="usage"}) per call, and the write-ahead log's bytes per call:
# the apparent size of the data dir's *.log files (`du` would count RocksDB's preallocated WAL
# blocks too). Counts, not times: they do not drift with the machine's load.
# Usage: bench/usage_writes_per_call.sh [seconds=5] [BUILD_DIR=build]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} build=${2:-build}
source bench/bench_lib.sh
start_grpc_anyai "$build" admitted
data=$(ls -d "$work"/data-*)
wal0=$(find "$data" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
out=$("$build/bin/grpc_load" --target="127.0.0.1:$port" --inflight=64 --duration="$secs" \
        --warmup=0 --request=anyai_chat "${call_metadata[@]}")
wal1=$(find "$data" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
metrics=$(curl -s -m 5 "http://127.0.0.1:$http_port/metrics")
stop
calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$out")
awk -v calls="$calls" -v wal=$((wal1 - wal0)) -v out="$out" '
  /^anyai_storage_write_calls_total\{store="usage"\}/ {records = $2}
  /^anyai_storage_writes_total\{store="usage"\}/ {writes = $2}
  END {
    if (calls == 0) { print "no call completed: " out; exit 1 }
    printf "%s\nrecords_per_call=%.3f rocksdb_writes_per_call=%.3f wal_bytes_per_call=%.1f\n",
           out, records / calls, writes / calls, wal / calls
  }' <<<"$metrics"
