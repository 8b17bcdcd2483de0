#!/usr/bin/env bash
# `vitruvian train` on 3 ranks under faults, each at a known point (VITRUVIAN_FAULT,
# core/fault_injection.h) or sent from outside: a rank killed mid-step; a rank killed while rank 0
# writes a checkpoint; rank 0 killed in the write, before and after its manifest; a file size
# limit hit in a checkpoint; a rank stopped (SIGSTOP) while the others wait in a collective. Each
# job ends within the collective timeout naming the rank (and for the stop, the operation); the
# checkpoints in place still verify, --resume auto continues from the newest complete one with
# the losses of an uninterrupted run, and the next run removes what killed writers left.
# Every process of a job is gone afterwards, on every path.
# Usage: train_faults.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"
vit_exe=$(readlink -f "$vit")
trap kill_job EXIT
timeout_s=5  # --collective-timeout of every run

# start LOG RUN FAULT: a 3-rank run into RUN/ with --resume auto and FAULT, in the background.
start() {
  VITRUVIAN_FAULT=$3 "$mpirun" -np 3 "$vit" --collective-timeout "$timeout_s" --config train.yaml train --run-dir "$2" \
    --resume auto > "$1.log" 2>&1 &
  launcher=$!
}

# wait_line FILE REGEX: waits until FILE has a line matching REGEX (extended).
wait_line() {
  local deadline=$((SECONDS + 60))
  until grep -Eq "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { cat "$1"; fail "no line matching '$2' in $1"; }
    sleep 0.05
  done
}

