# Shared by the CLI test scripts (sourced): a scratch folder, a failure line, expect_exit, a
# small network trained on phantoms, and for fault tests the ranks of a job in the background.
# Usage, after the script has read its arguments: prepare_workdir DIR
set -euo pipefail
py=/usr/bin/python3

# prepare_workdir DIR: an empty DIR, entered.
prepare_workdir() {
  rm -rf "$1" && mkdir -p "$1" && cd "$1"
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# dicom_attr FILE KEYWORD: one attribute of a DICOM file (pydicom), e.g. dicom_attr x.dcm StudyInstanceUID.
dicom_attr() { $py -c 'import pydicom,sys; print(getattr(pydicom.dcmread(sys.argv[1]), sys.argv[2]))' "$1" "$2"; }

# expect_exit CODE STDERR_FILE COMMAND...: runs the command (stdout to STDERR_FILE.out) and
# checks its exit status; on a mismatch prints both streams.
expect_exit() {
  local want=$1 err=$2 rc=0
  shift 2
  "$@" >"$err.out" 2>"$err" || rc=$?
  [[ $rc == "$want" ]] || { cat "$err" "$err.out"; fail "'$*' exited $rc, expected $want"; }
}

# The chest phantoms' heart as one class (its chambers and myocardium), for CLASSES below.
heart_class='"heart=heart_left_ventricle+heart_right_ventricle+heart_left_atrium+heart_right_atrium+heart_myocardium"'

# train_small_model VITRUVIAN CHANNEL CLASSES PATCH STAGES LR STEPS: a network of 4 base features
# trained (adamw, batch 2, one validation study) on chest.h5 for STEPS steps, from train.yaml,
# into run/ (the model in run/model). CLASSES and PATCH are YAML lists.
train_small_model() {
  local vit=$1 channel=$2 classes=$3 patch=$4 stages=$5 lr=$6 steps=$7
  cat > train.yaml <<YAML
data:
  dataset: chest.h5
  channels: [$channel]
  classes: $classes
  validation_studies: 1
  patch: $patch
  batch_size: 2
  workers: 1
model: {stages: $stages, base_features: 4}
optimizer: {name: adamw, lr: $lr}
train: {steps: $steps, validate_every: 0, checkpoint_every: $steps, run_dir: run}
YAML
  expect_exit 0 train.err "$vit" --config train.yaml --threads 2 train
}

# interrupted_run_config CHECKPOINT_EVERY: train.yaml of the signal and fault tests (lungs on
# chest.h5, 8 steps, the newest 2 checkpoints kept), whose runs are stopped and resumed.
interrupted_run_config() {
  cat > train.yaml <<YAML
data:
  dataset: chest.h5
  channels: [cta]
  classes: [lung_left, lung_right]
  validation_studies: 1
  patch: [16, 16, 16]
  batch_size: 2
  workers: 1
model: {stages: 2, base_features: 4}
optimizer: {name: adamw, lr: 0.01, schedule: poly}
train: {steps: 8, validate_every: 0, checkpoint_every: $1, keep_checkpoints: 2}
YAML
}

# A job in the background and its ranks, for the signal and fault tests. The script sets vit_exe
# to its vitruvian executable's resolved path (readlink -f), starts mpirun with `... &
# launcher=$!` and ends every path with `trap kill_job EXIT`.
vit_exe=""
launcher=""

# rank_pids RANK: the process ids of the vit_exe ranks started in this folder with world rank
# RANK (* for any).
rank_pids() {
  local pid
  for pid in $(pgrep -f -- "$vit_exe" || true); do
    [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$vit_exe" && $(readlink -f "/proc/$pid/cwd" 2>/dev/null) == "$PWD" ]] ||
      continue
    if [[ $1 == "*" ]] || tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$pid"
    fi
  done
}

# kill_job: ends the background mpirun and every rank of this folder, stopped ones too.
kill_job() {
  [[ -n $launcher ]] && kill -9 "$launcher" 2>/dev/null || true
  for pid in $(rank_pids "*" 2>/dev/null); do kill -CONT "$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null; done
  return 0
}

# wait_stopped COUNT: waits until COUNT ranks of this folder are stopped (state T), as a `stop`
# fault (VITRUVIAN_FAULT) leaves them.
wait_stopped() {
  local deadline=$((SECONDS + 60)) stopped pid
  while ((SECONDS < deadline)); do
    stopped=0
    for pid in $(rank_pids "*"); do
      [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == T ]] && stopped=$((stopped + 1))
    done
    ((stopped == $1)) && return 0
    sleep 0.05
  done
  fail "$1 ranks did not reach the fault point"
}

# finish_job NAME WANT: waits for the background mpirun (its output in NAME.log); its exit
# status must be WANT (nonzero: any failure), and no rank may be left running.
finish_job() {
  local rc=0
  wait "$launcher" || rc=$?
  launcher=""
  if [[ $2 == nonzero ]]; then
    [[ $rc != 0 ]] || { cat "$1.log"; fail "$1: mpirun exited 0, expected a failure"; }
  else
    [[ $rc == "$2" ]] || { cat "$1.log"; fail "$1: mpirun exited $rc, expected $2"; }
  fi
  [[ -z $(rank_pids "*") ]] || fail "$1: ranks left running"
}

# same_losses A B FIRST LAST: B (a metrics.jsonl) has the losses of steps 1..LAST, and those of
# steps FIRST..LAST equal A's.
same_losses() {
  $py - "$@" <<'PY'
import json, sys
def losses(path):
    return {j["step"]: j["loss"] for j in map(json.loads, open(path)) if "loss" in j}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
first, last = int(sys.argv[3]), int(sys.argv[4])
assert sorted(b) == list(range(1, last + 1)), f"{sys.argv[2]}: steps {sorted(b)}"
for step in range(first, last + 1):
    assert a[step] == b[step], f"step {step}: {a[step]} uninterrupted vs {b[step]} resumed"
PY
}
