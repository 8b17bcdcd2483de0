"""The table of benchmarks/perfusion_accuracy.sh: each target of CT perfusion's validation, per
setting, over the grid's seeds and the head-neck studies, from the checkers' JSON files.

perfusion_accuracy_table.py WORK [COMMIT] [SETTINGS]
Reads WORK/grid/s<seed>/figures.json (tests/launch/check_perfusion_grid.py)
and WORK/heads/<setting>__<set>.json (tests/launch/check_perfusion_truth.py; <set> is
typical_noise1, typical_noise15, wide_noise1 or wide_noise15, described in heads/<set>.about);
prints the table
(markdown; SETTINGS, the options every analysis was given beyond its own, in its title) and writes it to WORK/accuracy.md, with every figure, to WORK/accuracy.json.
"""
import datetime
import glob
import json
import os
import platform
import re
import statistics
import sys

work = sys.argv[1]
commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
extra = sys.argv[3].strip() if len(sys.argv) > 3 else ""
SETTINGS = {"osvd": "oSVD", "svd": "plain SVD", "model": "model fit", "model_tips": "model fit, TIPS",
            "model_tips_tmax": "model fit, TIPS, oSVD's Tmax"}


def grid_figures():
    """{setting: [figures per seed]} and the seeds, in order."""
    per = {s: [] for s in SETTINGS}
    seeds = sorted(int(m.group(1)) for d in glob.glob(f"{work}/grid/s*")
                   if (m := re.fullmatch(r"s(\d+)", os.path.basename(d))) and os.path.exists(f"{d}/figures.json"))
    for seed in seeds:
        figures = json.load(open(f"{work}/grid/s{seed}/figures.json"))
        for s in (s for s in SETTINGS if s in figures):  # the heads' settings are not all the grid's
            f = figures[s]
            spread = list(f["cbf_error_by_delay"].values())
            per[s].append({"seed": seed, "cbf_r": f["cbf"]["pearson_r"], "cbf_bias": f["cbf"]["mean_bias"],
                           "cbf_delay_spread": max(spread) - min(spread), "cbv_r": f["cbv"]["pearson_r"],
                           "mtt_r": f["mtt"]["pearson_r"], "tmax_mean_s": f["tmax"]["mean_abs_error_s"],
                           "tmax_max_s": f["tmax"]["max_abs_error_s"]})
    return per, seeds


def about(name):
    """What set `name` is ("seed 11 at noise ×1"), as perfusion_accuracy.sh wrote it."""
    path = f"{work}/heads/{name}.about"
    return open(path).read().strip() if os.path.exists(path) else name


def head_figures():
    """{lesions (typical, wide): {setting: [one row per study of both noise sets]}}."""
    per = {}
    for path in sorted(glob.glob(f"{work}/heads/*__*_noise*.json")):
        setting, name = os.path.basename(path).removesuffix(".json").split("__")
        lesions = name.split("_")[0]
        for row in json.load(open(path))["studies"]:
            row = dict(row, set=name, about=about(name),
                       hypoperfused_error=abs(row["hypoperfused_ml"] - row["truth_hypoperfused_ml"]) / row["truth_hypoperfused_ml"])
            per.setdefault(lesions, {}).setdefault(setting, []).append(row)
    return per


def cell(values, met, fmt):
    """'lo–hi (k of n)', or the one value; k counts the values `met` holds for."""
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    span = fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)} … {fmt(hi)}"
    return f"{span} ({sum(map(met, values))} of {len(values)})"


