#!/usr/bin/env bash
# Installs what the gateway needs on Debian 12, idempotently: only missing packages are
# installed, `apt-get update` runs at most once, and npm packages for the end-to-end tests are
# installed into tests/e2e/node_modules when that folder has a package.json.
# Usage: scripts/install-deps.sh [--tests]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake ninja-build ccache pkg-config git ca-certificates
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc grpc-proto
  libabsl-dev librocksdb-dev prometheus-cpp-dev zlib1g-dev
  libboost-dev libcurl4-openssl-dev nlohmann-json3-dev libssl-dev libpng-dev
  libpq-dev  # cluster mode's PostgreSQL key registry and hand-off state (storage/postgres_*)
  libgoogle-perftools-dev  # tcmalloc, for -DANYAI_TCMALLOC=ON (server/app/CMakeLists.txt)
  # The build configures its tests and benchmarks too, so these are needed to build at all.
  libgtest-dev libgmock-dev libbenchmark-dev
)
if [[ "${1:-}" == "--tests" ]]; then
  packages+=(
    python3 python3-grpcio python3-protobuf
    nodejs npm nginx-core prometheus wrk curl procps python3-yaml clang-format-16
    chromium  # e2e_usage_page: the /check page in headless Chromium
    postgresql  # storage_postgres, the cluster tests: a throwaway server (postgres_instance.py)
    haproxy  # cluster_test: deploy/haproxy/anyai.cfg in front of 3 replicas
    # Hardening tests: an HTTP/2 client that can reset streams, self-signed certificates, and
    # the clang build (libFuzzer targets, -Wthread-safety).
    python3-h2 openssl clang-16 libclang-rt-16-dev
  )
fi
optional=()
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(nghttp2-client wrk nginx-core redis-server redis-tools gnuplot-nox python3 curl procps
             haproxy postgresql python3-grpcio python3-protobuf)  # bench/cluster_bench.sh
  optional+=(linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node/npm may come from elsewhere than Debian (a newer Node is fine).
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi
sudo_cmd=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then sudo_cmd=(sudo); fi
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]] && ((${#sudo_cmd[@]} == 0)); then
    echo "run as root (or install sudo) to install: ${missing[*]}" >&2; exit 1
  fi
  echo "installing: ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for p in "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && continue
  [[ $(id -u) -ne 0 ]] && ((${#sudo_cmd[@]} == 0)) && { echo "optional package $p not installed (needs root)" >&2; continue; }
  # Optional: a failure (no such package on this release or architecture) is not fatal.
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$p" ||
    echo "optional package $p not installed (profiles need it)" >&2
done

if [[ "${1:-}" == "--tests" && -f tests/e2e/package.json ]]; then
  if [[ ! -d tests/e2e/node_modules ]] || [[ tests/e2e/package.json -nt tests/e2e/node_modules ]] ||
     [[ tests/e2e/package-lock.json -nt tests/e2e/node_modules ]]; then
    (cd tests/e2e && npm "$([[ -f package-lock.json ]] && echo ci || echo install)" --no-audit --no-fund --loglevel=error)
    touch tests/e2e/node_modules
  fi
fi
