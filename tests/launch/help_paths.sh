#!/usr/bin/env bash
# Every repository path that `vitruvian --help` and `vitruvian <verb> --help` name exists: a
# word like launch/configs/x.yaml or docs/X.md whose first folder is a folder of the repository.
# Usage: help_paths.sh VITRUVIAN REPOSITORY_ROOT
set -euo pipefail
vit=$1
root=$2
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"

help=$("$vit" --help)
# The verbs are the words that start the lines after "Subcommands:".
verbs=$(awk 'tolower($0) ~ /^subcommands:/ {on = 1; next} on && /^  [a-z]/ {print $1}' <<<"$help")
[[ -n $verbs ]] || fail "no verbs found in 'vitruvian --help'"
for verb in $verbs; do help+=$'\n'$("$vit" "$verb" --help); done

checked=0
while read -r path; do
  top=${path%%/*}
  [[ -d $root/$top ]] || continue  # RUN_DIR/report.html, DIR/<study>.png: not repository paths
  [[ -e $root/$path ]] || fail "the help names $path, which is not in the repository"
  checked=$((checked + 1))
done < <(grep -oE '[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+' <<<"$help" | sed 's/[.,;:]*$//' | sort -u)
((checked >= 3)) || fail "only $checked repository paths found in the help texts; is the pattern still right?"
echo "help paths: $checked repository paths named by $(wc -w <<<"$verbs") verbs exist"
