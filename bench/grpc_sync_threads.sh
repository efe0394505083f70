#!/usr/bin/env bash
# Which threads of gRPC's synchronous server (named grpcpp_sync_server, cut by Linux to
# "grpcpp_sync_ser") an anyai-server runs, and how much of its CPU they take while
# bench/grpc_load drives admitted CreateChatCompletion calls at 64 in flight on the public port
# (a premium key on bench/bench-config.textproto's raised limits), with the server's CPU per
# call. Issue 13: with gRPC's epoll1 poller such threads, idle as servers, take a share of the
# polling of every call in the process. The public port has no synchronous method (its health
# and reflection services run on the completion queues), so every such thread left is the
# Admin server's; the lowest thread id is the oldest thread.
# Usage: bench/grpc_sync_threads.sh [build_dir=build] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} secs=${2:-5}
cmake --build "$build" --target anyai-server anyai-admin grpc_load >/dev/null
source bench/bench_lib.sh
port=$(free_port); admin=$(free_port)
{ cat bench/bench-config.textproto; echo "durability: DURABILITY_PROCESS_CRASH"; } >"$work/c.textproto"
ANYAI_ADMIN_TOKEN=bench "$build/bin/anyai-server" --config="$work/c.textproto" \
  --data_dir="$work/data" --grpc_listen="127.0.0.1:$port" --http_listen=127.0.0.1:0 \
  --admin_listen="127.0.0.1:$admin" >/dev/null 2>&1 & pid=$!
wait_port "$port"
wait_port "$admin"
key=$(ANYAI_ADMIN_TOKEN=bench "$build/bin/anyai-admin" --server="127.0.0.1:$admin" keys create \
      --plan=premium --label=bench | grep '^sk-anyai-')
ticks() { awk '{print $14 + $15}' "$1"; }  # utime + stime
sync_threads() {
  for t in /proc/"$pid"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == grpcpp_sync_ser* ]] && echo "${t##*/} $(ticks "$t/stat")"
  done
  true
}
echo "at start: $(sync_threads | wc -l) grpcpp_sync_ser thread(s)"
all0=$(ticks /proc/"$pid"/stat)
declare -A before_load
while read -r tid t; do before_load[$tid]=$t; done < <(sync_threads)
out=$("$build/bin/grpc_load" --target="127.0.0.1:$port" --inflight=64 --duration="$secs" \
      --request=anyai_chat --metadata="authorization:Bearer $key")
all1=$(ticks /proc/"$pid"/stat)
calls=$(echo "$out" | sed -n 's/.*calls=\([0-9]*\).*/\1/p')
hz=$(getconf CLK_TCK)
echo "$out" | awk -v c="$calls" -v d=$((all1 - all0)) -v hz="$hz" \
  '{printf "%s cpu_us_per_call=%.1f\n", $0, d * 1e6 / hz / c}'
sync=0
while read -r tid t; do
  used=$((t - ${before_load[$tid]:-0}))
  sync=$((sync + used))
  echo "  grpcpp_sync_ser tid $tid: $used ticks during the load"
done < <(sync_threads)
echo "after the load: $(sync_threads | wc -l) grpcpp_sync_ser thread(s), $sync of the server's" \
     "$((all1 - all0)) ticks ($((sync * 100 / (all1 - all0 > 0 ? all1 - all0 : 1)))%; threads that" \
     "ended are not counted)"
stop
