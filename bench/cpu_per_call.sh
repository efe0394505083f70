#!/usr/bin/env bash
# The server's own CPU per gRPC call (utime + stime of its process over the run, divided by the
# calls; the driver's CPU left out), for builds of anyai-server run one after the other, and for
# the empty completion-queue service: on 2 shared cores a closed-loop rate mostly says who got
# the CPU, CPU per call says what a call costs. bench/grpc_load at 64 in flight,
# CreateChatCompletion: admitted (a premium key on bench/bench-config.textproto's raised limits,
# default durability) and refused (anonymous on the default free plan: all but 10 calls get
# RESOURCE_EXHAUSTED). One line per run.
# Usage: bench/cpu_per_call.sh [seconds=5] [reps=2] BUILD_DIR...
#   bench/cpu_per_call.sh 5 2 /tmp/before/build build
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} reps=${2:-2}
shift 2
driver=${1}/bin/grpc_load
source bench/bench_lib.sh
bench_build_anchor
"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null
measure() { measure_cpu_per_call "$driver" "$secs" "$@"; }

anyai() {  # $1 = build dir, $2 = admitted | refused
  start_grpc_anyai "$1" "$2"
  measure "$port" --request=anyai_chat "${call_metadata[@]}"
  stop
}

for rep in $(seq "$reps"); do
  port=$(free_port)
  "$anchor_build/server" --port="$port" --mode=async 2>/dev/null & pid=$!
  wait_port "$port"
  echo "rep $rep empty service: $(measure "$port" --method=/anchor.Echo/Complete --request="@$work/anchor.bin")"
  stop
  for build in "$@"; do
    for kind in admitted refused; do echo "rep $rep $build $kind: $(anyai "$build" "$kind")"; done
  done
done
