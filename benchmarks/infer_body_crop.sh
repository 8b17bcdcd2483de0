#!/usr/bin/env bash
# The body crop (route key `crop`) on chest phantoms framed as scans: the quickstart's model
# (README: 200 steps on 16 chest phantoms at 3.5 mm, fields of view of 340-500 mm drawn per
# study) run with crop: body and crop: none on held-out phantoms at the training framing, in a
# 700 mm field of view (twice the body's width) at the same spacing, and as a scanner's
# 512 x 512 matrix over a 500 mm field of view (0.98 x 0.98 x 2.5 mm, resampled to the model's
# 3.5 mm after the crop). Prints per campaign the windows, the prediction and route seconds, the
# cropped share of the voxels and the mean Dice per class against the phantoms' truth.
#   benchmarks/infer_body_crop.sh [BUILD_DIR] [MODEL_DIR] [STUDIES]
# MODEL_DIR: the quickstart's runs/quickstart/model (README); without it the quickstart's
# training runs first (200 steps on 2 ranks, a few minutes).
set -euo pipefail
build=${1:-build}
model=${2:-}
studies=${3:-6}
root=$(cd "$(dirname "$0")/.." && pwd)
vit=$(cd "$build" && pwd)/bin/vitruvian
mpirun=${VITRUVIAN_MPIRUN:-$root/launch/mpirun.sh}
work=$(mktemp -d /tmp/vitruvian_crop_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
if [[ -z "$model" ]]; then
  "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 16 --spacing 3.5 --out phantoms.h5 >/dev/null 2>&1
  "$mpirun" -np 2 "$vit" --config "$root/launch/configs/quickstart.yaml" train >/dev/null 2>&1
  model=$work/runs/quickstart/model
fi
model=$(cd "$model" && pwd)
"$vit" phantom --kind chest-cardiac --studies "$studies" --spacing 3.5 --seed 1000 --out framed.h5 --threads 2 >/dev/null 2>&1
"$vit" phantom --kind chest-cardiac --studies "$studies" --spacing 3.5 --fov 700 --seed 1000 --out wide.h5 --threads 2 \
  >/dev/null 2>&1
"$vit" phantom --kind chest-cardiac --studies "$studies" --spacing 0.9766,0.9766,2.5 --fov 500 --seed 1000 --out matrix.h5 \
  --threads 2 >/dev/null 2>&1
for input in framed wide matrix; do
  for crop in body none; do
    printf 'input: %s.h5\noutput: %s_%s\noutputs: []\nroutes:\n  - {name: organs, model: %s, crop: %s}\n' \
      "$input" "$input" "$crop" "$model" "$crop" > "${input}_${crop}.yaml"
    "$vit" --threads 1 infer --campaign "${input}_${crop}.yaml" >/dev/null 2>&1
  done
done
python3 - "$studies" <<'PY'
import glob, json, statistics, sys
print(f"# {sys.argv[1]} chest phantoms per grid, 1 rank, 1 thread, overlap 0.5, batch 2, fp32")
print(f"# {'grid':<30} {'crop':<5} {'windows':>8} {'predict_s':>10} {'route_s':>8} {'box share':>10}  mean Dice (min-max) per class")
grids = (("framed", "3.5 mm, 340-500 mm (training)"), ("wide", "3.5 mm, 700 mm"), ("matrix", "512x512, 500 mm"))
for input, grid in grids:
    for crop in ("body", "none"):
        windows = seconds = route_s = 0
        shares, dice = [], {}
        for path in sorted(glob.glob(f"{input}_{crop}/studies/*/report.json")):
            r = json.load(open(path))
            route, timing = r["routes"]["organs"], r["timing"]["routes"]["organs"]
            windows += timing["windows"]
            seconds += timing["predict_s"]
            route_s += timing["seconds"]
            shares.append(route["crop"].get("fraction", 1.0))
            for name, d in route["dice"].items():
                if d is not None:
                    dice.setdefault(name, []).append(d)
        text = ", ".join(f"{n} {statistics.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for n, v in dice.items())
        print(f"  {grid:<30} {crop:<5} {windows:>8} {seconds:>10.1f} {route_s:>8.1f} {statistics.mean(shares):>10.3f}  {text}")
PY
