#!/usr/bin/env bash
# `vitruvian train` stopped by the scheduler's signals and resumed with --resume auto, on 2 ranks:
# SIGTERM to one rank, SIGTERM to every rank (as Slurm sends it), SIGUSR1 to mpirun (which
# forwards it); each run exits 3 with that step's complete checkpoint, and the resumed run logs
# the very losses of an uninterrupted one. --resume auto on an empty folder starts fresh; a
# raised train.steps extends a finished run on the documented schedule; conflicting flags are
# refused. Ranks are held at a known step by VITRUVIAN_FAULT=train.step@R#N:stop (SIGSTOP), so
# the signal arrives at a known step; every process of a job is gone afterwards on every path.
# Usage: train_signals.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"
vit_exe=$(readlink -f "$vit")

trap kill_job EXIT

# wait_pending PID SIGNAL_NUMBER: waits until SIGNAL is pending at the stopped process PID.
wait_pending() {
  local deadline=$((SECONDS + 30)) mask
  while ((SECONDS < deadline)); do
    mask=$(awk '/^ShdPnd:/{print $2}' "/proc/$1/status")
    (((16#$mask >> ($2 - 1)) & 1)) && return 0
    sleep 0.05
  done
  fail "signal $2 never reached process $1"
}

# start NAME FAULT: a 2-rank run into NAME/ with --resume auto in the background, held at FAULT.
start() {
  VITRUVIAN_FAULT=$2 "$mpirun" -np 2 "$vit" --config train.yaml train --run-dir "$1" --resume auto > "$1.log" 2>&1 &
  launcher=$!
}

# check_stopped NAME SIGNAL STEP: the stop line and a complete checkpoint of STEP, no temporary left.
check_stopped() {
  local dir
  dir=$(printf '%s/checkpoints/step_%08d' "$1" "$3")
  grep -q "train: stopped by $2 at step $3; checkpoint step $3 .*rerun with --resume auto to continue" "$1.log" ||
    { cat "$1.log"; fail "$1: no stop line for step $3"; }
  [[ $(grep -c "stopped by" "$1.log") == 1 ]] || fail "$1: more than one stop line"
  $py -c "import json,sys; m=json.load(open('$dir/manifest.json')); sys.exit(0 if m['complete'] else 1)" ||
    fail "$1: checkpoint $dir is not complete"
  [[ -z $(find "$1" -name '.*tmp*') ]] || fail "$1: temporaries left: $(find "$1" -name '.*tmp*')"
  [[ ! -e $1/model ]] || fail "$1: an interrupted run exported a model"
}

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 3 --shape 24,32,32 --out chest.h5 --threads 1
interrupted_run_config 4

# (b) --resume auto on an empty run folder starts fresh: the uninterrupted reference.
expect_exit 0 full.err "$mpirun" -np 2 "$vit" --config train.yaml train --run-dir full --resume auto
! grep -q "resuming" full.err || { cat full.err; fail "--resume auto resumed in an empty folder"; }
[[ -f full/model/model.pt ]] || fail "the fresh run exported no model"
cp full/metrics.jsonl full.jsonl

# (a) SIGTERM to rank 1 alone, held at the start of step 3: the ranks agree after step 3, the
# checkpoint of step 3 is written (none was due), exit 3; --resume auto ends the run like the reference.
start one "train.step@1#3:stop"
wait_stopped 1
pid=$(rank_pids 1)
kill -TERM "$pid"
kill -CONT "$pid"
finish_job one 3
check_stopped one SIGTERM 3
grep -q "checkpoint step 3 written" one.log || { cat one.log; fail "one: checkpoint of step 3 not written on stop"; }
expect_exit 0 one_resume.err "$mpirun" -np 2 "$vit" --config train.yaml train --run-dir one --resume auto
grep -q "resuming from .*step_00000003 (step 3)" one_resume.err || { cat one_resume.err; fail "one: did not resume from step 3"; }
same_losses full.jsonl one/metrics.jsonl 1 8

# SIGTERM to every rank, as Slurm sends it, held at step 4 (its checkpoint is due): written once.
start all "train.step@*#4:stop"
wait_stopped 2
for pid in $(rank_pids "*"); do kill -TERM "$pid"; done
for pid in $(rank_pids "*"); do kill -CONT "$pid"; done
finish_job all 3
check_stopped all SIGTERM 4
grep -q "checkpoint step 4 already written" all.log || { cat all.log; fail "all: the step's checkpoint was not the scheduled one"; }

# SIGUSR1 to mpirun alone (the template's warning before the time limit): mpirun forwards it to
# every rank.
start usr1 "train.step@*#2:stop"
wait_stopped 2
kill -USR1 "$launcher"
for pid in $(rank_pids "*"); do wait_pending "$pid" 10; done
for pid in $(rank_pids "*"); do kill -CONT "$pid"; done
finish_job usr1 3
check_stopped usr1 SIGUSR1 2

# (c) A finished run extended by raising train.steps: steps 9..12 on the poly schedule of 12 steps.
expect_exit 0 extend.err "$mpirun" -np 2 "$vit" --config train.yaml train --run-dir full --resume auto --steps 12
grep -q "resuming from .*step_00000008 (step 8)" extend.err || { cat extend.err; fail "extend: did not resume from step 8"; }
$py - <<'PY'
import json
lines = [json.loads(l) for l in open("full/metrics.jsonl")]
steps = {j["step"]: j for j in lines if "loss" in j}
assert sorted(steps) == list(range(1, 13)), sorted(steps)
for step in range(9, 13):
    want = 0.01 * (1 - (step - 1) / 12) ** 0.9
    assert abs(steps[step]["lr"] - want) < 1e-12, f"step {step}: lr {steps[step]['lr']}, expected {want}"
assert json.load(open("full/model/model.json"))["step"] == 12
PY
expect_exit 2 lower.err "$vit" --config train.yaml train --run-dir full --resume auto --steps 6
grep -q "train.steps: 6 is below the step of the checkpoint to resume from (12" lower.err || { cat lower.err; fail "lower steps"; }

# Flags that contradict each other: one line each.
expect_exit 2 conflict.err "$vit" --config train.yaml train --run-dir full --resume auto --force
grep -q "resume and --force contradict each other" conflict.err || { cat conflict.err; fail "--resume auto --force"; }
expect_exit 2 bad.err "$vit" --config train.yaml train --run-dir full --resume later
grep -q "'later'; expected auto or no value" bad.err || { cat bad.err; fail "--resume later"; }
expect_exit 2 none.err "$vit" --config train.yaml train --run-dir empty --resume
grep -q "has no complete checkpoint to resume from" none.err || { cat none.err; fail "--resume without checkpoint"; }
echo "train signals: all checks passed"
