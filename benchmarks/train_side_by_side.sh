#!/usr/bin/env bash
# The training step, Vitruvian (train_step_bench, 1 rank) against the same network, batch, patch
# and thread count in a PyTorch Python loop (benchmarks/peers/train_step_torch.py, Debian's
# python3-torch), alternated ROUNDS times on a fixed synthetic batch; medians and their ratio.
#   benchmarks/train_side_by_side.sh [BUILD_DIR] [ROUNDS] [PATCH] [BATCH] [STAGES] [BASE]
# DEVICE=cuda runs both on the GPU (bf16 autocast, cuDNN autotuning on both sides).
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
patch=${3:-48}
batch=${4:-2}
stages=${5:-4}
base=${6:-16}
device=${DEVICE:-cpu}
peer_flags=(--device "$device")
[[ $device == cuda ]] && peer_flags+=(--bf16)
root=$(cd "$(dirname "$0")/.." && pwd)
vit=() py=()
for ((r = 0; r < rounds; ++r)); do
  json=$(mktemp)
  OMP_NUM_THREADS=1 "$root/launch/mpirun.sh" -np 1 "$build/bin/train_step_bench" --patch "$patch" --batch "$batch" \
    --stages "$stages" --base "$base" --steps 6 --device "$device" --benchmark_filter=train_step \
    --benchmark_out="$json" --benchmark_out_format=json >/dev/null
  vit+=("$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['benchmarks'][0]['voxels_per_s'])" "$json")")
  rm -f "$json"
  py+=("$(OMP_NUM_THREADS=1 /usr/bin/python3 "$root/benchmarks/peers/train_step_torch.py" --patch "$patch" "$patch" "$patch" \
    --batch "$batch" --stages "$stages" --base "$base" --steps 6 --threads 1 "${peer_flags[@]}" |
    /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['voxels_per_s'])")")
done
/usr/bin/python3 - "${vit[*]}" "${py[*]}" "$patch" "$batch" "$device" <<'PY'
import statistics, sys
vit = [float(x) for x in sys.argv[1].split()]
py = [float(x) for x in sys.argv[2].split()]
print(f"# training step on {sys.argv[5]}, batch {sys.argv[4]} of {sys.argv[3]}^3, 1 rank, 1 thread; voxels/s per round")
print("vitruvian  " + " ".join(f"{v:10.0f}" for v in vit) + f"   median {statistics.median(vit):10.0f}")
print("pytorch    " + " ".join(f"{v:10.0f}" for v in py) + f"   median {statistics.median(py):10.0f}")
ratio = statistics.median(vit) / statistics.median(py)
print(f"vitruvian / pytorch python loop: {ratio:.3f}  (target >= 1.2: {'met' if ratio >= 1.2 else 'NOT met'})")
PY