# ended_within LOG SINCE LIMIT: the job of LOG, started in the background, ends with a failure
# (no rank left) at most LIMIT seconds after SINCE (an EPOCHREALTIME).
ended_within() {
  local took
  finish_job "$1" nonzero
  took=$(awk -v a="$2" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  awk -v t="$took" -v l="$3" 'BEGIN { exit !(t < l) }' || { cat "$1.log"; fail "$1: ended $took s after the fault (limit $3 s)"; }
  echo "$1: ended $took s after the fault"
}

# verified_steps RUN: the steps of RUN's checkpoints that verify (manifest complete, every file
# of its size and FNV-1a 64 checksum), newest first; temporaries are not checkpoints.
verified_steps() {
  $py - "$1/checkpoints" <<'PY'
import json, os, sys
root = sys.argv[1]
def fnv(path):
    h = 0xcbf29ce484222325
    for b in open(path, "rb").read():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
def verifies(d):
    try:
        m = json.load(open(os.path.join(d, "manifest.json")))
        return m["complete"] and all(os.path.getsize(os.path.join(d, f)) == v["bytes"] and fnv(os.path.join(d, f)) == v["fnv1a64"]
                                     for f, v in m["files"].items())
    except (OSError, ValueError, KeyError):
        return False
print(" ".join(str(s) for s in sorted((int(n[5:]) for n in os.listdir(root)
                                        if n.startswith("step_") and verifies(os.path.join(root, n))), reverse=True)))
PY
}

# expect_steps RUN STEPS: RUN's verifying checkpoints are STEPS ("4 2").
expect_steps() {
  local got
  got=$(verified_steps "$1")
  [[ $got == "$2" ]] || fail "$1: checkpoints that verify: '$got', expected '$2' ($(ls -a "$1/checkpoints"))"
}

# no_temporaries RUN: nothing under RUN has a temporary name of the atomic writers.
no_temporaries() {
  [[ -z $(find "$1" -name '.*.tmp.*') ]] || fail "$1: temporaries left: $(find "$1" -name '.*.tmp.*')"
}

# lost_rank LOG RANK: mpirun's line naming the rank that was killed.
lost_rank() {
  grep -Eq "process rank $2 with PID [0-9]+ on node [^ ]+ exited on signal 9" "$1.log" ||
    { cat "$1.log"; fail "$1: rank $2 not named as killed"; }
}

# resume RUN STEP: --resume auto, without faults, continues RUN from its checkpoint of STEP and
# logs the losses of the uninterrupted run; every checkpoint left verifies, no temporary is left.
resume() {
  expect_exit 0 "$1_resume.err" "$mpirun" -np 3 "$vit" --collective-timeout "$timeout_s" --config train.yaml train \
    --run-dir "$1" --resume auto
  grep -q "resuming from .*step_$(printf %08d "$2") (step $2)" "$1_resume.err" ||
    { cat "$1_resume.err"; fail "$1: did not resume from step $2"; }
  same_losses full.jsonl "$1/metrics.jsonl" 1 8
  expect_steps "$1" "8 6"
  no_temporaries "$1"
}

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 4 --shape 24,32,32 --out chest.h5 --threads 1
interrupted_run_config 2

# The uninterrupted run: the losses every resumed run must reproduce.
expect_exit 0 full.err "$mpirun" -np 3 "$vit" --collective-timeout "$timeout_s" --config train.yaml train --run-dir full \
  --resume auto
cp full/metrics.jsonl full.jsonl

# Rank 2 killed (SIGKILL) at the start of step 6, the others in the step's collectives: mpirun
# ends the job naming rank 2; the checkpoint of step 4 is the newest, so step 5 is lost (less
# than the interval of 2 steps) and --resume auto redoes it.
start killed killed "train.step@2#6:kill"
wait_line killed.log "fault injection on rank 2/3 .*SIGKILL"
ended_within killed "$EPOCHREALTIME" "$timeout_s"
lost_rank killed 2
expect_steps killed "4 2"
resume killed 4

# Rank 1 killed while rank 0 writes the checkpoint of step 4 (held in it, its files written and
# the manifest not): the job ends naming rank 1. The write needs no peer, so rank 0, let go by
# mpirun's SIGCONT, may finish it before it is killed; either way the checkpoint of step 2 is
# intact and the newest one that verifies is taken on resume.
start writing writing "checkpoint.write@0#2:stop"
wait_stopped 1
kill -9 "$(rank_pids 1)"
ended_within writing "$EPOCHREALTIME" "$timeout_s"
lost_rank writing 1
newest=$(verified_steps writing)
[[ $newest == "4 2" || $newest == 2 ]] || fail "writing: checkpoints that verify: '$newest'"
echo "writing: checkpoints that verify after the fault: $newest"
resume writing "${newest%% *}"

# Rank 0 killed in the write of step 4, before the manifest: a temporary folder is left, the
# checkpoint of step 2 is chosen on resume, and the resumed run removes the leftover first.
start dying dying "checkpoint.write@0#2:kill"
wait_line dying.log "fault injection on rank 0/3 .*SIGKILL"
ended_within dying "$EPOCHREALTIME" "$timeout_s"
lost_rank dying 0
expect_steps dying 2
[[ -n $(find dying/checkpoints -maxdepth 1 -name '.step_00000004.tmp.*') ]] || fail "dying: no temporary of step 4 left"
resume dying 2
grep -q "removed leftovers of an interrupted write from dying/checkpoints: .step_00000004.tmp." dying_resume.err ||
  { cat dying_resume.err; fail "dying: the leftover was not reported removed"; }

# Rank 0 killed after the manifest, before the rename: the complete temporary is no checkpoint.
start renaming renaming "checkpoint.commit@0#2:kill"
wait_line renaming.log "fault injection on rank 0/3 .*SIGKILL"
ended_within renaming "$EPOCHREALTIME" "$timeout_s"
expect_steps renaming 2
[[ -f $(find renaming/checkpoints -maxdepth 1 -name '.step_00000004.tmp.*' | head -1)/manifest.json ]] ||
  fail "renaming: no complete temporary of step 4 left"

# The same run resumed with a file size limit (ulimit -f, set on rank 0 once it runs: MPI's
# shared memory files need more) that the checkpoint of step 4 exceeds: one line naming the file
# and the reason, exit 1, the checkpoint of step 2 intact, no temporary left (the killed
# writer's was removed at the start, this one's on the error); then without the limit the run
# ends as the uninterrupted one.
start limit renaming "train.step@0#1:stop"
wait_stopped 1
prlimit --pid "$(rank_pids 0)" --fsize=8192
kill -CONT "$(rank_pids 0)"
finish_job limit 1
[[ $(grep -v "fault injection" limit.log | grep -c "^vitruvian: ") == 1 ]] || { cat limit.log; fail "limit: not exactly one error line"; }
grep -Eq "^vitruvian: training failed on rank 0 \([^)]+\): .* [^ ]*/model.pt: cannot be written: File too large" limit.log ||
  { cat limit.log; fail "limit: the error line does not name the file and the reason"; }
grep -q "removed leftovers of an interrupted write from renaming/checkpoints: .step_00000004.tmp." limit.log ||
  { cat limit.log; fail "limit: the killed writer's leftover was not removed"; }
expect_steps renaming 2
no_temporaries renaming
resume renaming 2

# Rank 2 stopped (SIGSTOP) at the start of step 3, the others waiting for it in a collective:
# their watchdog ends the job with exit 124 within the timeout (plus the roll call's second),
# naming the operation and, by the roll call, rank 2.
start stalled stalled "train.step@2#3:stop"
wait_stopped 1
since=$EPOCHREALTIME
finish_job stalled 124
took=$(awk -v a="$since" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
awk -v t="$took" -v l="$((timeout_s + 5))" 'BEGIN { exit !(t < l) }' || fail "stalled: ended after $took s"
grep -Eq "rank [01]/3 on [^ ]+ waited [0-9.]+ s \(limit $timeout_s.0 s, runtime.collective_timeout_s\) for [a-z_]+ #[0-9]+ .*on communicator 'world' \(mpi, 3 ranks\); a peer never joined or is stuck. Ending the job. Roll call: rank 2 \([^)]+\) did not answer" stalled.log ||
  { cat stalled.log; fail "stalled: no timeout message naming the operation and rank 2"; }
echo "stalled: ended $took s after the stop: $(grep -Eo "waited .* did not answer" stalled.log | head -1)"
expect_steps stalled 2
no_temporaries stalled
echo "train faults: all checks passed"
