"""A perfusion campaign's reports against the head-neck phantoms' truth, with json/h5py only.

check_perfusion_truth.py CAMPAIGN_OUT DATASET.h5 [DATASET.h5 ...]
Per study: core and penumbra volumes within 15 % of the labelled truth, the lesion on the side
the phantom put it, and the DEFUSE-3 verdict equal to the one the truth volumes give (core < 70
mL, (core + penumbra) / core >= 1.8, penumbra >= 15 mL). Prints one line per study and a summary.
"""
import json
import sys

import h5py

out, datasets = sys.argv[1], sys.argv[2:]
problems, rows = [], 0
for path in datasets:
    with h5py.File(path, "r") as f:
        for study in f["studies"]:
            meta = json.loads(f["studies"][study].attrs["metadata_json"])["phantom"]
            truth_core = meta["label_volumes_ml"]["ischemic_core"]
            truth_pen = meta["label_volumes_ml"]["ischemic_penumbra"]
            side = meta["ischemia"]["side"]
            with open(f"{out}/studies/{study}/report.json") as fp:
                p = json.load(fp)["perfusion"]
            core, pen = p["volumes_ml"]["core"], p["volumes_ml"]["penumbra"]
            hypo = truth_core + truth_pen
            verdict = truth_core < 70 and (truth_core == 0 or hypo / truth_core >= 1.8) and truth_pen >= 15
            rows += 1
            print(f"{study}: core {core:.1f} / {truth_core:.1f} mL, penumbra {pen:.1f} / {truth_pen:.1f} mL, side {p['side']} / "
                  f"{side}, DEFUSE-3 {p['defuse3']['eligible']} / {verdict}")
            if abs(core - truth_core) > 0.15 * truth_core:
                problems.append(f"{study}: core {core:.1f} mL against {truth_core:.1f}")
            if abs(pen - truth_pen) > 0.15 * truth_pen:
                problems.append(f"{study}: penumbra {pen:.1f} mL against {truth_pen:.1f}")
            if p["side"] != side:
                problems.append(f"{study}: lesion side {p['side']} against {side}")
            if p["defuse3"]["eligible"] != verdict:
                problems.append(f"{study}: DEFUSE-3 {p['defuse3']['eligible']} against {verdict} from the truth")
if rows == 0:
    sys.exit("no studies checked")
if problems:
    sys.exit(f"perfusion truth: {len(problems)} problems over {rows} studies: " + "; ".join(problems))
print(f"perfusion truth: {rows} studies, every volume within 15 %, every side and verdict right")
