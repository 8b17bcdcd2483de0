#!/usr/bin/env bash
# Inference, Vitruvian (`vitruvian infer`, the campaign job) against a PyTorch Python
# sliding-window loop (benchmarks/peers/infer_sliding_window_torch.py, Debian's python3-torch)
# running the same exported model with the same window, overlap, Gaussian blending, batch and
# thread count on the same studies, alternated ROUNDS times; then the campaign on 1 and 2 ranks.
#   benchmarks/infer_side_by_side.sh [BUILD_DIR] [ROUNDS] [SHAPE] [STUDIES] [MODEL_DIR]
# Without MODEL_DIR a quickstart-sized network (4 stages, 16 features, 48^3 windows, 4 classes)
# is trained for 2 steps: speed does not depend on the weights. Prints voxels/s of the
# prediction stage (normalised image in memory -> labels), the ratio, and label agreement.
# PRECISION=bf16 runs both sides in bfloat16 (Vitruvian: a whole-bf16 network; the peer:
# torch.autocast on the CPU); the default is fp32 on both.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shape=${3:-128}
studies=${4:-3}
model=${5:-}
precision=${PRECISION:-fp32}
root=$(cd "$(dirname "$0")/.." && pwd)
vit=$(cd "$build" && pwd)/bin/vitruvian
work=$(mktemp -d /tmp/vitruvian_infer_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$vit" phantom --kind chest-cardiac --studies "$studies" --shape "$shape" --out bench.h5 --threads 2 >/dev/null 2>&1
if [[ -z "$model" ]]; then
  # Trained on the benchmark studies' grid, so the campaign predicts at their spacing as the peer does.
  source "$root/benchmarks/quickstart_sized_model.sh"
  train_quickstart_sized "$vit" "$shape" cta
  model=$work/run/model
fi
predict_rate() {  # voxels/s of the prediction stage over a campaign's studies
  /usr/bin/python3 - "$1" <<'PY'
import glob, json, sys
t = v = 0
for f in glob.glob(f"{sys.argv[1]}/studies/*/report.json"):
    r = json.load(open(f))["timing"]["routes"]["organs"]
    t += r["predict_s"]
    v += r["voxels"]
print(v / t)
PY
}
vits=() pys=()
for ((r = 0; r < rounds; ++r)); do
  OMP_NUM_THREADS=1 "$vit" --threads 1 infer --input bench.h5 --model "organs=$model" --precision "$precision" --out "v$r" --force >/dev/null 2>&1
  vits+=("$(predict_rate "v$r")")
  pys+=("$(OMP_NUM_THREADS=1 /usr/bin/python3 "$root/benchmarks/peers/infer_sliding_window_torch.py" --model "$model" \
    --dataset bench.h5 --threads 1 --precision "$precision" --labels-out peer.npz | /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['voxels_per_s'])")")
done
for np in 1 2; do
  "$root/launch/mpirun.sh" -np "$np" "$vit" infer --input bench.h5 --model "organs=$model" --precision "$precision" --out "np$np" --force >/dev/null 2>&1
done
/usr/bin/python3 - "${vits[*]}" "${pys[*]}" "$shape" "$studies" "$precision" <<'PY'
import json, statistics, sys
import h5py, numpy as np
vit = [float(x) for x in sys.argv[1].split()]
py = [float(x) for x in sys.argv[2].split()]
print(f"# prediction, {sys.argv[4]} chest phantoms of {sys.argv[3]}^3, overlap 0.5, batch 2, 1 rank, 1 thread, {sys.argv[5]}; voxels/s per round")
print("vitruvian  " + " ".join(f"{v:10.0f}" for v in vit) + f"   median {statistics.median(vit):10.0f}")
print("pytorch    " + " ".join(f"{v:10.0f}" for v in py) + f"   median {statistics.median(py):10.0f}")
ratio = statistics.median(vit) / statistics.median(py)
print(f"vitruvian / pytorch python sliding window: {ratio:.3f}  (target >= 1.5: {'met' if ratio >= 1.5 else 'NOT met'})")
peer = np.load("peer.npz")
agree = []
for sid in peer.files:
    with h5py.File(f"v0/studies/{sid}/labels.h5", "r") as f:
        # labels.h5 holds ids of its own label table; the peer gives class indices.
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["label_names"]]
        ids = dict(zip(names, f.attrs["label_ids"]))
        classes = json.load(open(f"v0/studies/{sid}/report.json"))["routes"]["organs"]["classes"]
        lut = np.zeros(65536, dtype=np.uint8)
        for c, name in enumerate(classes[1:], start=1):
            lut[ids[name]] = c
        agree.append((lut[f[f"studies/{sid}/labels/organs"][()]] == peer[sid]).mean())
print(f"labels equal to the peer's on {100 * min(agree):.4f} % of voxels (worst study)")
for sid in peer.files:
    r = json.load(open(f"v0/studies/{sid}/report.json"))["routes"]["organs"]
    assert r["resampled_to_mm"] is None, "the campaign resampled: the comparison would not be like for like"
for np_ in (1, 2):
    s = json.load(open(f"np{np_}/campaign.json"))
    print(f"campaign, {np_} rank(s), 1 thread each: {s['voxels_per_s']:.0f} voxels/s, {s['studies_per_hour'] / 3600:.3f} studies/s, "
          f"wall {s['wall_s']:.1f} s (reading, prediction, postprocessing, reports, writing)")
PY
