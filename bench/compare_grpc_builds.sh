#!/usr/bin/env bash
# Before/after of a change on the gRPC front, in one run: the empty completion-queue service of
# bench/anchors/grpc-empty, and anyai-server from two build dirs (e.g. a worktree of the commit
# before the change, built there, and this tree's build/), interleaved, each driven by
# bench/grpc_load at 64 in flight: CreateChatCompletion admitted (a premium key on
# bench/bench-config.textproto's raised limits, default durability) and refused (anonymous on
# the default free plan: all but its first 10 calls get RESOURCE_EXHAUSTED).
# Prints one line per run (grpc_load's own summary, with its status counts).
# Usage: bench/compare_grpc_builds.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR [seconds=5] [reps=2]
#   git worktree add /tmp/before <commit> && cmake -S /tmp/before -B /tmp/before/build -G Ninja \
#     -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/before/build --target anyai-server anyai-admin
#   bench/compare_grpc_builds.sh /tmp/before/build build 5 2
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 secs=${3:-5} reps=${4:-2}
cmake --build "$after" --target grpc_load >/dev/null
source bench/bench_lib.sh
bench_build_anchor
load() { "$after/bin/grpc_load" --target="127.0.0.1:$1" --inflight=64 --duration="$secs" "${@:2}"; }
"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null

anchor() {
  local port; port=$(free_port)
  "$anchor_build/server" --port="$port" --mode=async 2>/dev/null & pid=$!
  wait_port "$port"
  load "$port" --method=/anchor.Echo/Complete --request="@$work/anchor.bin"
  stop
}

anyai() {  # $1 = build dir, $2 = admitted | refused
  start_grpc_anyai "$1" "$2"
  load "$port" --request=anyai_chat "${call_metadata[@]}"
  stop
}

for rep in $(seq "$reps"); do
  echo "rep $rep empty service: $(anchor)"
  for kind in admitted refused; do
    echo "rep $rep before $kind: $(anyai "$before" "$kind")"
    echo "rep $rep after $kind: $(anyai "$after" "$kind")"
  done
done
