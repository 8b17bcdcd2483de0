# Shared by the CLI test scripts (sourced): a scratch folder, a failure line, expect_exit, and a
# small network trained on phantoms.
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
