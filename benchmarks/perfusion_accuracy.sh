#!/usr/bin/env bash
# CT perfusion against known truth over many phantoms: the figures of docs/PERFUSION.md's "targets
# at a glance", measured again in one run.
#   benchmarks/perfusion_accuracy.sh [--build DIR | --vitruvian PATH] [--seeds N] [--heads N]
#     [--head-seeds A,B,C,D] [--work DIR]
# - The validation grid (`phantom --kind perfusion-grid`, seeds 1 … N, default 10, the default
#   noise), each seed analysed with oSVD, plain SVD, the model fit, and the model fit with the
#   edge-preserving filter (TIPS); per block against the truth maps by
#   tests/launch/check_perfusion_grid.py.
# - Head-neck phantoms (40 × 80 × 80 voxels, 30 frames): N studies (default 10) of seed 11 at noise
#   ×1 and N of seed 12 at noise ×1.5, as tests/launch/perfusion_cli.sh draws them (typical lesions:
#   every study eligible by DEFUSE-3), and N of seed 14 at noise ×1 and N of seed 13 at ×1.5 with
#   `--ischemia wide` (lesions on both sides of each DEFUSE-3 criterion); each set analysed on 2
#   ranks with oSVD (the default), with the model fit and TIPS, and with the model fit and TIPS
#   taking oSVD's Tmax (`tmax_deconvolution: osvd`); volumes, side and verdict against the
#   labelled truth by tests/launch/check_perfusion_truth.py. --head-seeds draws the four sets
#   (typical ×1, typical ×1.5, wide ×1, wide ×1.5) from other seeds (default 11,12,14,13): a
#   change chosen on these heads can be checked on heads it was not chosen on.
# Prints one table, per target of the issue and per setting: the range over the seeds (or
# studies) and how many meet it; writes it with every figure to WORK/accuracy.md and
# WORK/accuracy.json. WORK (default: a new folder under /tmp) is kept. With the defaults it takes
# about 2 minutes on 2 cores. Accuracy, not speed: the machine's load changes no figure.
# Every analysis runs with the route's defaults but for the keys named above; to measure another
# setting, pass it as VITRUVIAN_SET="--set perfusion.KEY=VALUE ..." (added to every analysis).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
vit=$root/build/bin/vitruvian seeds=10 heads=10 work= head_seeds=11,12,14,13
while (($#)); do
  case $1 in
    --build) vit=$2/bin/vitruvian; shift 2 ;;
    --vitruvian) vit=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --head-seeds) head_seeds=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "perfusion_accuracy: unknown argument '$1'; expected --build DIR, --vitruvian PATH, --seeds N, --heads N, --head-seeds A,B,C,D or --work DIR" >&2; exit 2 ;;
  esac
done
if ! [[ $seeds =~ ^[0-9]+$ && $heads =~ ^[0-9]+$ ]] || ((seeds + heads == 0)); then
  echo "perfusion_accuracy: --seeds $seeds --heads $heads; expected whole numbers, not both 0" >&2
  exit 2
fi
IFS=, read -r seed_typical1 seed_typical15 seed_wide1 seed_wide15 extra_seed <<<"$head_seeds"
for s in "$seed_typical1" "$seed_typical15" "$seed_wide1" "$seed_wide15"; do
  [[ $s =~ ^[0-9]+$ && -z ${extra_seed:-} ]] || {
    echo "perfusion_accuracy: --head-seeds $head_seeds; expected four whole numbers, A,B,C,D" >&2
    exit 2
  }
done
[[ -x $vit ]] || { echo "perfusion_accuracy: no $vit; expected a build folder (--build DIR) holding bin/vitruvian" >&2; exit 2; }
vit=$(cd "$(dirname "$vit")" && pwd)/$(basename "$vit")
py=/usr/bin/python3
checks=$root/tests/launch
work=${work:-$(mktemp -d /tmp/vitruvian_perfusion_accuracy.XXXXXX)}
mkdir -p "$work/grid" "$work/heads"
work=$(cd "$work" && pwd)
cd "$work"
rm -f grid/s*/figures*.json heads/*.json accuracy.md accuracy.json  # a reused WORK: only this run's figures count

# run LOG COMMAND...: the command's output to LOG, shown (and the run stopped) when it fails.
run() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { echo "perfusion_accuracy: failed: $* (its output: $log)" >&2; tail -20 "$log" >&2; exit 1; }
}
extra=${VITRUVIAN_SET:-}
declare -A settings=([osvd]="" [svd]="--set perfusion.deconvolution=svd" [model]="--set perfusion.deconvolution=model"
  [model_tips]="--set perfusion.deconvolution=model --set perfusion.spatial_filter=tips"
  [model_tips_tmax]="--set perfusion.deconvolution=model --set perfusion.spatial_filter=tips --set perfusion.tmax_deconvolution=osvd")
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started)) s"; }

for ((seed = 1; seed <= seeds; ++seed)); do
  g=grid/s$seed
  mkdir -p "$g"
  echo "grid seed $seed of $seeds: drawing and analysing with oSVD, plain SVD, the model fit and the model fit with TIPS ($(elapsed))"
  run "$g/phantom.log" "$vit" phantom --kind perfusion-grid --seed "$seed" --out "$g/grid.h5" --threads 2 --force
  for s in osvd svd model model_tips; do
    # shellcheck disable=SC2086 # the settings are words
    run "$g/$s.log" "$vit" --threads 2 $extra ${settings[$s]} perfusion "$g/grid.h5" -o "$g/$s" --force
  done
  run "$g/check.log" "$py" "$checks/check_perfusion_grid.py" "$g/grid.h5" "$g/osvd" "$g/svd" --model "$g/model" \
    --also "model_tips=$g/model_tips" --json "$g/figures.json" --no-limits
  rm -rf "$g"/{osvd,svd,model,model_tips}/studies/*/labels.h5
done

if ((heads > 0)); then
  # seed, noise, lesions (--ischemia), name: the typical sets are launch.perfusion_cli's.
  for set in "$seed_typical1 1 typical typical_noise1" "$seed_typical15 1.5 typical typical_noise15" \
    "$seed_wide1 1 wide wide_noise1" "$seed_wide15 1.5 wide wide_noise15"; do
    read -r seed noise lesions name <<<"$set"
    echo "seed $seed at noise ×$noise" >"heads/$name.about"
    echo "head-neck: $heads studies of seed $seed at noise ×$noise with $lesions lesions, analysed on 2 ranks with oSVD, with the model fit and TIPS, and with those and oSVD's Tmax ($(elapsed))"
    run "heads/$name.log" "$vit" phantom --kind head-neck --studies "$heads" --seed "$seed" --shape 40,80,80 --noise "$noise" \
      --ischemia "$lesions" --out "heads/$name.h5" --threads 2 --force
    for s in osvd model_tips model_tips_tmax; do
      # shellcheck disable=SC2086
      run "heads/${s}__$name.log" "$root/launch/mpirun.sh" -np 2 "$vit" --threads 1 $extra ${settings[$s]} perfusion "heads/$name.h5" \
        -o "heads/${s}__$name" --force
      run "heads/${s}__$name.check.log" "$py" "$checks/check_perfusion_truth.py" "heads/${s}__$name" "heads/$name.h5" \
        --json "heads/${s}__$name.json" --no-limits
    done
  done
fi

echo "tabulating ($(elapsed))"
"$py" "$root/benchmarks/perfusion_accuracy_table.py" "$work" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$extra" |
  tee accuracy.md
echo "figures: $work/accuracy.md, $work/accuracy.json"
