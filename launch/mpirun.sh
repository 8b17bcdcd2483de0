#!/usr/bin/env bash
# Local launcher: mpirun with the settings a workstation or CI box needs.
#   launch/mpirun.sh -np 4 build/bin/vitruvian info
# Adds --allow-run-as-root when run as root, --oversubscribe (and yielding idle ranks) when there
# are more ranks than cores, one LibTorch/OpenMP thread per rank unless OMP_NUM_THREADS is set,
# and passes every other argument to mpirun unchanged. MPIRUN overrides the mpirun program.
set -euo pipefail

ranks=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -np|-n|--np|-c) ranks="${args[$((i + 1))]:-1}" ;;
  esac
done

extra=()
[[ $(id -u) -eq 0 ]] && extra+=(--allow-run-as-root)
cores=$(nproc)
if ((ranks > cores)); then
  extra+=(--oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "${MPIRUN:-mpirun}" "${extra[@]}" -x OMP_NUM_THREADS "$@"
