#!/usr/bin/env bash
# Heap allocations per gRPC call: glibc malloc() calls made by the server process while
# bench/grpc_load runs 3 s at 64 in flight, divided by the calls it completed. Counted with a perf
# uprobe on libc's malloc (needs root and linux-perf; the probe slows the server, so only the
# count per call means anything, not the rate). For the empty completion-queue service and, for
# each BUILD_DIR, anyai-server's CreateChatCompletion admitted and refused (as
# bench/cpu_per_call.sh runs them). A count, not a time: it does not drift with the machine's load,
# with one exception: a refusal's rendering is memoized per refusal state, whose retry time moves
# every millisecond, so the slower the probed server runs, the fewer refusals share one and the
# higher the refused count (an upper bound for a full-speed flood).
# The builds must allocate with glibc (configured with -DANYAI_TCMALLOC=OFF): tcmalloc's malloc
# and operator new do not go through libc's.
# Usage: bench/mallocs_per_call.sh BUILD_DIR...     e.g. bench/mallocs_per_call.sh /tmp/before/build build
set -euo pipefail
cd "$(dirname "$0")/.."
driver=$1/bin/grpc_load
source bench/bench_lib.sh
for b in "$@"; do
  if ldd "$b/bin/anyai-server" | grep -q tcmalloc; then
    echo "$b/bin/anyai-server allocates with tcmalloc: this script counts glibc's malloc calls;" \
         "configure that build with -DANYAI_TCMALLOC=OFF" >&2
    exit 1
  fi
done
libc=$(ldd "$1/bin/anyai-server" | awk '/libc.so.6/ {print $3}')
perf probe -q -x "$libc" --add malloc 2>/dev/null || true
grep -q "probe_libc:malloc" <<<"$(perf list 2>/dev/null)" || { echo "no perf uprobe on malloc (root and linux-perf needed)" >&2; exit 1; }
bench_build_anchor
"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null

count() {  # $1 = label; the rest: grpc_load's flags. Counts the mallocs of $pid.
  local label=$1 out calls n s
  shift
  "$driver" --target="127.0.0.1:$port" --inflight=4 --duration=0.5 --warmup=0 "$@" >/dev/null  # warm
  perf stat -e probe_libc:malloc -p "$pid" -o "$work/stat.txt" & s=$!
  sleep 0.3
  out=$("$driver" --target="127.0.0.1:$port" --inflight=64 --duration=3 --warmup=0 "$@")
  sleep 0.3
  kill -INT "$s"; wait "$s" || true
  calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$out")
  n=$(awk '/probe_libc:malloc/ {gsub(",", "", $1); print $1}' "$work/stat.txt")
  awk -v c="$calls" -v n="$n" -v l="$label" 'BEGIN {printf "%s: calls=%d mallocs=%d mallocs_per_call=%.1f\n", l, c, n, n / c}'
}

port=$(free_port)
"$anchor_build/server" --port="$port" --mode=async 2>/dev/null & pid=$!
wait_port "$port"
count "empty service" --method=/anchor.Echo/Complete --request="@$work/anchor.bin"
stop
for build in "$@"; do
  for kind in admitted refused; do
    start_grpc_anyai "$build" "$kind"
    count "$build $kind" --request=anyai_chat "${call_metadata[@]}"
    stop
  done
done
perf probe -q --del probe_libc:malloc 2>/dev/null || true
