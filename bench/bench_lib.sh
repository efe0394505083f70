# What the bench scripts share (sourced, not run): the work dir and the one server process a
# script runs at a time, cleaned up on exit; loopback ports; the empty gRPC service's build.
#   source bench/bench_lib.sh   # from the repository root; sets work, pid, the EXIT trap
#   bench_build_anchor          # sets anchor_build (env ANCHORS, ANCHOR_BUILD_DIR)
#   port=$(free_port); ... & pid=$!; wait_port "$port"; ...; stop
#   start_grpc_anyai BUILD_DIR admitted|refused   # sets pid, port, http_port, call_metadata, api_key
#   measure_cpu_per_call GRPC_LOAD SECS PORT FLAGS...  # grpc_load's summary + cpu_us_per_call of $pid

work=$(mktemp -d)
pid=""
bench_cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap bench_cleanup EXIT

# A loopback port that was free a moment ago, and a wait (10 s at most) until one accepts.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# Stops the server of $pid, if any.
stop() { [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }; pid=""; }

# Builds bench/anchors/grpc-empty (server and client) into $anchor_build.
bench_build_anchor() {
  anchor_build=${ANCHOR_BUILD_DIR:-${TMPDIR:-/tmp}/anyai-bench-anchor-build}
  cmake -S "${ANCHORS:-bench/anchors}/grpc-empty" -B "$anchor_build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$anchor_build" >/dev/null
}

# Starts BUILD_DIR's anyai-server for CreateChatCompletion runs, and sets port (its gRPC port),
# http_port, call_metadata (grpc_load's flags for the caller) and api_key (the caller's key;
# empty when anonymous). admitted: bench/bench-config.textproto's raised limits, durability
# $DURABILITY (default DURABILITY_PROCESS_CRASH), and a premium key made through the Admin port;
# refused: the default config, anonymous (the free plan: all but its first 10 calls
# RESOURCE_EXHAUSTED, or 429 on HTTP).
start_grpc_anyai() {
  local admin cfg=()
  port=$(free_port); admin=$(free_port); http_port=$(free_port); call_metadata=(); api_key=""
  if [[ $2 == admitted ]]; then
    { cat bench/bench-config.textproto; echo "durability: ${DURABILITY:-DURABILITY_PROCESS_CRASH}"; } >"$work/c.textproto"
    cfg=(--config="$work/c.textproto")
  fi
  ANYAI_ADMIN_TOKEN=bench "$1/bin/anyai-server" "${cfg[@]}" --data_dir="$work/data-$RANDOM" \
    --grpc_listen="127.0.0.1:$port" --http_listen="127.0.0.1:$http_port" --admin_listen="127.0.0.1:$admin" \
    >/dev/null 2>&1 & pid=$!
  wait_port "$port"; wait_port "$admin"
  if [[ $2 == admitted ]]; then
    local key
    key=$(ANYAI_ADMIN_TOKEN=bench "$1/bin/anyai-admin" --server="127.0.0.1:$admin" keys create \
          --plan=premium --label=bench | grep '^sk-anyai-')
    call_metadata=(--metadata="authorization:Bearer $key")
    api_key=$key
  fi
}

# $1 = grpc_load binary, $2 = seconds, $3 = port; the rest: grpc_load's flags. Runs grpc_load at
# 64 in flight and prints its summary line and the CPU per call of the process $pid (its utime +
# stime over the run, divided by the calls; the driver's own CPU left out).
measure_cpu_per_call() {
  local driver=$1 secs=$2 port=$3 t0 t1 out calls hz
  shift 3
  hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$("$driver" --target="127.0.0.1:$port" --inflight=64 --duration="$secs" --warmup=0 "$@")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$out")
  awk -v c="$calls" -v d=$((t1 - t0)) -v hz="$hz" -v o="$out" \
    'BEGIN { printf "%s cpu_us_per_call=%.1f\n", o, d * 1e6 / hz / c }'
}
