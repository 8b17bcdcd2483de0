"""Perfusion maps against the truth of a perfusion-grid phantom, with numpy/h5py only.

check_perfusion_grid.py PHANTOM.h5 OSVD_OUT SVD_OUT [--model MODEL_OUT] [--also NAME=OUT ...] [--json FIGURES.json]
                        [--no-limits]
For every block of the grid (its label in the phantom's `blocks` map, eroded by two voxels in
plane so in-plane smoothing does not mix neighbours), the median of each map over the block
against the block's truth: per parameter the Pearson r and the mean relative bias, Tmax against
the truth's delay (the exponential residue peaks at the delay), and CBF's relative error per
arterial delay, for oSVD, plain SVD and (--model) the model fit; and the arterial input found
against the one drawn. `--also NAME=OUT` adds another analysis's figures under NAME (reported,
never held: benchmarks/perfusion_accuracy.sh).
The limits depend on the drawn residue (Erlang order 1, the exponential, or higher: the
phantom's --residue-order). What is asserted and what is only reported: below.
"""
import json
import math
import sys

import h5py
import numpy as np
from scipy import ndimage

argv = sys.argv[1:]
also = []  # (name, output folder) of each --also
while "--also" in argv:
    i = argv.index("--also")
    also.append(tuple(argv[i + 1].split("=", 1)))
    del argv[i:i + 2]
args = [a for a in argv if not a.startswith("--")]
phantom, osvd_out, svd_out = args[:3]
figures_path = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
model_out = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else None
limits = "--no-limits" not in sys.argv


def block_table(out_dir):
    """Per block: truth (cbf, cbv, mtt, delay) and the maps' medians."""
    with h5py.File(phantom, "r") as f:
        study = next(iter(f["studies"]))
        s = f["studies"][study]
        truth = {k: s["series"]["truth_" + k]["image"][()] for k in ("cbf", "cbv", "mtt", "delay")}
        blocks = s["labels"]["blocks"][()].astype(np.int64)
    with h5py.File(f"{out_dir}/studies/{study}/labels.h5", "r") as f:
        maps = {k: f["studies"][study]["series"]["perfusion_" + k]["image"][()] for k in ("cbf", "cbv", "mtt", "tmax")}
    rows = []
    for b in range(1, blocks.max() + 1):
        mask = blocks == b
        # In plane only: the blocks are two slices thick, and the smoothing is in plane.
        inner = ndimage.binary_erosion(mask, structure=np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                                                                [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                                [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], bool), iterations=2)
        if inner.sum() < 4:
            sys.exit(f"perfusion grid: block {b} has {int(inner.sum())} voxels inside its two-voxel margin; expected "
                     "at least 4 (the phantom's block size changed?)")
        rows.append({"truth": {k: float(np.median(v[mask])) for k, v in truth.items()},
                     "measured": {k: float(np.median(v[inner])) for k, v in maps.items()}})
    return rows


def figures(rows):
    t = {k: np.array([r["truth"][k] for r in rows]) for k in ("cbf", "cbv", "mtt", "delay")}
    m = {k: np.array([r["measured"][k] for r in rows]) for k in ("cbf", "cbv", "mtt", "tmax")}
    out = {}
    for k in ("cbf", "cbv", "mtt"):
        out[k] = {"pearson_r": float(np.corrcoef(t[k], m[k])[0, 1]),
                  "mean_bias": float(np.mean((m[k] - t[k]) / t[k]))}
    err = np.abs(m["tmax"] - t["delay"])
    out["tmax"] = {"mean_abs_error_s": float(err.mean()), "max_abs_error_s": float(err.max()),
                   "within_1s": float(np.mean(err <= 1.0))}
    out["cbf_error_by_delay"] = {f"{d:g}": float(np.mean((m["cbf"][t["delay"] == d] - t["cbf"][t["delay"] == d]) /
                                                        t["cbf"][t["delay"] == d]))
                                 for d in sorted(set(t["delay"]))}
    return out


