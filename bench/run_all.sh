#!/usr/bin/env bash
# Reproduces every row of the performance issue's "Where it stands" table (SPEC §11), each
# against its anchor (bench/anchors) measured IN THE SAME RUN with the same driver, and writes
# the generated section of bench/RESULTS.md (machine, exact commands, tables with ratios; the
# history sections below it are kept) and bench/plots/{throughput,latency}.png (gnuplot, by
# bench/plot.sh from the .dat files it leaves beside them).
#
#   bench/run_all.sh [seconds=5]      (about 6-8 minutes at 5 s per point on 2 cores)
#
# Env: BUILD_DIR (default build), ANCHORS (default bench/anchors), ANCHOR_BUILD_DIR
# (default $TMPDIR/anyai-grpc-anchor-build), RESULTS (default bench/RESULTS.md), PLOTS (default
# bench/plots), ENGINE (1: also the engine rows by bench/run_engine_bench.sh; 0: skip).
# Needs: scripts/install-deps.sh --bench (h2load, wrk, nginx, redis, gnuplot).
#
# Drivers: h2load -c2 -m64 (gRPC, framed bodies from the anchor client's --dump-grpc-body and
# grpc_load's --dump_grpc_body), wrk -t2 -c64 (HTTP), bench/grpc_load (closed loop, gRPC status
# counts), redis-benchmark (Redis), h2load --rps / --h1 --rps with --log-file (open loop, the
# percentiles are computed from its per-request log). The server runs with limits no run reaches
# for a premium key (every call admitted and persisted) and a free plan limited to 1 call per
# window (every call of a free key after the first refused: 429 / RESOURCE_EXHAUSTED).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
warm=1
build=${BUILD_DIR:-build}
anchors=${ANCHORS:-bench/anchors}
results=${RESULTS:-bench/RESULTS.md}
plots=${PLOTS:-bench/plots}
engine=${ENGINE:-1}
concs=(1 4 16 64 256)
fractions=(25 50 75)
limit=$((secs + warm + 30))  # hard bound on each driver run

for tool in h2load wrk nginx redis-server redis-benchmark gnuplot python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/install-deps.sh --bench" >&2; exit 1; }
done
echo "building ($build and the empty gRPC service)" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target anyai-server anyai-admin grpc_load >/dev/null
source bench/bench_lib.sh
bench_build_anchor
raw="$work/raw.txt"  # every driver's own output, for the record
cmds="$work/commands.txt"
: >"$raw"
: >"$cmds"
t_start=$(date +%s)

"$anchor_build/client" --dump-grpc-body="$work/anchor.bin" 2>/dev/null
"$build"/bin/grpc_load --request=anyai_chat --dump_grpc_body="$work/chat.bin"
cat >"$work/chat.json" <<'JSON'
{"model":"phi-2","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Summarise the rate-limit policy in one sentence please."}]}
JSON
# The server's config: bench-config (limits no run reaches) with the free plan cut to 1 call per
# window, and the connection and stream caps raised above the largest point (256 in flight).
anyai_config() {  # $1 = durability -> file name
  local cfg="$work/anyai-$1.textproto"
  awk '/^plans \{/ {free=0} /name: "free"/ {free=1}
       free && /max_requests:/ {sub(/max_requests: [0-9]+/, "max_requests: 1")} {print}' \
    bench/bench-config.textproto >"$cfg"
  printf 'durability: %s\nmax_connections_per_address: 4096\nmax_concurrent_streams: 1024\n' "$1" >>"$cfg"
  echo "$cfg"
}

