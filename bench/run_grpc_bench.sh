#!/usr/bin/env bash
# End-to-end gRPC benchmark (SPEC §11): decisions per second and latency of anyai-server's
# CreateChatCompletion (authenticate a key in RocksDB, validate, admit, persist the admission,
# answer with the builtin provider) against the empty C++ gRPC service of
# bench/anchors/grpc-empty (the framework's ceiling), driven by the same closed-loop
# generic client (bench/grpc_load) with the same in-flight count, in one run. Also the cost of
# each durability mode. Prints a Markdown table.
# Usage: bench/run_grpc_bench.sh [seconds=10] [inflight=64] [reps=2]
# Env: ANCHORS (default bench/anchors), BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
inflight=${2:-64}
reps=${3:-2}
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target anyai-server anyai-admin grpc_load >/dev/null
source bench/bench_lib.sh
bench_build_anchor
"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null

load() { "$build"/bin/grpc_load --target="127.0.0.1:$1" --inflight="$inflight" --duration="$secs" "${@:2}"; }

run_anchor() {  # $1 = async (completion queue) or callback
  local port; port=$(free_port)
  "$anchor_build/server" --port="$port" --mode="$1" 2>/dev/null & pid=$!
  wait_port "$port"
  load "$port" --method=/anchor.Echo/Complete --request="@$work/anchor.bin"
  stop
}

run_anyai() {  # $1 = durability
  local dir="$work/data-$1-$RANDOM" cfg="$work/$1.textproto" port admin_port
  { cat bench/bench-config.textproto; echo "durability: $1"; } >"$cfg"
  port=$(free_port)
  admin_port=$(free_port)
  ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-server --config="$cfg" --data_dir="$dir" \
    --grpc_listen="127.0.0.1:$port" --http_listen=127.0.0.1:0 \
    --admin_listen="127.0.0.1:$admin_port" >/dev/null 2>"$work/server.log" & pid=$!
  wait_port "$port"
  wait_port "$admin_port"
  local key
  key=$(ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-admin --server="127.0.0.1:$admin_port" keys create \
        --plan=premium --label=bench | grep '^sk-anyai-')
  load "$port" --request=anyai_chat --metadata="authorization:Bearer $key"
  stop
}

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
declare -A rps p50 p99
for rep in $(seq "$reps"); do
  for what in anchor anchor_callback DURABILITY_PROCESS_CRASH DURABILITY_FSYNC; do
    case $what in
      anchor) line=$(run_anchor async) ;;
      anchor_callback) line=$(run_anchor callback) ;;
      *) line=$(run_anyai "$what") ;;
    esac
    echo "rep $rep $what: $line" >&2
    rps[$what]+="$(field rps "$line") "; p50[$what]+="$(field p50_us "$line") "; p99[$what]+="$(field p99_us "$line") "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
a=$(median "${rps[anchor]}")
echo
echo "| server (gRPC, $inflight in flight, ${secs}s x $reps, median) | calls/s | vs empty service | p50 µs | p99 µs |"
echo "|---|---|---|---|---|"
for what in anchor anchor_callback DURABILITY_PROCESS_CRASH DURABILITY_FSYNC; do
  r=$(median "${rps[$what]}")
  case $what in
    anchor) name="empty C++ service (anchor, completion-queue API)" ;;
    anchor_callback) name="empty C++ service (anchor, callback API)" ;;
    *) name="anyai-server CreateChatCompletion, $what" ;;
  esac
  printf '| %s | %.0f | %.2f | %s | %s |\n' "$name" "$r" "$(awk -v x="$r" -v y="$a" 'BEGIN{print x/y}')" \
    "$(median "${p50[$what]}")" "$(median "${p99[$what]}")"
done
d=$(median "${rps[DURABILITY_PROCESS_CRASH]}")
f=$(median "${rps[DURABILITY_FSYNC]}")
echo
echo "DURABILITY_FSYNC / DURABILITY_PROCESS_CRASH = $(awk -v x="$f" -v y="$d" 'BEGIN{printf "%.2f", x/y}')"
