#!/usr/bin/env bash
# `vitruvian train | report | info --model` as a user runs them, on phantoms: 2 ranks train and
# validate; a run killed after a checkpoint (its last checkpoint cut short) resumes from the one
# before with a warning and then logs the very losses of the uninterrupted run; an existing run
# folder is refused without --resume; a class the dataset lacks is named; the report is drawn.
# Usage: train_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 5 --shape 48 --out chest.h5 --threads 2
cat > train.yaml <<'YAML'
data:
  dataset: chest.h5
  channels: [cta]
  classes: [lung_left, lung_right, heart_left_ventricle]
  validation_studies: 1
  patch: [24, 32, 32]
  batch_size: 2
  workers: 1
model:
  stages: 3
  base_features: 4
optimizer:
  lr: 0.02
train:
  steps: 12
  validate_every: 6
  checkpoint_every: 4
  keep_checkpoints: 2
  run_dir: run
YAML
expect_exit 0 train.err "$mpirun" -np 2 "$vit" --config train.yaml train
grep -q "train: step 12 validation mean Dice" train.err || { cat train.err; fail "no validation line"; }
[[ -f run/model/model.pt && -f run/model/model.json && -f run/config.yaml ]] || fail "run folder incomplete: $(ls -R run)"
[[ $(ls run/checkpoints | wc -l) == 2 ]] || fail "expected the 2 newest checkpoints, got $(ls run/checkpoints)"
cp run/metrics.jsonl uninterrupted.jsonl

# The last checkpoint is cut short, as if the job died while writing it: resume takes step 8.
truncate -s 100 run/checkpoints/step_00000012/model.pt
expect_exit 0 resume.err "$mpirun" -np 2 "$vit" --config train.yaml train --resume
grep -q "step_00000012 is skipped: model.pt has 100 bytes" resume.err || { cat resume.err; fail "no warning about the broken checkpoint"; }
grep -q "resuming from .*step_00000008 (step 8)" resume.err || { cat resume.err; fail "did not resume from step 8"; }
$py - <<'PY'
import json
def losses(path):
    out = {}
    for line in open(path):
        j = json.loads(line)
        if "loss" in j:
            out[j["step"]] = j["loss"]
    return out
a, b = losses("uninterrupted.jsonl"), losses("run/metrics.jsonl")
assert sorted(b) == list(range(1, 13)), sorted(b)
for step in range(9, 13):
    assert a[step] == b[step], f"step {step}: {a[step]} uninterrupted vs {b[step]} resumed"
assert a[12] < a[1], f"loss did not go down: {a[1]} -> {a[12]}"
print("resumed losses equal the uninterrupted run's; loss", a[1], "->", a[12])
PY

expect_exit 2 again.err "$vit" --config train.yaml train
grep -q "already holds checkpoints; pass --resume" again.err || { cat again.err; fail "an existing run was not refused"; }
expect_exit 2 class.err "$mpirun" -np 2 "$vit" --config train.yaml --set 'data.classes=[liver]' train --run-dir other
[[ $(grep -c "'liver' is not a label of chest.h5; its labels are: body, lung_left" class.err) == 1 ]] || { cat class.err; fail "class error"; }
expect_exit 2 channel.err "$mpirun" -np 2 "$vit" --config train.yaml --set 'data.channels=[t2]' train --run-dir other
[[ $(grep -c "has no series 't2' (it has: ct, cta)" channel.err) == 1 ]] || { cat channel.err; fail "missing channel"; }
expect_exit 2 key.err "$vit" --config train.yaml --set train.stepz=3 train --run-dir other
grep -q "unknown key 'train.stepz' (did you mean 'train.steps'?)" key.err || { cat key.err; fail "unknown key"; }

# A plan is a config train takes as it is (here shortened to two steps).
expect_exit 0 plan.err "$vit" plan chest.h5 --channels cta --classes lung_left,heart=heart_left_ventricle+heart_myocardium \
  --memory 0.5G --task planned -o plan.yaml
grep -q "^plan: patch .* estimated .* of 0.50 GB" plan.err.out || { cat plan.err.out; fail "no plan summary"; }
grep -q '"heart": 0.0' plan.fingerprint.json || fail "no class frequency for the grouped class"
expect_exit 0 planned.err "$vit" --config plan.yaml --set train.steps=2 --set train.validate_every=0 --set data.workers=1 train
[[ -f runs/planned/model/model.json ]] || fail "the planned run exported no model"

expect_exit 0 report.err "$vit" report run
grep -q "<svg" run/report.html && grep -q "Last validation" run/report.html || fail "report without charts"
expect_exit 0 model.err "$vit" info --model resenc_unet --stages 4 --patch 32,32,32 --json
grep -q '"forward_flops_per_voxel"' model.err.out || fail "info --model gave no FLOPs"
echo "train CLI: all checks passed"
