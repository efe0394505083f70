#!/usr/bin/env bash
# The run command (README): installs what is missing, builds Release into build/ and runs the
# server with its built-in defaults (gRPC on :50051, HTTP on :8080, data in ./data).
# Extra arguments go to the server, e.g. scripts/run.sh --http_listen=127.0.0.1:9090
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so that another clone (CI's) hits the same cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target anyai-server anyai-admin
exec build/bin/anyai-server "$@"
