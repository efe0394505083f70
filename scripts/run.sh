#!/usr/bin/env bash
# The run command (README): installs what is missing, builds Release into build/ and runs the
# server, by default with its built-in defaults (gRPC on :50051, HTTP on :8080, data in ./data).
#
#   scripts/run.sh                                         # the built-in defaults
#   scripts/run.sh deploy/config/token-limits.textproto    # a config file: a bare path first
#   scripts/run.sh --config=deploy/config/token-limits.textproto --http_listen=127.0.0.1:9090
#
# A first argument that does not start with '-' is a config file, passed as --config=FILE.
# Every other argument goes to the server as is. A relative config path (bare or --config=) is
# taken from the directory you run the script in, although the server runs from the checkout.
set -euo pipefail
caller_dir=$PWD
args=()
if [[ $# -gt 0 && $1 != -* ]]; then
  args+=("--config=$1")
  shift
fi
args+=("$@")
for i in "${!args[@]}"; do
  if [[ ${args[$i]} == --config=* ]]; then
    path=${args[$i]#--config=}
    if [[ -n $path && $path != /* ]]; then args[$i]="--config=$caller_dir/$path"; fi
  fi
done
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so that another clone (CI's) hits the same cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target anyai-server anyai-admin
exec build/bin/anyai-server "${args[@]}"