grid, seeds = grid_figures()
heads = head_figures()
r3 = lambda v: f"{v:.3f}"
pct = lambda v: f"{100 * v:+.1f} %".replace("-", "−")
sec = lambda v: f"{v:.2f} s"
pts = lambda v: f"{100 * v:.1f}"
GRID_ROWS = [  # (target, key, met, format)
    ("CBF r ≥ 0.95", "cbf_r", lambda v: v >= 0.95, r3),
    ("CBF mean bias within ±10 %", "cbf_bias", lambda v: abs(v) <= 0.10, pct),
    ("CBF error's spread over the delays ≤ 10 points (flat)", "cbf_delay_spread", lambda v: v <= 0.10, pts),
    ("CBV r ≥ 0.95", "cbv_r", lambda v: v >= 0.95, r3),
    ("MTT r ≥ 0.9", "mtt_r", lambda v: v >= 0.9, r3),
    ("Tmax − delay, mean absolute ≤ 1 s", "tmax_mean_s", lambda v: v <= 1.0, sec),
    ("Tmax − delay, every block ≤ 1 s (largest)", "tmax_max_s", lambda v: v <= 1.0, sec),
]
HEAD_ROWS = [  # (target, per-study test, the figure shown, the studies it counts over)
    ("lesion side right", lambda r: r["side"] == r["truth_side"], None, None),
    ("DEFUSE-3 verdict as the truth's", lambda r: r["eligible"] == r["truth_eligible"], None, None),
    ("… where the truth is not eligible", lambda r: not r["eligible"], None, lambda r: not r["truth_eligible"]),
    ("… where the truth is eligible", lambda r: r["eligible"], None, lambda r: r["truth_eligible"]),
    ("hypoperfused within 15 %", lambda r: r["hypoperfused_error"] <= 0.15, "hypoperfused_error", None),
    ("penumbra within 15 %", lambda r: r["penumbra_error"] <= 0.15, "penumbra_error", None),
    ("core within 15 %", lambda r: r["core_error"] <= 0.15, "core_error", None),
]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
lines = [f"# CT perfusion against known truth ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
         f"commit {commit}, {cpu}, {os.cpu_count()} CPUs)", ""]
if extra:
    lines += [f"Every analysis with `{extra}` beside its own setting.", ""]
if seeds:
    names = [s for s in SETTINGS if grid[s]]
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    lines += [f"Validation grid, {which} at the default noise: the range over the seeds "
              "(seeds that meet the target of n).", "",
              "| target | " + " | ".join(SETTINGS[s] for s in names) + " |", "|---" * (len(names) + 1) + "|"]
    for target, key, met, fmt in GRID_ROWS:
        lines.append(f"| {target} | " + " | ".join(cell([f[key] for f in grid[s]], met, fmt) for s in names) + " |")
    lines.append("")
for lesions, what in (("typical", "typical lesions, every study eligible by DEFUSE-3"),
                      ("wide", "`--ischemia wide`: lesions on both sides of each DEFUSE-3 criterion")):
    if lesions not in heads:
        continue
    per = heads[lesions]
    names = [s for s in SETTINGS if s in per]
    sets = sorted({(r["set"], r["about"]) for rows in per.values() for r in rows})
    lines += [f"Head-neck phantoms, {what} ({' and '.join(a for _, a in sets)}; {len(per[names[0]])} studies): "
              "studies that meet the target, and the median absolute error.", "",
              "| target | " + " | ".join(SETTINGS[s] for s in names) + " |", "|---" * (len(names) + 1) + "|"]
    for target, test, key, among in HEAD_ROWS:
        cells = []
        for s in names:
            rows = [r for r in per[s] if among is None or among(r)]
            text = f"{sum(map(test, rows))} of {len(rows)}"
            if key and rows:
                text += f" (median {100 * statistics.median(r[key] for r in rows):.0f} %)"
            cells.append(text)
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    lines.append("")
if not seeds and not heads:
    sys.exit(f"perfusion_accuracy_table: no figures under {work}; expected grid/s<seed>/figures*.json or heads/*.json")
text = "\n".join(lines)
print(text)
with open(f"{work}/accuracy.md", "w") as fp:
    fp.write(text + "\n")
with open(f"{work}/accuracy.json", "w") as fp:
    json.dump({"commit": commit, "settings": extra, "grid": grid, "heads": heads}, fp, indent=2)
