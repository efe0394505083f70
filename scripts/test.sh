#!/usr/bin/env bash
# The test command (README): installs what is missing, then builds and runs every test in
# four configurations, each in its own build dir with ccache:
#   build/       Release            all tests, including the end-to-end ones with real clients
#   build-asan/  ASan + UBSan       all tests
#   build-tsan/  ThreadSanitizer    the quota engine's tests (its concurrency tests above all)
#   build-fuzz/  clang-16           the libFuzzer targets (fuzz/), each run for a bounded time
#                                   over its seeds after its regressions; the clang build is
#                                   also the -Wthread-safety check of every annotated lock
# Ends with one line that sums the ctest runs: "total: N passed, M failed".
# Usage: scripts/test.sh [release|asan|tsan|fuzz ...]   (default: all four)
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --tests || exit 1

export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so that another clone (CI's) hits the same cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

configs=("$@")
((${#configs[@]})) || configs=(release asan tsan fuzz)
passed=0 failed=0 status=0
for config in "${configs[@]}"; do
  case "$config" in
    release) dir=build; args=(-DCMAKE_BUILD_TYPE=Release) ;;
    asan) dir=build-asan; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYAI_SANITIZE=address) ;;
    tsan) dir=build-tsan
          args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DANYAI_SANITIZE=thread -DANYAI_ENGINE_ONLY=ON) ;;
    fuzz) dir=build-fuzz
          args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-16
                -DCMAKE_CXX_COMPILER=clang++-16 -DANYAI_FUZZ=ON) ;;
    *) echo "unknown configuration: $config" >&2; exit 2 ;;
  esac
  echo "=== $config: configure and build ($dir)"
  start=$(date +%s)
  # A configuration that does not build counts as one failure in the total.
  if ! cmake -S . -B "$dir" -G Ninja "${args[@]}" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"; status=1; failed=$((failed + 1)); continue
  fi
  if ! cmake --build "$dir"; then status=1; failed=$((failed + 1)); continue; fi
  echo "=== $config: built in $(( $(date +%s) - start )) s; ctest"
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --timeout 900 -j2 2>&1 | tee "$log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  summary=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
  if [[ $summary =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
    failed=$((failed + BASH_REMATCH[1]))
    passed=$((passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
  else
    status=1
    failed=$((failed + 1))  # ctest printed no summary: count the run as a failure
  fi
  rm -f "$log"
done
echo "total: $passed passed, $failed failed"
exit $status