key_premium="" key_free=""
# note ARGS... : records a command, quoted as a shell would need it, keys and temp paths masked
note() {
  local line; line=$(printf '%q ' "$@")
  [[ -n "$key_premium" ]] && line=${line//"$key_premium"/sk-anyai-PREMIUM}
  [[ -n "$key_free" ]] && line=${line//"$key_free"/sk-anyai-FREE}
  echo "${line//"$work"/TMP}" >>"$cmds"
}
comment() { echo "# $*" >>"$cmds"; }
log() { echo "[$(($(date +%s) - t_start))s] $*" >&2; }

# --- drivers; each prints one figure (or 0 when the run failed) and logs its raw output -------
# h2closed LABEL URL BODY [h2load args...] -> requests/s (closed loop)
h2closed() {
  local label=$1 url=$2 body=$3 out; shift 3
  note h2load -D "$secs" --warm-up-time="$warm" "$@" -d BODY "$url"
  out=$(timeout "$limit" h2load -D "$secs" --warm-up-time="$warm" "$@" -d "$body" "$url" 2>&1) || true
  { echo "== $label"; tail -9 <<<"$out"; } >>"$raw"
  awk '/^finished in/ {r=$4; gsub(",","",r)} END {print int(r)}' <<<"$out"
}
h2grpc() { h2closed "$@" -H 'content-type: application/grpc' -H 'te: trailers'; }
# h2open LABEL URL BODY TOTAL_RPS CONNS [h2load args...] -> "p50 p90 p99 p99.9 achieved_rps" (µs)
h2open() {
  local label=$1 url=$2 body=$3 rate=$4 conns=$5 out per; shift 5
  per=$(awk -v r="$rate" -v c="$conns" 'BEGIN{p=int(r/c); print (p<1?1:p)}')
  note h2load -D "$secs" --warm-up-time="$warm" -c"$conns" --rps="$per" "$@" -d BODY --log-file=LOG "$url"
  rm -f "$work/h2.log"
  out=$(timeout "$limit" h2load -D "$secs" --warm-up-time="$warm" -c"$conns" --rps="$per" "$@" \
          -d "$body" --log-file="$work/h2.log" "$url" 2>&1) || true
  { echo "== $label (target $rate/s)"; tail -9 <<<"$out"; } >>"$raw"
  local got; got=$(awk '/^finished in/ {r=$4; gsub(",","",r)} END {print int(r)}' <<<"$out")
  if [[ -s "$work/h2.log" ]]; then
    cut -f3 "$work/h2.log" | sort -n | awk -v g="$got" '{a[NR]=$1}
      function p(q) { i=int(q*(NR-1))+1; return a[i] }
      END {if (NR) printf "%d %d %d %d %d\n", p(.5), p(.9), p(.99), p(.999), g; else print "0 0 0 0 0"}'
  else
    echo "0 0 0 0 0"
  fi
}
# gload LABEL PORT INFLIGHT [grpc_load args...] -> "rps code0 code8"
gload() {
  local label=$1 port=$2 n=$3 ch=2 th=2 out; shift 3
  ((n < 2)) && { ch=1; th=1; }
  note grpc_load --target="127.0.0.1:$port" --inflight="$n" --channels="$ch" --threads="$th" --duration="$secs" --warmup="$warm" "$@"
  out=$(timeout "$limit" "$build"/bin/grpc_load --target="127.0.0.1:$port" --inflight="$n" \
          --channels="$ch" --threads="$th" --duration="$secs" --warmup="$warm" "$@" 2>&1) || true
  echo "== $label: $out" >>"$raw"
  awk '{for (i=1;i<=NF;i++) {split($i,kv,"="); v[kv[1]]=kv[2]}}
       END {printf "%d %d %d\n", v["rps"], v["code0"], v["code8"]}' <<<"$out"
}
# wrkrun LABEL URL CONNS [wrk args...] -> "rps non2xx"
wrkrun() {
  local label=$1 url=$2 n=$3 t=2 out; shift 3
  ((n < 2)) && t=1
  note wrk -t"$t" -c"$n" -d"${secs}s" --latency "$@" "$url"
  out=$(timeout "$limit" wrk -t"$t" -c"$n" -d"${secs}s" --latency "$@" "$url" 2>&1) || true
  { echo "== $label"; cat <<<"$out"; } >>"$raw"
  awk '/Requests\/sec:/ {r=$2} /Non-2xx or 3xx responses:/ {b=$NF} END {printf "%d %d\n", r, b}' <<<"$out"
}

declare -A R  # every figure by name
declare -A L  # open-loop latency rows: L[target,fraction] = "p50 p90 p99 p99.9 rps"

# --- 1. the empty completion-queue gRPC service ---------------------------------------------
log "empty gRPC service"
port=$(free_port)
comment "empty completion-queue gRPC service: $anchor_build/server --port=PORT --mode=async"
"$anchor_build/server" --port="$port" --mode=async 2>/dev/null & pid=$!
wait_port "$port"
anchor_url="http://127.0.0.1:$port/anchor.Echo/Complete"
R[empty_h2]=$(h2grpc "empty h2load -c2 -m64" "$anchor_url" "$work/anchor.bin" -c2 -m64 -t1)
for n in "${concs[@]}"; do
  read -r R[empty_c$n] _ _ < <(gload "empty grpc_load $n" "$port" "$n" --method=/anchor.Echo/Complete --request="@$work/anchor.bin")
done
for f in "${fractions[@]}"; do
  L[empty,$f]=$(h2open "empty open loop $f%" "$anchor_url" "$work/anchor.bin" \
                $((R[empty_h2] * f / 100)) 2 -m64 -t1 -H 'content-type: application/grpc' -H 'te: trailers')
done
stop

# --- 2. anyai-server, default durability -----------------------------------------------------
start_anyai() {  # $1 = durability; sets pid, grpc, http, admin, key_premium, key_free
  local cfg; cfg=$(anyai_config "$1")
  comment "anyai-server: ANYAI_ADMIN_TOKEN=bench $build/bin/anyai-server --config=<bench/bench-config.textproto, free plan 1 call per window, durability: $1, max_connections_per_address: 4096, max_concurrent_streams: 1024> --data_dir=TMP --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --admin_listen=127.0.0.1:0"
  : >"$work/ports"
  ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-server --config="$cfg" --data_dir="$work/data-$1" \
    --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 \
    >"$work/ports" 2>"$work/server-$1.log" & pid=$!
  for _ in $(seq 100); do grep -q '^admin listening' "$work/ports" 2>/dev/null && break; sleep 0.1; done
  grpc=$(sed -n 's/^grpc listening on //p' "$work/ports")
  http=$(sed -n 's/^http listening on //p' "$work/ports")
  admin=$(sed -n 's/^admin listening on //p' "$work/ports")
  [[ -n "$admin" ]] || { echo "anyai-server did not start:" >&2; cat "$work/server-$1.log" >&2; exit 1; }
  local a=(env ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-admin --server="$admin" keys create)
  key_premium=$("${a[@]}" --plan=premium --label=bench | grep '^sk-anyai-')
  key_free=$("${a[@]}" --plan=free --label=bench-free | grep '^sk-anyai-')
}
log "anyai-server, default durability"
start_anyai DURABILITY_PROCESS_CRASH
gport=${grpc##*:}
chat_url="http://$grpc/anyai.v1.AnyAI/CreateChatCompletion"
auth_p=(-H "authorization: Bearer $key_premium")
auth_f=(-H "authorization: Bearer $key_free")
R[ours_h2]=$(h2grpc "anyai h2load admitted" "$chat_url" "$work/chat.bin" -c2 -m64 -t1 "${auth_p[@]}")
R[ours_h2_refused]=$(h2grpc "anyai h2load refused" "$chat_url" "$work/chat.bin" -c2 -m64 -t1 "${auth_f[@]}")
# h2load counts gRPC statuses (in trailers) as HTTP 200: grpc_load shows what they were.
read -r R[ours_c64_refused] R[ref_ok] R[ref_429] < <(gload "anyai grpc_load 64 refused" "$gport" 64 \
  --request=anyai_chat --metadata="authorization:Bearer $key_free")
for n in "${concs[@]}"; do
  read -r R[ours_c$n] R[ok_c$n] R[exh_c$n] < <(gload "anyai grpc_load $n admitted" "$gport" "$n" \
    --request=anyai_chat --metadata="authorization:Bearer $key_premium")
done
for f in "${fractions[@]}"; do
  L[ours,$f]=$(h2open "anyai gRPC open loop $f%" "$chat_url" "$work/chat.bin" \
               $((R[ours_h2] * f / 100)) 2 -m64 -t1 -H 'content-type: application/grpc' -H 'te: trailers' "${auth_p[@]}")
done
# HTTP front
http_url="http://$http/v1/chat/completions"
for n in "${concs[@]}"; do
  read -r R[http_c$n] R[http_non2xx_c$n] < <(ANYAI_KEY=$key_premium wrkrun "anyai HTTP wrk $n admitted" \
    "$http_url" "$n" -s bench/wrk_chat.lua)
done
read -r R[http_refused] R[http_refused_non2xx] < <(ANYAI_KEY=$key_free wrkrun "anyai HTTP wrk 64 refused" \
  "$http_url" 64 -s bench/wrk_chat.lua)
h1=(--h1 -t2 -H 'content-type: application/json' "${auth_p[@]}")
R[http_h1]=$(h2closed "anyai HTTP h2load --h1 -c64 closed loop" "$http_url" "$work/chat.json" -c64 "${h1[@]}")
for f in "${fractions[@]}"; do
  L[http,$f]=$(h2open "anyai HTTP open loop $f%" "$http_url" "$work/chat.json" \
               $((R[http_h1] * f / 100)) 64 "${h1[@]}")
done
# anyai's own answers (the free key's plan is used up by now), for the anchors to give back:
# the empty service (its --metadata file) and nginx (its ANSWER) answering exactly as anyai does.
py=/usr/bin/python3; [[ -x $py ]] || py=python3
for kind in admitted refused; do
  k=$key_premium; [[ $kind == refused ]] && k=$key_free
  no_grpc_proxy=127.0.0.1 "$py" bench/grpc_reply_like.py --target="$grpc" --body="$work/chat.bin" \
    --metadata="authorization:Bearer $k" --out="$work/$kind.reply"
  curl -si -H 'Content-Type: application/json' -H "Authorization: Bearer $k" \
    --data-binary @"$work/chat.json" "$http_url" >"$work/$kind.http"
done
stop

# --- 2b. the anchors answering as anyai does ---------------------------------------------------
log "empty gRPC service answering as anyai"
for kind in admitted refused; do
  port=$(free_port)
  comment "empty service answering as anyai ($kind): $anchor_build/server --port=PORT --mode=async --metadata=TMP/$kind.reply (bench/grpc_reply_like.py)"
  "$anchor_build/server" --port="$port" --mode=async --metadata="$work/$kind.reply" 2>/dev/null & pid=$!
  wait_port "$port"
  R[empty_like_$kind]=$(h2grpc "empty answering as anyai $kind, h2load -c2 -m64" \
    "http://127.0.0.1:$port/anchor.Echo/Complete" "$work/anchor.bin" -c2 -m64 -t1)
  stop
done
log "nginx answering as anyai"
for kind in admitted refused; do
  comment "nginx answering as anyai ($kind): ANSWER=TMP/$kind.http bash $anchors/nginx-limit-req.sh 64 $secs <wrk below>"
  R[nginx_like_$kind]=$(ANSWER="$work/$kind.http" bash "$anchors/nginx-limit-req.sh" 64 "$secs" \
    bash -c 'wrk -t2 -c64 -d"${0}s" -s bench/wrk_chat.lua "$ANCHOR_URL/v1/chat/completions"' "$secs" |
    tee -a "$raw" | awk '/Requests\/sec:/ {print int($2)}')
  note wrk -t2 -c64 -d"${secs}s" -s bench/wrk_chat.lua "http://NGINX/v1/chat/completions"
done

# --- 3. anyai-server in the other durability modes: fsync, and usage in memory only ----------
# admitted_in MODE NAME: R[NAME_h2] (h2load -c2 -m64) and R[NAME_c64] (grpc_load 64), admitted.
admitted_in() {
  log "anyai-server, $2"
  start_anyai "$1"
  local gport=${grpc##*:} url="http://$grpc/anyai.v1.AnyAI/CreateChatCompletion"
  R[$2_h2]=$(h2grpc "anyai $2 h2load admitted" "$url" "$work/chat.bin" -c2 -m64 -t1 \
               -H "authorization: Bearer $key_premium")
  read -r R[$2_c64] _ _ < <(gload "anyai $2 grpc_load 64" "$gport" 64 \
    --request=anyai_chat --metadata="authorization:Bearer $key_premium")
  stop
}
admitted_in DURABILITY_FSYNC fsync
admitted_in DURABILITY_MEMORY memory

# --- 4. nginx limit_req + static body ----------------------------------------------------------
log "nginx"
nginx_part() {  # runs while nginx serves at $ANCHOR_URL; prints "name value" lines
  local n f
  for n in "${concs[@]}"; do echo "nginx_c$n $(wrkrun "nginx wrk $n" "$ANCHOR_URL/v1/models" "$n" | cut -d' ' -f1)"; done
  local nh1; nh1=$(h2closed "nginx h2load --h1 -c64 closed loop" "$ANCHOR_URL/v1/models" "$work/chat.json" -c64 --h1 -t2)
  echo "nginx_h1 $nh1"
  for f in "${fractions[@]}"; do
    echo "Lnginx_$f $(h2open "nginx open loop $f%" "$ANCHOR_URL/v1/models" "$work/chat.json" $((nh1 * f / 100)) 64 --h1 -t2)"
  done
}
comment "nginx: bash $anchors/nginx-limit-req.sh 64 $secs <commands below> (POST bodies are ignored by its 'return 200')"
export -f nginx_part h2closed h2open wrkrun note comment
export secs warm limit work raw cmds key_premium="" key_free=""
export CONCS="${concs[*]}" FRACTIONS="${fractions[*]}"
while read -r name a b c d e; do
  if [[ $name == Lnginx_* ]]; then L[nginx,${name#Lnginx_}]="$a $b $c $d $e"; else R[$name]=$a; fi
done < <(bash "$anchors/nginx-limit-req.sh" 64 "$secs" bash -c \
           'concs=($CONCS); fractions=($FRACTIONS); nginx_part')

# --- 5. Redis ZSET sliding window ----------------------------------------------------------------
log "redis"
requests=$((secs * 40000))
comment "redis: bash $anchors/redis-sliding-window.sh 64 $requests"
redis_out=$(timeout $((limit * 3)) bash "$anchors/redis-sliding-window.sh" 64 "$requests" 2>&1) || true
{ echo "== redis"; cat <<<"$redis_out"; } >>"$raw"
R[redis_zset]=$(awk -F'","' '/ZSET/ {z=1; next} /INCR/ {z=0} z && NR>1 && $2+0>0 {print int($2); exit}' <<<"$redis_out")
R[redis_incr]=$(awk -F'","' '/== Redis INCR/ {z=1; next} z && $2+0>0 {print int($2); exit}' <<<"$redis_out")

# --- 6. engine (bench/run_engine_bench.sh) -------------------------------------------------------
engine_md=""
if [[ $engine == 1 ]]; then
  log "engine"
  comment "engine: BUILD_DIR=$build bench/run_engine_bench.sh 0.5 1"
  engine_md=$(BUILD_DIR=$build timeout 600 bash bench/run_engine_bench.sh 0.5 1 2>&1) || engine_md="(engine run failed: $engine_md)"
fi
log "writing $results and $plots"

# --- tables -------------------------------------------------------------------------------------
ratio() { awk -v x="${1:-0}" -v y="${2:-0}" 'BEGIN{if (y>0) printf "%.2f×", x/y; else print "n/a"}'; }
k() { awk -v x="${1:-0}" 'BEGIN{printf "%.1fk/s", x/1000}'; }
gen="$work/gen.md"
{
  echo "<!-- run_all: begin (generated by bench/run_all.sh; everything down to run_all: end is replaced on each run) -->"
  echo "## Where it stands: \`bench/run_all.sh $secs\` ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD))"
  echo
  echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r),"
  echo "load average before the run $(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/') (shared machine: only the ratios, each"
  echo "within this run, are meant to be compared). Loopback; driver and server share the cores."
  echo "${secs} s measured + ${warm} s warm-up per point, one repetition."
  echo
  echo "| measure | ours | anchor in the same run | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| gRPC \`CreateChatCompletion\`, admitted (h2load -c2 -m64) | $(k "${R[ours_h2]}") | empty completion-queue gRPC service $(k "${R[empty_h2]}") | $(ratio "${R[ours_h2]}" "${R[empty_h2]}") | ≥ 0.8× |"
  echo "| gRPC \`CreateChatCompletion\`, refused (429) (h2load -c2 -m64) | $(k "${R[ours_h2_refused]}") | same | $(ratio "${R[ours_h2_refused]}" "${R[empty_h2]}") | ≥ 0.9× |"
  echo "| HTTP \`POST /v1/chat/completions\`, admitted (wrk -t2 -c64) | $(k "${R[http_c64]}") | nginx \`limit_req\` + static body $(k "${R[nginx_c64]}") | $(ratio "${R[http_c64]}" "${R[nginx_c64]}") | ≥ 0.6× |"
  echo "| HTTP chat, refused (429) (wrk -t2 -c64) | $(k "${R[http_refused]}") | same | $(ratio "${R[http_refused]}" "${R[nginx_c64]}") | ≥ 0.6× |"
  echo "| gRPC admitted, bench/grpc_load 64 in flight (as \`bench/run_grpc_bench.sh $secs 64 1\`) | $(k "${R[ours_c64]}") | empty service, same driver $(k "${R[empty_c64]}") | $(ratio "${R[ours_c64]}" "${R[empty_c64]}") | |"
  echo "| gRPC refused, bench/grpc_load 64 in flight | $(k "${R[ours_c64_refused]}") | same $(k "${R[empty_c64]}") | $(ratio "${R[ours_c64_refused]}" "${R[empty_c64]}") | |"
  echo "| Redis ZSET sliding-window Lua (decision only), 64 clients | — | $(k "${R[redis_zset]}") | our full gRPC call at 64 in flight (grpc_load): admitted $(ratio "${R[ours_c64]}" "${R[redis_zset]}"), refused $(ratio "${R[ours_c64_refused]}" "${R[redis_zset]}"); h2load admitted $(ratio "${R[ours_h2]}" "${R[redis_zset]}") | ≥ 2× |"
  echo "| default durability (\`DURABILITY_PROCESS_CRASH\`) vs none (\`DURABILITY_MEMORY\`), h2load -c2 -m64 | $(k "${R[ours_h2]}") | memory $(k "${R[memory_h2]}") | $(ratio "${R[ours_h2]}" "${R[memory_h2]}") | ≥ 0.85× |"
  echo "| default durability vs none, grpc_load 64 in flight | $(k "${R[ours_c64]}") | memory $(k "${R[memory_c64]}") | $(ratio "${R[ours_c64]}" "${R[memory_c64]}") | ≥ 0.85× |"
  echo "| fsync durability vs default, h2load -c2 -m64 | $(k "${R[fsync_h2]}") | default $(k "${R[ours_h2]}") | $(ratio "${R[fsync_h2]}" "${R[ours_h2]}") | ≥ 0.5× |"
  echo "| fsync durability vs default, grpc_load 64 in flight | $(k "${R[fsync_c64]}") | default $(k "${R[ours_c64]}") | $(ratio "${R[fsync_c64]}" "${R[ours_c64]}") | ≥ 0.5× |"
  echo
  echo "The same calls against anchors that answer exactly what anyai answered (copied from live calls: the"
  echo "empty service with anyai's metadata and, refused, its status and google.rpc details; nginx with anyai's"
  echo "headers and body, driven with the same POST): what the framework itself charges for anyai's answers."
  echo
  echo "| measure | ours | anchor answering as anyai, same run | ratio | plain anchor / anchor answering as anyai |"
  echo "|---|---|---|---|---|"
  echo "| gRPC admitted (h2load -c2 -m64) | $(k "${R[ours_h2]}") | empty service + anyai's $(grep -c . "$work/admitted.reply") metadata entries $(k "${R[empty_like_admitted]}") | $(ratio "${R[ours_h2]}" "${R[empty_like_admitted]}") | $(ratio "${R[empty_h2]}" "${R[empty_like_admitted]}") |"
  echo "| gRPC refused (h2load -c2 -m64) | $(k "${R[ours_h2_refused]}") | empty service refusing as anyai ($(grep -c '^trailing' "$work/refused.reply") trailers, RESOURCE_EXHAUSTED, $(awk '/^status/ {n = length($4) / 2} END {print n + 0}' "$work/refused.reply") bytes of details) $(k "${R[empty_like_refused]}") | $(ratio "${R[ours_h2_refused]}" "${R[empty_like_refused]}") | $(ratio "${R[empty_h2]}" "${R[empty_like_refused]}") |"
  echo "| HTTP admitted (wrk -t2 -c64, POST) | $(k "${R[http_c64]}") | nginx giving anyai's answer ($(sed -n 's/^Content-Length: //Ip' "$work/admitted.http" | tr -d '\r')-byte body) $(k "${R[nginx_like_admitted]}") | $(ratio "${R[http_c64]}" "${R[nginx_like_admitted]}") | $(ratio "${R[nginx_c64]}" "${R[nginx_like_admitted]}") |"
  echo "| HTTP refused (wrk -t2 -c64, POST) | $(k "${R[http_refused]}") | nginx giving anyai's 429 ($(sed -n 's/^Content-Length: //Ip' "$work/refused.http" | tr -d '\r')-byte body) $(k "${R[nginx_like_refused]}") | $(ratio "${R[http_refused]}" "${R[nginx_like_refused]}") | $(ratio "${R[nginx_c64]}" "${R[nginx_like_refused]}") |"
  echo
  echo "What the calls were (so that \"admitted\" and \"refused\" mean what they say): grpc_load at 64 in"
  echo "flight with the premium key: ${R[ok_c64]} OK, ${R[exh_c64]} RESOURCE_EXHAUSTED; with the free key:"
  echo "${R[ref_ok]} OK, ${R[ref_429]} RESOURCE_EXHAUSTED (h2load counts a gRPC status as HTTP 200 either way)."
  echo "wrk non-2xx responses: admitted run ${R[http_non2xx_c64]} of $((R[http_c64] * secs)) or so, refused run ${R[http_refused_non2xx]}."
  echo "Redis INCR (fixed window, not strict) in the same run: $(k "${R[redis_incr]}")."
  echo
  echo "### Throughput against concurrency (closed loop; bench/plots/throughput.png)"
  echo
  echo "gRPC by bench/grpc_load (1 connection at 1 in flight, else 2), HTTP by wrk (-t1 at 1, else -t2, one"
  echo "call in flight per connection). Calls per second:"
  echo
  echo "| in flight | empty gRPC service | anyai gRPC (admitted) | gRPC ratio | nginx limit_req | anyai HTTP (admitted) | HTTP ratio |"
  echo "|---|---|---|---|---|---|---|"
  for n in "${concs[@]}"; do
    echo "| $n | ${R[empty_c$n]} | ${R[ours_c$n]} | $(ratio "${R[ours_c$n]}" "${R[empty_c$n]}") | ${R[nginx_c$n]} | ${R[http_c$n]} | $(ratio "${R[http_c$n]}" "${R[nginx_c$n]}") |"
  done
  echo
  echo "### Latency in open loop (bench/plots/latency.png)"
  echo
  echo "h2load at a fixed rate (\`--rps\` per connection) for ${secs} s, at 25/50/75% of each target's own"
  echo "closed-loop peak by the same driver: gRPC h2load -c2 -m64 (empty ${R[empty_h2]}/s, anyai ${R[ours_h2]}/s), HTTP"
  echo "h2load --h1 -c64 (nginx ${R[nginx_h1]}/s, anyai ${R[http_h1]}/s). Percentiles from h2load's per-request log, µs."
  echo "Target: p99 ≤ 1000 µs at half the peak, both fronts."
  echo
  echo "| target | % of peak | offered/s | achieved/s | p50 µs | p90 µs | p99 µs | p99.9 µs |"
  echo "|---|---|---|---|---|---|---|---|"
  for t in empty ours nginx http; do
    case $t in empty) name="empty gRPC service"; peak=${R[empty_h2]} ;; ours) name="anyai gRPC"; peak=${R[ours_h2]} ;;
               nginx) name="nginx limit_req"; peak=${R[nginx_h1]} ;; http) name="anyai HTTP"; peak=${R[http_h1]} ;; esac
    for f in "${fractions[@]}"; do
      read -r p50 p90 p99 p999 got <<<"${L[$t,$f]:-0 0 0 0 0}"
      echo "| $name | $f% | $((peak * f / 100)) | $got | $p50 | $p90 | $p99 | $p999 |"
    done
  done
  if [[ -n "$engine_md" ]]; then
    echo
    echo "### Engine (\`BUILD_DIR=$build bench/run_engine_bench.sh 0.5 1\`)"
    echo
    echo "$engine_md"
  fi
  echo
  echo "### The exact commands of this run"
  echo
  echo "Ports and TMP are the run's own; LOG is h2load's per-request log; BODY is the anchor client's \`--dump-grpc-body\` file for the"
  echo "empty service, \`grpc_load --request=anyai_chat --dump_grpc_body\` for anyai gRPC, and the JSON"
  echo "chat body of bench/wrk_chat.lua for HTTP."
  echo
  echo '```'
  awk '!seen[$0]++' "$cmds"
  echo '```'
  echo
  echo "<details><summary>Drivers' own output</summary>"
  echo
  echo '```'
  sed "s|$work|TMP|g" "$raw"
  echo '```'
  echo "</details>"
  echo "<!-- run_all: end -->"
} >"$gen"

# Keep the history: replace the previous generated section, or insert the new one after the
# title and its first paragraph.
python3 - "$results" "$gen" <<'PY'
import sys, os, re
path, gen = sys.argv[1], open(sys.argv[2]).read()
old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
m = re.search(r"<!-- run_all: begin.*?<!-- run_all: end -->\n?", old, re.S)
if m:
    new = old[:m.start()] + gen + old[m.end():]
else:
    title, _, rest = old.partition("\n")
    intro, sep, history = rest.partition("\n## ")
    new = (title + "\n" + intro.rstrip("\n") + "\n\n" + gen + "\n# History: earlier runs and each change's before/after\n"
           + (("\n## " + history) if sep else ""))
open(path, "w").write(new)
PY

# --- plots (the data stay beside them: bench/plot.sh redraws them) ------------------------------
mkdir -p "$plots"
for n in "${concs[@]}"; do
  echo "$n ${R[empty_c$n]} ${R[ours_c$n]} ${R[nginx_c$n]} ${R[http_c$n]}"
done >"$plots/throughput.dat"
i=0
for t in empty ours nginx http; do
  case $t in empty) name="empty gRPC" ;; ours) name="anyai gRPC" ;; nginx) name="nginx" ;; http) name="anyai HTTP" ;; esac
  for f in "${fractions[@]}"; do
    read -r p50 p90 p99 p999 _ <<<"${L[$t,$f]:-0 0 0 0 0}"
    echo "$i \"$name $f%\" $p50 $p90 $p99 $p999"
    i=$((i + 1))
  done
  i=$((i + 1))
done >"$plots/latency.dat"
bash bench/plot.sh "$plots" "($(nproc) shared cores, ${secs} s per point)"
log "done"
sed -n '/run_all: begin/,/### Throughput/p' "$results" | head -30
