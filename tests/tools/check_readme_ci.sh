#!/usr/bin/env bash
# The last command of .ci/run must be the README's test command (the second command block line).
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
ci_command=$(grep -v '^\s*#' "$root/.ci/run" | grep -v '^\s*$' | tail -n 1)
readme_command=$(grep -A1 '^# 2\. ' "$root/README.md" | tail -n 1)
if [[ "$ci_command" != "$readme_command" ]]; then
  printf 'README test command and .ci/run differ:\n  README: %s\n  CI:     %s\n' "$readme_command" "$ci_command"
  exit 1
fi
echo "README test command == .ci/run: $ci_command"
