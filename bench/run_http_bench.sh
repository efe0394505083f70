#!/usr/bin/env bash
# End-to-end HTTP benchmark (SPEC §11): requests per second and latency of anyai-server's
# OpenAI-compatible front against nginx `limit_req` returning a static body
# (bench/anchors/nginx-limit-req.sh), both driven by wrk -t2 on loopback in one run.
# anyai-server is measured on GET /v1/models (with the premium key, metered by the `meta`
# class: the front's own cost), on POST /v1/chat/completions with that key (auth + validation
# + admission persisted to RocksDB + builtin answer) and with a free key whose plan allows one
# call per window (every call after the first refused: 429, nothing persisted). nginx runs
# before and after anyai-server; each ratio is against the mean of the two (the machine is
# shared, so its speed drifts within a run). Prints a Markdown table, then the non-2xx counts
# (so that "admitted" and "refused" mean what they say).
# Usage: bench/run_http_bench.sh [seconds=10] [connections=64]
# Env: ANCHORS (default bench/anchors), BUILD_DIR (default build), NO_BUILD=1 (use BUILD_DIR's
# binaries as they are), DURABILITY (default DURABILITY_PROCESS_CRASH).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
anchors=${ANCHORS:-bench/anchors}
build=${BUILD_DIR:-build}
durability=${DURABILITY:-DURABILITY_PROCESS_CRASH}
if [[ -z "${NO_BUILD:-}" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target anyai-server anyai-admin >/dev/null
fi
source bench/bench_lib.sh

summary() {  # wrk --latency output on stdin -> "rps p50 p99 non2xx"
  awk 'BEGIN {bad=0}
       /Requests\/sec:/ {rps=$2}
       /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
       /Non-2xx or 3xx responses:/ {bad=$NF}
       END {print rps, p50, p99, bad}'
}

anchor1=$(bash "$anchors/nginx-limit-req.sh" "$conns" "$secs" | summary)

# bench-config (limits no run reaches) with the free plan cut to 1 call per window, and the
# per-address connection cap above any connection count used here.
cfg="$work/bench.textproto"
awk '/^plans \{/ {free=0} /name: "free"/ {free=1}
     free && /max_requests:/ {sub(/max_requests: [0-9]+/, "max_requests: 1")} {print}' \
  bench/bench-config.textproto >"$cfg"
printf 'durability: %s\nmax_connections_per_address: 4096\n' "$durability" >>"$cfg"
ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-server --config="$cfg" --data_dir="$work/data" \
  --grpc_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --admin_listen=127.0.0.1:0 \
  >"$work/ports" 2>"$work/server.log" & pid=$!
for _ in $(seq 100); do grep -q '^admin listening' "$work/ports" 2>/dev/null && break; sleep 0.1; done
http=$(sed -n 's/^http listening on //p' "$work/ports")
admin=$(sed -n 's/^admin listening on //p' "$work/ports")
[[ -n "$admin" ]] || { echo "anyai-server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
create_key() {
  ANYAI_ADMIN_TOKEN=bench "$build"/bin/anyai-admin --server="$admin" keys create --plan="$1" \
    --label="bench-$1" | grep '^sk-anyai-'
}
key=$(create_key premium)
key_free=$(create_key free)
models=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $key" \
         "http://$http/v1/models" | summary)
chat=$(ANYAI_KEY=$key wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/wrk_chat.lua \
       "http://$http/v1/chat/completions" | summary)
refused=$(ANYAI_KEY=$key_free wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/wrk_chat.lua \
          "http://$http/v1/chat/completions" | summary)
# anyai's own answers to that POST, for nginx to give back byte for byte (its ANSWER).
chat_body=$(sed -n "s/^wrk.body = '\(.*\)' ..$/\1/p; s/^ *'\(.*\)'$/\1/p" bench/wrk_chat.lua | tr -d '\n')
for kind in admitted refused; do
  k=$key; [[ $kind == refused ]] && k=$key_free
  curl -si -H 'Content-Type: application/json' -H "Authorization: Bearer $k" -d "$chat_body" \
    "http://$http/v1/chat/completions" >"$work/$kind.http"
done
stop
same_admitted=$(ANSWER="$work/admitted.http" WRK_SCRIPT=bench/wrk_chat.lua \
  bash "$anchors/nginx-limit-req.sh" "$conns" "$secs" | summary)
same_refused=$(ANSWER="$work/refused.http" WRK_SCRIPT=bench/wrk_chat.lua \
  bash "$anchors/nginx-limit-req.sh" "$conns" "$secs" | summary)

anchor2=$(bash "$anchors/nginx-limit-req.sh" "$conns" "$secs" | summary)

read -r a1_rps a_p50 a_p99 _ <<<"$anchor1"
read -r a2_rps _ _ _ <<<"$anchor2"
a_rps=$(awk -v x="$a1_rps" -v y="$a2_rps" 'BEGIN{printf "%.2f", (x+y)/2}')
echo "| target (wrk -t2 -c$conns -d${secs}s) | requests/s | vs nginx limit_req | p50 | p99 |"
echo "|---|---|---|---|---|"
echo "| nginx 1.22 limit_req + static JSON (anchor; mean of $a1_rps before, $a2_rps after) | $a_rps | 1.00 | $a_p50 | $a_p99 |"
for row in "GET /v1/models (key, 8 KB JSON, meta class)|$models" \
           "POST /v1/chat/completions (key, admitted, persisted)|$chat" \
           "POST /v1/chat/completions (free key, refused: 429)|$refused"; do
  name=${row%%|*}; read -r rps p50 p99 _ <<<"${row#*|}"
  printf '| anyai-server %s | %s | %.2f | %s | %s |\n' "$name" "$rps" \
    "$(awk -v x="$rps" -v y="$a_rps" 'BEGIN{print x/y}')" "$p50" "$p99"
done
echo
# The same answers from nginx: what HTTP itself costs at anyai's answer size.
echo "| answering the same POST with anyai's own answer (headers and body) | nginx requests/s | anyai requests/s | anyai / nginx |"
echo "|---|---|---|---|"
for row in "admitted ($(sed -n 's/^Content-Length: //Ip' "$work/admitted.http" | tr -d '\r')-byte body)|$same_admitted|$chat" \
           "refused: 429 ($(sed -n 's/^Content-Length: //Ip' "$work/refused.http" | tr -d '\r')-byte body)|$same_refused|$refused"; do
  IFS='|' read -r name n a <<<"$row"
  read -r n_rps _ <<<"$n"; read -r a_rps _ <<<"$a"
  printf '| %s | %s | %s | %.2f |\n' "$name" "$n_rps" "$a_rps" "$(awk -v x="$a_rps" -v y="$n_rps" 'BEGIN{print x/y}')"
done
echo
echo "non-2xx responses: models ${models##* }, admitted ${chat##* }, refused ${refused##* } (durability $durability)"