def arterial_input(out_dir):
    """The arterial input found (report.json) against the drawn one: peak and area ratios."""
    with h5py.File(phantom, "r") as f:
        study = next(iter(f["studies"]))
        drawn = json.loads(f["studies"][study].attrs["metadata_json"])["phantom"]["perfusion"]["arterial_input"]
    with open(f"{out_dir}/studies/{study}/report.json") as fp:
        found = json.load(fp)["perfusion"]["arterial_input"]
    # The drawn gamma variate's area: peak · Γ(α + 1) · β · (e / α)^α.
    a, b = drawn["alpha"], drawn["beta_s"]
    area = drawn["peak_hu"] * math.gamma(a + 1) * b * (math.e / a) ** a
    return {"peak_ratio": found["peak_hu"] / drawn["peak_hu"], "area_ratio": found["auc_hu_s"] * found["scale"] / area}


with h5py.File(phantom, "r") as f:
    meta = json.loads(f["studies"][next(iter(f["studies"]))].attrs["metadata_json"])["phantom"]
    order = meta["blocks"][0].get("residue_order", 1)  # the Erlang order of the drawn residues
print(f"residue: {meta['perfusion']['constants']['residue']}")
res = {"residue_order": order, "osvd": figures(block_table(osvd_out)), "svd": figures(block_table(svd_out))}
if model_out:
    res["model"] = figures(block_table(model_out))
for name, out_dir in also:
    res[name] = figures(block_table(out_dir))
res["arterial_input"] = arterial_input(osvd_out)
for method in ["osvd", "svd"] + (["model"] if model_out else []) + [name for name, _ in also]:
    f = res[method]
    print(f"{method}: CBF r {f['cbf']['pearson_r']:.3f} bias {100 * f['cbf']['mean_bias']:+.1f} %, "
          f"CBV r {f['cbv']['pearson_r']:.3f} bias {100 * f['cbv']['mean_bias']:+.1f} %, "
          f"MTT r {f['mtt']['pearson_r']:.3f} bias {100 * f['mtt']['mean_bias']:+.1f} %, "
          f"Tmax |error| mean {f['tmax']['mean_abs_error_s']:.2f} s max {f['tmax']['max_abs_error_s']:.2f} s; "
          "CBF error by delay " + ", ".join(f"{d} s: {100 * e:+.1f} %" for d, e in f["cbf_error_by_delay"].items()))
ai = res["arterial_input"]
print(f"arterial input: peak {100 * ai['peak_ratio']:.0f} %, area (after the venous scaling) {100 * ai['area_ratio']:.0f} % "
      "of the drawn one")
if figures_path:
    with open(figures_path, "w") as fp:
        json.dump(res, fp, indent=2)

# Held (asserted): the arterial input's peak and area within 10 % of the drawn ones (a smoothed
# input loses a third of its peak and inflates every map); oSVD CBF r >= 0.95, its mean bias
# between -35 % and +10 %, its error within 10 points across the delays; CBV r >= 0.8. On a grid
# with negative delays (--delays: the tissue's bolus before the arterial input's), plain SVD's
# CBF error at the earliest tissue at least 20 points above its error at delay 0, where oSVD's
# stays within 10 points. Reported against the targets, not yet held: CBF |mean bias| <= 10 %,
# CBV r >= 0.95, MTT r >= 0.9, Tmax within 1 s, plain SVD's CBF falling over delays 0 to 3 s
# (docs/PERFUSION.md).
o, s = res["osvd"], res["svd"]
od, sd = list(o["cbf_error_by_delay"].values()), list(s["cbf_error_by_delay"].values())
delays = [float(d) for d in s["cbf_error_by_delay"]]
early = delays[0] < 0 and 0.0 in delays  # the grid holds tissue ahead of the arterial input
svd_rise = s["cbf_error_by_delay"][f"{delays[0]:g}"] - s["cbf_error_by_delay"]["0"] if early else None
targets = [("oSVD CBF |mean bias| <= 10 %", abs(o["cbf"]["mean_bias"]) <= 0.10),
           ("oSVD CBV r >= 0.95", o["cbv"]["pearson_r"] >= 0.95), ("oSVD MTT r >= 0.9", o["mtt"]["pearson_r"] >= 0.9),
           ("oSVD Tmax within 1 s", o["tmax"]["max_abs_error_s"] <= 1.0)]
if early:
    targets.append((f"plain SVD CBF error rises >= 20 points from delay 0 to {delays[0]:g} s "
                    f"({100 * svd_rise:+.1f}), oSVD's within 10 ({100 * (max(od) - min(od)):.1f})", svd_rise >= 0.20))
