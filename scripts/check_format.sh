#!/usr/bin/env bash
# Checks that every C++ file git tracks is formatted as .clang-format says (Google style, 100
# columns), with Debian's clang-format-16. Lists the files that are not and exits 1; fix them with
#   clang-format-16 -i $(git ls-files '*.cc' '*.h')
set -uo pipefail
cd "$(dirname "$0")/.."
format=${CLANG_FORMAT:-clang-format-16}
command -v "$format" >/dev/null || { echo "$format not found: run scripts/install-deps.sh --tests" >&2; exit 1; }
bad=()
while IFS= read -r f; do
  "$format" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.cc' '*.h')
if ((${#bad[@]})); then
  printf '%s\n' "${bad[@]}"
  echo "${#bad[@]} file(s) not formatted: $format -i <file>" >&2
  exit 1
fi
echo "every C++ file is formatted"
