#!/usr/bin/env bash
# Runs a command with its files limited to KB kilobytes (ulimit -f), e.g. as each rank of mpirun:
#   mpirun -np 2 file_limit.sh 40 vitruvian phantom ...
# Usage: file_limit.sh KB COMMAND...
set -euo pipefail
ulimit -f "$1"
shift
exec "$@"
