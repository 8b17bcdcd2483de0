#!/usr/bin/env bash
# Peak memory of one inference campaign study the size of a large CT: a 512 x 512 x 400
# chest-cardiac phantom through a 10-class network (lungs, heart, aorta, pulmonary artery, spine,
# ribs, sternum, body), with calcium scoring and intensity statistics, fp32 and fp16 stitching;
# the peak resident set of the whole process (GNU time), against the issue's 3 GB.
#   benchmarks/infer_memory.sh [BUILD_DIR] [WORK_DIR] [THREADS]
set -euo pipefail
build=${1:-build}
work=${2:-/tmp/vitruvian_infer_memory}
threads=${3:-2}
vit=$(cd "$build" && pwd)/bin/vitruvian
mkdir -p "$work" && cd "$work"
[[ -f big.h5 ]] || "$vit" phantom --kind chest-cardiac --studies 1 --shape 400,512,512 --spacing 0.78,0.78,1 --framing centred --out big.h5 --threads "$threads" --lz4 >/dev/null 2>&1
# Training studies on the same grid spacing, so the campaign predicts at full resolution (no resampling).
[[ -f small.h5 ]] || "$vit" phantom --kind chest-cardiac --studies 3 --shape 64,128,128 --spacing 0.78,0.78,1 --framing centred --out small.h5 --threads "$threads" >/dev/null 2>&1
cat > ten.yaml <<'YAML'
data:
  dataset: small.h5
  channels: [cta]
  classes: [lung_left, lung_right, "heart=heart_left_ventricle+heart_right_ventricle+heart_left_atrium+heart_right_atrium+heart_myocardium",
            "aorta=aorta_ascending+aorta_arch+aorta_descending", pulmonary_artery, vertebrae, ribs, sternum, body]
  validation_studies: 1
  patch: [64, 64, 64]
  batch_size: 2
  workers: 1
model: {stages: 3, base_features: 8}
train: {steps: 2, validate_every: 0, checkpoint_every: 2, run_dir: ten}
YAML
[[ -f ten/model/model.json ]] || "$vit" --config ten.yaml --threads "$threads" train --force >/dev/null 2>&1
cat > campaign.yaml <<'YAML'
input: big.h5
routes:
  - name: organs
    model: ten/model
    largest_component: [lung_left, lung_right, heart]
    fill_holes: [heart]
calcium: {series: ct, region: heart}
YAML
echo "# 512x512x400 CT, 10 classes, window 64^3, overlap 0.5, $threads threads, 1 rank ($(nproc) cores, $(uname -m))"
for acc in fp32 fp16; do
  /usr/bin/time -f "%M" -o rss.txt "$vit" --threads "$threads" infer --campaign campaign.yaml --out "out_$acc" --accumulation "$acc" --force >log_$acc.txt 2>&1
  kib=$(tail -1 rss.txt)
  /usr/bin/python3 - "$acc" "$kib" "out_$acc" <<'PY'
import json, sys, glob
acc, kib, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
report = json.load(open(glob.glob(f"{out}/studies/*/report.json")[0]))
t = report["timing"]
print(f"{acc}: peak RSS {kib / 1e6:.2f} GB (target <= 3 GB: {'met' if kib * 1024 <= 3e9 else 'NOT met'}); "
      f"study {t['total_s']:.0f} s, predict {t['routes']['organs']['predict_s']:.0f} s")
PY
done
