#!/usr/bin/env bash
# What the server's threads do in the kernel per call. grpc (the default): admitted gRPC calls in
# each durability mode, bench/grpc_load running SECS at 64 in flight against a fresh anyai-server
# (bench_lib.sh's `start_grpc_anyai BUILD admitted`: bench/bench-config.textproto, a premium key).
# http: refused HTTP chats (`start_grpc_anyai BUILD refused`: anonymous on the free plan), wrk -t2
# -c64 with bench/wrk_chat_anonymous.lua for SECS. Meanwhile
# `perf stat` counts, in the server process only, its context switches, CPU migrations and the
# system calls that matter on this path (futex, write, sendmsg, recvmsg, epoll_wait, and all of
# them), each divided by the calls. Counts, not times: they do not drift with the machine's load,
# so two modes or two builds compare even in a noisy sitting. Needs perf and tracefs (mounted
# here if it is not).
# Usage: [MODES="..."] bench/syscalls_per_call.sh [seconds=5] [BUILD_DIR=build] [grpc|http]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5} build=${2:-build} front=${3:-grpc}
source bench/bench_lib.sh
read -r -a modes <<<"${MODES:-DURABILITY_MEMORY DURABILITY_PROCESS_CRASH}"
[[ $front == http ]] && modes=(refused-http)
[[ -d /sys/kernel/tracing/events/syscalls ]] || mount -t tracefs nodev /sys/kernel/tracing
events=context-switches,cpu-migrations,raw_syscalls:sys_enter
for call in futex write sendmsg recvmsg epoll_wait; do events+=",syscalls:sys_enter_$call"; done
printf '| mode | calls | %s |\n|---|---|---|---|---|---|---|---|---|---|\n' \
  "context switches | migrations | system calls | futex | write | sendmsg | recvmsg | epoll_wait"
for mode in "${modes[@]}"; do
  if [[ $front == http ]]; then start_grpc_anyai "$build" refused
  else DURABILITY=$mode start_grpc_anyai "$build" admitted; fi
  perf stat -x, -e "$events" -p "$pid" -o "$work/stat" &
  perf_pid=$!
  sleep 0.5
  if [[ $front == http ]]; then
    out=$(wrk -t2 -c64 -d"${secs}s" -s bench/wrk_chat_anonymous.lua \
            "http://127.0.0.1:$http_port/v1/chat/completions")
    calls=$(awk '/requests in/ {print $1}' <<<"$out")
  else
    out=$("$build/bin/grpc_load" --target="127.0.0.1:$port" --inflight=64 --duration="$secs" \
            --warmup=0 --request=anyai_chat "${call_metadata[@]}")
    calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$out")
  fi
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  stop
  # perf -x, lines: value,unit,event,...; the counts include the half second before the load
  # (an idle server makes a few epoll_waits then), which is why they are per call of the run.
  awk -F, -v calls="$calls" -v mode="$mode" '
    $3 != "" && $1 ~ /^[0-9]/ { n[$3] = $1 }
    END {
      if (calls == 0) { print "no call completed"; exit 1 }
      printf "| %s | %d", mode, calls
      split("context-switches cpu-migrations raw_syscalls:sys_enter syscalls:sys_enter_futex " \
            "syscalls:sys_enter_write syscalls:sys_enter_sendmsg syscalls:sys_enter_recvmsg " \
            "syscalls:sys_enter_epoll_wait", order, " ")
      for (i = 1; i <= 8; i++) printf " | %.2f", n[order[i]] / calls
      print " |"
    }' "$work/stat"
done