else:
    targets.append((f"plain SVD CBF falls >= 10 points from delay {delays[0]:g} to {delays[-1]:g} s",
                    sd[-1] - sd[0] <= -0.10))
print("targets: " + ", ".join(f"{name}: {'met' if met else 'NOT met'}" for name, met in targets))
if model_out:
    m = res["model"]
    print("model targets: " + ", ".join(f"{name}: {'met' if met else 'NOT met'}" for name, met in [
        ("CBF r >= 0.95", m["cbf"]["pearson_r"] >= 0.95), ("CBF |mean bias| <= 10 %", abs(m["cbf"]["mean_bias"]) <= 0.10),
        ("CBV r >= 0.95", m["cbv"]["pearson_r"] >= 0.95), ("MTT r >= 0.9", m["mtt"]["pearson_r"] >= 0.9),
        ("Tmax within 1 s", m["tmax"]["max_abs_error_s"] <= 1.0)]))
if limits:
    problems = []
    if o["cbf"]["pearson_r"] < 0.95: problems.append(f"oSVD CBF r {o['cbf']['pearson_r']:.3f} < 0.95")
    for key in ("peak_ratio", "area_ratio"):
        if abs(ai[key] - 1) > 0.10: problems.append(f"arterial input {key} {ai[key]:.3f}, beyond 10 % of the drawn one")
    if not -0.35 <= o["cbf"]["mean_bias"] <= 0.10:
        problems.append(f"oSVD CBF bias {o['cbf']['mean_bias']:+.3f} outside -35 % … +10 %")
    if max(od) - min(od) > 0.10: problems.append(f"oSVD CBF error spreads {100 * (max(od) - min(od)):.1f} points over the delays")
    if o["cbv"]["pearson_r"] < 0.8: problems.append(f"oSVD CBV r {o['cbv']['pearson_r']:.3f} < 0.8")
    if early and svd_rise < 0.20:
        problems.append(f"plain SVD CBF error rises {100 * svd_rise:+.1f} points from delay 0 to {delays[0]:g} s; "
                        "expected at least +20 (a causal deconvolution cannot place tissue ahead of its input)")
    if model_out:
        # The model fit, held with a margin. Exponential residues (seeds 1-3): CBF r 0.955-0.969,
        # bias -1.4 … -4.1 %, CBV r 0.946-0.955, MTT r 0.71-0.78, Tmax mean error 0.80-0.84 s.
        # Flatter residues (Erlang orders 2-4, seeds 1-2): CBF overestimated by 23-53 % (its
        # known failure: docs/PERFUSION.md), CBV r 0.968-0.981, MTT r 0.80-0.87.
        m, md = res["model"], list(res["model"]["cbf_error_by_delay"].values())
        bias_range, cbv_r = ((-0.10, 0.10), 0.93) if order == 1 else ((-0.10, 0.60), 0.95)
        if m["cbf"]["pearson_r"] < 0.95: problems.append(f"model CBF r {m['cbf']['pearson_r']:.3f} < 0.95")
        if not bias_range[0] <= m["cbf"]["mean_bias"] <= bias_range[1]:
            problems.append(f"model CBF bias {m['cbf']['mean_bias']:+.3f} outside {bias_range[0]:+.2f} … {bias_range[1]:+.2f}")
        if max(md) - min(md) > 0.10: problems.append(f"model CBF error spreads {100 * (max(md) - min(md)):.1f} points over the delays")
        if m["cbv"]["pearson_r"] < cbv_r: problems.append(f"model CBV r {m['cbv']['pearson_r']:.3f} < {cbv_r}")
        if m["mtt"]["pearson_r"] < 0.6: problems.append(f"model MTT r {m['mtt']['pearson_r']:.3f} < 0.6")
        if m["tmax"]["mean_abs_error_s"] > 1.2:
            problems.append(f"model Tmax mean error {m['tmax']['mean_abs_error_s']:.2f} s > 1.2 s")
    if problems:
        sys.exit("perfusion grid: " + "; ".join(problems))
    print("perfusion grid: arterial input, CBF (r, bias, delay) and CBV r within their limits" +
          ("; plain SVD's CBF error grows where the tissue leads the input" if early else "") +
          ("; the model fit's CBF, CBV, MTT and Tmax within theirs" if model_out else ""))
