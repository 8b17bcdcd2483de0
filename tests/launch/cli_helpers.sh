# Shared by the CLI test scripts (sourced): a scratch folder, a failure line, and expect_exit.
# Usage, after the script has read its arguments: prepare_workdir DIR
set -euo pipefail
py=/usr/bin/python3

# prepare_workdir DIR: an empty DIR, entered.
prepare_workdir() {
  rm -rf "$1" && mkdir -p "$1" && cd "$1"
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_exit CODE STDERR_FILE COMMAND...: runs the command (stdout to STDERR_FILE.out) and
# checks its exit status; on a mismatch prints both streams.
expect_exit() {
  local want=$1 err=$2 rc=0
  shift 2
  "$@" >"$err.out" 2>"$err" || rc=$?
  [[ $rc == "$want" ]] || { cat "$err" "$err.out"; fail "'$*' exited $rc, expected $want"; }
}
