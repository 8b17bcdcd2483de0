#!/usr/bin/env bash
# Preemption and requeue under a real Slurm (the one-node cluster of slurm_cluster.sh), through
# launch/slurm/vitruvian.sbatch with 2 tasks started by srun:
#  1. `scontrol requeue` of a running training job: Slurm sends SIGTERM to every task, the ranks
#     agree on a stop at the next step boundary, write that step's checkpoint and exit 3 within
#     KillWait; the job goes back to the queue, runs again, and the template's RESUME=auto
#     continues from the checkpoint. The finished run's losses equal an uninterrupted run's.
#  2. The time-limit warning (`--signal=B:USR1@...`, here sent at once with `scancel --batch
#     --signal=USR1`): srun passes it to the ranks, the job ends with exit code 3 and the
#     checkpoint of the step it was at.
# The ranks are held at a known step by VITRUVIAN_FAULT=train.step@*#N:stop (SIGSTOP; Slurm
# sends SIGCONT before SIGTERM), so the signal arrives mid-run at a known step.
# Usage: slurm_requeue.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
source "$here/../cli_helpers.sh"
source "$here/slurm_cluster.sh"
slurm_test_setup "$work"
slurm_train_config 3 40 5
# The reference: the same 40 steps on 2 ranks, uninterrupted, outside Slurm.
expect_exit 0 reference.err "$mpirun" -np 2 "$vit" --config train.yaml --threads 1 train --run-dir reference

# sbatch_train NAME FAULT: submits the template's train on 2 srun tasks; prints the job id.
sbatch_train() {
  LAUNCHER=srun VITRUVIAN="$vit" VITRUVIAN_FAULT="$2" \
    sbatch --parsable --job-name="$1" --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
      --time=10 --output="$work/$1.out" "$root/launch/slurm/vitruvian.sbatch" \
      --config train.yaml --threads 1 train --run-dir "run_$1"
}

# wait_held ID COUNT: waits until COUNT tasks of this cluster's job are stopped at the fault point.
wait_held() {
  local deadline=$((SECONDS + 120)) stopped pid
  while ((SECONDS < deadline)); do
    stopped=0
    for pid in $(pgrep -f -- "--run-dir run_$1" || true); do
      [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$vit" && $(awk '{print $3}' "/proc/$pid/stat") == T ]] &&
        stopped=$((stopped + 1))
    done
    ((stopped == $2)) && return 0
    sleep 0.1
  done
  cat "$work/$1.out"
  fail "job $1: $2 ranks did not reach the fault point"
}

# 1. Requeued at step 23 (both ranks held as they enter it); the rerun hits the point 17 times at
# most, so it is not held again.
id=$(sbatch_train requeued 'train.step@*#23:stop')
wait_held requeued 2
scontrol requeue "$id"
requeued_at=$(date +%s)
# Slurm holds a requeued job back (its begin time moves about two minutes ahead); release it, but
# only once the clock has left the requeue's second: slurmd revoked the first run's credential
# at that second and refuses every credential of the job made at or before it, so a relaunch
# within it fails and the job ends FAILED (seen once in CI, where the kill, the requeue and the
# next scheduling pass fell in one second). A begin time in the future instead would wait for
# the backfill pass (up to 30 s).
for _ in $(seq 100); do [[ $(slurm_job_state "$id") == PENDING ]] && break; sleep 0.2; done
while (($(date +%s) <= requeued_at + 1)); do sleep 0.1; done
scontrol update JobId="$id" StartTime=now
state=$(slurm_wait_job "$id" 240) || true
[[ $state == COMPLETED ]] || {
  cat requeued.out; slurm_post_mortem "$id"; fail "requeued job $id ended $state, expected COMPLETED"; }
restarts=$(scontrol show job "$id" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[[ $restarts == 1 ]] || fail "job $id restarted $restarts times, expected 1"
# The stop comes at the first step boundary after SIGTERM, which Slurm sends just after SIGCONT:
# the held step or a few later, well before the end.
stop_step=$(sed -n 's/.*train: stopped by SIGTERM at step \([0-9]*\); checkpoint step \1 \(already \)\{0,1\}written.*/\1/p' requeued.out)
((stop_step >= 23 && stop_step < 40)) || { cat requeued.out; fail "no stop line between steps 23 and 39 ('$stop_step')"; }
grep -q "resuming from .*step_000000$stop_step (step $stop_step)" requeued.out || { cat requeued.out; fail "the rerun did not resume from step $stop_step"; }

# 2. The time-limit warning: SIGUSR1 to the batch shell (srun), held at step 23.
id=$(sbatch_train warned 'train.step@*#23:stop')
wait_held warned 2
scancel --batch --signal=USR1 "$id"
# srun delivers SIGUSR1 to the stopped tasks (pending until they run again); SIGCONT lets them
# take it (Slurm sends SIGCONT itself only before SIGTERM and SIGKILL).
tasks=$(for pid in $(pgrep -f -- "--run-dir run_warned"); do
  [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$vit" ]] && echo "$pid"; done)
usr1_pending() {  # usr1_pending PID: SIGUSR1 (10) pending at the process or its thread
  local mask
  for mask in $(awk '/^ShdPnd:|^SigPnd:/{print $2}' "/proc/$1/status"); do
    (((16#$mask >> 9) & 1)) && return 0
  done
  return 1
}
for pid in $tasks; do
  deadline=$((SECONDS + 30))
  until usr1_pending "$pid"; do
    ((SECONDS < deadline)) || fail "SIGUSR1 never reached task $pid"
    sleep 0.05
  done
done
for pid in $tasks; do kill -CONT "$pid" 2>/dev/null || true; done
state=$(slurm_wait_job "$id" 120) || true
exit_code=$(scontrol show job "$id" | sed -n 's/.* ExitCode=\([0-9]*\):.*/\1/p')
[[ $state == FAILED && $exit_code == 3 ]] || { cat warned.out; slurm_post_mortem "$id"; fail "warned job $id ended $state with exit code $exit_code, expected FAILED 3"; }
warned_step=$(sed -n 's/.*train: stopped by SIGUSR1 at step \([0-9]*\); checkpoint step \1 \(already \)\{0,1\}written.*/\1/p' warned.out)
[[ $warned_step == 23 || $warned_step == 24 ]] || { cat warned.out; fail "no stop line at step 23 or 24 ('$warned_step')"; }

$py - <<'PY'
import json, os
def losses(run):
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        j = json.loads(line)
        if "loss" in j:
            out[j["step"]] = j["loss"]  # a resumed run logs each step once more after its checkpoint
    return out
reference, requeued = losses("reference"), losses("run_requeued")
assert sorted(reference) == list(range(1, 41)), reference
assert requeued == reference, f"requeued run differs: {requeued} vs {reference}"
assert os.path.isfile("run_requeued/model/model.json")
steps = sorted(d for d in os.listdir("run_warned/checkpoints") if d.startswith("step_"))
assert steps[-1] in ("step_00000023", "step_00000024"), steps
print("requeued mid-run and resumed by itself: losses equal the uninterrupted run's;",
      "USR1 warning:", steps[-1], "exit 3")
PY
