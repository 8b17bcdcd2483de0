"""A perfusion campaign's reports against the head-neck phantoms' truth, with json/h5py only.

check_perfusion_truth.py CAMPAIGN_OUT DATASET.h5 [DATASET.h5 ...] [--json FIGURES.json] [--no-limits]
                         [--core-median-max FRACTION]
Per study (asserted unless --no-limits): the lesion on the side the phantom put it, the DEFUSE-3
verdict equal to the one the truth volumes give (core < 70 mL, (core + penumbra) / core >= 1.8,
penumbra >= 15 mL), the hypoperfused volume (Tmax > 6 s) within 45 % of core + penumbra, and the
penumbra's volume within 15 % of the truth. Reported against the 15 % target, not yet held per
study: the core's volume (docs/PERFUSION.md); --core-median-max holds the median of its errors.
--json writes each study's volumes, side and verdict against the truth's, and its core and
penumbra errors (benchmarks/perfusion_accuracy.sh sums them over its settings).
"""
import json
import re
import statistics
import sys

import h5py

args = sys.argv[1:]
figures_path = args.pop(args.index("--json") + 1) if "--json" in args else None
limits = "--no-limits" not in args
core_median_max = float(args.pop(args.index("--core-median-max") + 1)) if "--core-median-max" in args else None
out, *datasets = [a for a in args if not a.startswith("--")]
problems, studies = [], []
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
            print(f"{study}: core {core:.1f} / {truth_core:.1f} mL, penumbra {pen:.1f} / {truth_pen:.1f} mL, side {p['side']} / "
                  f"{side}, DEFUSE-3 {p['defuse3']['eligible']} / {verdict}")
            hypo_found = p["volumes_ml"]["hypoperfused"]
            studies.append({"study": study, "dataset": path, "core_ml": core, "truth_core_ml": truth_core, "penumbra_ml": pen,
                            "truth_penumbra_ml": truth_pen, "hypoperfused_ml": hypo_found, "truth_hypoperfused_ml": hypo,
                            "side": p["side"], "truth_side": side, "eligible": p["defuse3"]["eligible"],
                            "truth_eligible": verdict, "core_error": abs(core - truth_core) / truth_core,
                            "penumbra_error": abs(pen - truth_pen) / truth_pen})
            if abs(hypo_found - hypo) > 0.45 * hypo:
                problems.append(f"{study}: hypoperfused {hypo_found:.1f} mL against {hypo:.1f}")
            if abs(pen - truth_pen) > 0.15 * truth_pen:
                problems.append(f"{study}: penumbra {pen:.1f} mL against {truth_pen:.1f}")
            if not re.fullmatch(r"cpu|cuda:\d+", str(p.get("device"))):
                problems.append(f"{study}: the report's device is {p.get('device')!r}; expected cpu or cuda:N")
            if p["side"] != side:
                problems.append(f"{study}: lesion side {p['side']} against {side}")
            if p["defuse3"]["eligible"] != verdict:
                problems.append(f"{study}: DEFUSE-3 {p['defuse3']['eligible']} against {verdict} from the truth")
rows = len(studies)
if rows == 0:
    sys.exit("no studies checked")
core_err, pen_err = [r["core_error"] for r in studies], [r["penumbra_error"] for r in studies]
print(f"core volume error: median {100 * statistics.median(core_err):.0f} %, within 15 % in "
      f"{sum(e <= 0.15 for e in core_err)}/{rows}; penumbra: median {100 * statistics.median(pen_err):.0f} %, "
      f"within 15 % in {sum(e <= 0.15 for e in pen_err)}/{rows} (target: all within 15 %)")
if core_median_max is not None and statistics.median(core_err) > core_median_max:
    problems.append(f"core volume: median error {100 * statistics.median(core_err):.0f} % over {rows} studies, "
                    f"above {100 * core_median_max:.0f} %")
if figures_path:
    with open(figures_path, "w") as fp:
        json.dump({"studies": studies}, fp, indent=2)
if problems and limits:
    sys.exit(f"perfusion truth: {len(problems)} problems over {rows} studies: " + "; ".join(problems))
if problems:
    print(f"perfusion truth: {len(problems)} problems over {rows} studies (not held: --no-limits): " + "; ".join(problems))
    sys.exit(0)
print(f"perfusion truth: {rows} studies, every side and verdict right, hypoperfused volume within 45 %, penumbra "
      "within 15 %")
