#!/usr/bin/env bash
# A campaign's ranks never wait for a lost rank beyond the collective timeout: a rank that
# crashes, leaves the job or stops during set-up or during the work queue ends the job within
# the timeout with a message naming that rank, on 2 ranks (faults injected with VITRUVIAN_FAULT,
# core/fault_injection.h). Every process of a job is gone afterwards.
# Usage: infer_faults.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 6 --shape 24,32,32 --out set.h5 --threads 2
printf 'input: set.h5\noutput: OUT\nroutes:\n  - {name: reference, labels: anatomy, lesions: [lung_nodule]}\n' > campaign.yaml
timeout=4

# run NAME FAULT EXIT REGEX: the campaign with FAULT injected ends with EXIT (nonzero: any
# failure) within the timeout plus start-up, its output matching REGEX, no rank left running.
run() {
  local name=$1 fault=$2 want=$3 regex=$4 rc=0 start end
  start=$(date +%s)
  VITRUVIAN_FAULT=$fault timeout 120 "$mpirun" -np 2 "$vit" --collective-timeout "$timeout" infer --campaign campaign.yaml \
    --out "$name" > "$name.log" 2>&1 || rc=$?
  end=$(date +%s)
  if [[ $want == nonzero ]]; then
    [[ $rc != 0 ]] || { cat "$name.log"; fail "$name: exited 0"; }
  else
    [[ $rc == "$want" ]] || { cat "$name.log"; fail "$name: exited $rc, expected $want"; }
  fi
  grep -Eq "$regex" "$name.log" || { cat "$name.log"; fail "$name: no message matching '$regex'"; }
  ((end - start < 60)) || fail "$name: took $((end - start)) s for a $timeout s timeout"
  ! pgrep -f -- "--out $name\$" > /dev/null || { pkill -9 -f -- "--out $name\$"; fail "$name: ranks left running"; }
  echo "$name: exit $rc after $((end - start)) s: $(grep -Eo "$regex" "$name.log" | head -1)"
}

# Set-up: rank 1 leaves the job (MPI_Finalize, exit 0) — only the control plane's timeout ends it;
# rank 1 crashes — mpirun ends the job and names it ("Process name: [[job,1],1]": world rank 1).
run setup_leave "campaign.setup@1:leave" 124 "campaign set-up.*no word from rank 1"
run setup_exit "campaign.setup@1:exit" nonzero "Process name: \[\[[0-9]+,1\],1\]"
# The work queue: rank 1 stops while holding a study — rank 0's queue hears nothing from it;
# rank 1 crashes — mpirun.
run queue_stop "campaign.study@1:stop" 124 "rank 1 \([^)]*\) has been silent for [0-9.]+ s while holding item"
run queue_exit "campaign.study@1:exit" nonzero "Process name: \[\[[0-9]+,1\],1\]"

# Without faults the same campaign finishes, and a rerun after a failed one does the rest.
expect_exit 0 clean.err "$mpirun" -np 2 "$vit" --collective-timeout "$timeout" infer --campaign campaign.yaml --out queue_stop
grep -q "campaign: 6 studies done, 0 failed" clean.err || { cat clean.err; fail "the rerun did not finish"; }
echo "infer faults: all checks passed"
