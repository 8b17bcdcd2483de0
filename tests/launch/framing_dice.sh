#!/usr/bin/env bash
# The quickstart's network, trained as the README trains it on chest phantoms framed as scans
# (fields of view drawn per study), keeps held-out Dice >= 0.85 on the lungs and the heart over
# phantoms framed from tight (340 mm, about the body's width) to twice the body's width (700 mm),
# run with the campaign's default body crop. Prints every study's Dice.
# Usage: framing_dice.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# The README's main job: the same phantoms and the same training configuration.
expect_exit 0 phantoms.err "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 16 --spacing 3.5 \
  --out phantoms.h5 --force
expect_exit 0 train.err "$mpirun" -np 2 "$vit" --config "$repo/launch/configs/quickstart.yaml" train --force

# Held-out phantoms (another seed): tight, drawn from the kind's range, and twice the body's width.
for framing in "tight 340" "drawn auto" "wide 700"; do
  set -- $framing
  expect_exit 0 "heldout_$1.err" "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 2 --spacing 3.5 \
    --seed 1000 --fov "$2" --out "heldout_$1.h5" --force
done
for framing in tight drawn wide; do
  cat > "campaign_$framing.yaml" <<YAML
input: heldout_$framing.h5
output: campaign_$framing
overlap: 0.5
routes:
  - name: organs
    model: runs/quickstart/model
    largest_component: [lung_left, lung_right, heart]
    fill_holes: [heart]
calcium:
  series: ct
  arteries: [coronary_lad, coronary_lcx, coronary_rca]
  region: heart
YAML
  expect_exit 0 "infer_$framing.err" "$mpirun" -np 2 "$vit" --threads 1 infer --campaign "campaign_$framing.yaml"
done

$py - <<'PY'
import glob, json
rows, low = [], []
for path in sorted(glob.glob("campaign_*/studies/*/report.json")):
    report = json.load(open(path))
    dice = report["routes"]["organs"]["dice"]
    rows.append((path.split("/")[0] + " " + path.split("/")[2], dice))
    low += [(path, name, d) for name, d in dice.items() if d < 0.85]
for study, dice in rows:
    print(study, " ".join(f"{k} {v:.3f}" for k, v in sorted(dice.items())))
assert len(rows) == 6, f"expected 6 study reports, found {len(rows)}"
assert all(set(d) == {"lung_left", "lung_right", "heart"} for _, d in rows), rows
assert not low, f"Dice below 0.85: {low}"

# Calcium at 3.5 mm: plaques drawn at 1.5-4 mm fill about one voxel each, so a study scores tens
# to a few hundred (at most 400 a plaque), lesions found where the phantom put plaques and
# none elsewhere, and the score is marked as an estimate on this grid.
import h5py
for framing in ("tight", "drawn", "wide"):
    with h5py.File(f"heldout_{framing}.h5", "r") as f:
        for study in f["studies"]:
            plaques = len(json.loads(f["studies"][study].attrs["metadata_json"])["phantom"]["plaques"])
            calcium = json.load(open(f"campaign_{framing}/studies/{study}/report.json"))["calcium"]
            total = calcium["total"]
            print(framing, study, f"plaques {plaques}, lesions {total['lesions']}, Agatston {total['agatston']:.0f}")
            assert calcium["estimate"], calcium
            assert (total["lesions"] > 0) == (plaques > 0) and total["lesions"] <= plaques, (study, plaques, total)
            assert total["agatston"] <= 400 * plaques, (study, plaques, total)
PY
echo "framing_dice: ok"
