#!/usr/bin/env bash
# One fuzz_<name> ctest (fuzz/CMakeLists.txt): replays every input in REGRESSIONS (crashes
# found before, each of which must now pass), then fuzzes for SECONDS over a fresh copy of
# CORPUS in WORK (the checked-in seeds never change). Fails on any crash, leak, sanitizer
# report or timeout; the input that failed is left in WORK as crash-*/leak-*/timeout-*, to be
# fixed and added to regressions/ (and corpus/).
# Usage: run_fuzzer.sh FUZZER CORPUS REGRESSIONS WORK SECONDS [DICT]
set -euo pipefail
fuzzer=$1 corpus=$2 regressions=$3 work=$4 seconds=$5 dict=${6:-}

limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048)
# Symbolized stack traces in reports (Debian's llvm-symbolizer, when installed).
if [[ -z ${ASAN_SYMBOLIZER_PATH:-} ]] && command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi
rm -rf "$work"
mkdir -p "$work/corpus"
cp -r "$corpus"/. "$work/corpus/"

shopt -s nullglob
inputs=("$regressions"/*)
if ((${#inputs[@]})); then
  echo "=== replaying ${#inputs[@]} regression input(s) from $regressions"
  "$fuzzer" "${limits[@]}" "${inputs[@]}"
fi

options=("${limits[@]}" -max_total_time="$seconds" -print_final_stats=1
         -artifact_prefix="$work/" -close_fd_mask=1)
[[ -n $dict ]] && options+=(-dict="$dict")
echo "=== fuzzing ${seconds}s over a copy of $corpus"
"$fuzzer" "${options[@]}" "$work/corpus"
