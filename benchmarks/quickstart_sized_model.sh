#!/usr/bin/env bash
# Sourced by the side-by-side scripts: a quickstart-sized network (plain U-Net, 4 stages, 16
# features, 48^3 windows; lungs and heart) trained for 2 steps on 3 chest phantoms of the
# benchmark's grid, so a campaign predicts at the studies' spacing. Speed does not depend on the
# weights.
#   train_quickstart_sized VITRUVIAN SHAPE CHANNEL   -> the exported model in ./run/model
train_quickstart_sized() {
  local vit=$1 shape=$2 channel=$3
  "$vit" phantom --kind chest-cardiac --studies 3 --shape "$shape" --seed 99 --out train.h5 --threads 2 >/dev/null 2>&1
  cat > train.yaml <<YAML
data:
  dataset: train.h5
  channels: [$channel]
  classes: [lung_left, lung_right, "heart=heart_left_ventricle+heart_right_ventricle+heart_left_atrium+heart_right_atrium+heart_myocardium"]
  validation_studies: 1
  patch: [48, 48, 48]
  workers: 1
model: {stages: 4, base_features: 16}
train: {steps: 2, validate_every: 0, checkpoint_every: 2, run_dir: run}
YAML
  "$vit" --config train.yaml --threads 2 train >/dev/null 2>&1
}
