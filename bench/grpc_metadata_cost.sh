#!/usr/bin/env bash
# What gRPC itself charges for what an anyai-server call must answer, apart from anyai's own
# code: the server's CPU per call (bench_lib.sh's measure_cpu_per_call: utime + stime over the
# run / calls, bench/grpc_load at 64 in flight) of
#   the empty completion-queue service as it is (the anchor of every gRPC row),
#   the same service answering every call with the metadata a live anyai-server answered an
#     admitted chat call (x-ratelimit-*, RateLimit, RateLimit-Policy),
#   the same answering as anyai refuses a call (those entries as trailers, RESOURCE_EXHAUSTED,
#     its message and google.rpc.Status details in grpc-status-details-bin),
#   anyai-server admitted and refused (CreateChatCompletion, as bench/cpu_per_call.sh runs it).
# The answers are copied from live calls by bench/grpc_reply_like.py. One line per run.
# Usage: bench/grpc_metadata_cost.sh [seconds=5] [reps=2]   (BUILD_DIR: default build)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} reps=${2:-2}
build=${BUILD_DIR:-build}
source bench/bench_lib.sh
bench_build_anchor
"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null
"$build"/bin/grpc_load --request=anyai_chat --dump_grpc_body="$work/chat.bin"
measure() { measure_cpu_per_call "$build/bin/grpc_load" "$secs" "$@"; }
py=/usr/bin/python3
[[ -x $py ]] || py=python3

# The two answers, from live calls (the 11th anonymous call is past the free plan's 10).
for kind in admitted refused; do
  start_grpc_anyai "$build" "$kind"
  calls=1; [[ $kind == refused ]] && calls=11
  no_grpc_proxy=127.0.0.1 "$py" bench/grpc_reply_like.py --target="127.0.0.1:$port" \
    --body="$work/chat.bin" --calls="$calls" --out="$work/$kind.reply" \
    "${call_metadata[@]}"
  stop
done
echo "anyai's admitted answer: $(wc -l <"$work/admitted.reply") metadata entries;" \
  "refused: $(grep -c '^trailing' "$work/refused.reply") trailers + status with" \
  "$(awk '/^status/ {n = length($4) / 2} END {print n + 0}' "$work/refused.reply") bytes of details"

empty() {  # $1: label, then the anchor server's extra flags
  local label=$1
  shift
  port=$(free_port)
  "$anchor_build/server" --port="$port" --mode=async "$@" 2>/dev/null & pid=$!
  wait_port "$port"
  echo "rep $rep $label: $(measure "$port" --method=/anchor.Echo/Complete --request="@$work/anchor.bin")"
  stop
}
for rep in $(seq "$reps"); do
  empty "empty service"
  empty "empty service + anyai's admitted metadata" --metadata="$work/admitted.reply"
  empty "empty service answering as anyai refuses" --metadata="$work/refused.reply"
  for kind in admitted refused; do
    start_grpc_anyai "$build" "$kind"
    echo "rep $rep anyai $kind: $(measure "$port" --request=anyai_chat "${call_metadata[@]}")"
    stop
  done
done
