#!/usr/bin/env bash
# CT perfusion from the command line, validated against known truth:
# - `vitruvian perfusion` on a perfusion-grid phantom (blocks crossing CBF, MTT and delay) with
#   oSVD, plain SVD and the model fit, drawn with exponential and with Erlang-3 residues: per-block CBF, CBV, MTT and Tmax against the truth maps
#   (check_perfusion_grid.py: r, bias, delay dependence) and the arterial input against the drawn one;
#   and with tissue ahead of the arterial input (negative delays), where plain SVD's CBF error
#   grows with the lead and oSVD's does not; and without noise, where the model fit's MTT r must
#   reach 0.9 (the phantom's rounding taken for no second tissue);
# - 20 head-neck phantoms of two seeds and noise levels, ten through a 2-rank campaign (`infer`)
#   with a perfusion route and ten through `vitruvian perfusion` on 2 ranks: the lesion's side,
#   the DEFUSE-3 verdict and the hypoperfused volume right in every study, core and penumbra
#   errors reported, the core's median error held at 50 % (check_perfusion_truth.py); ten heads
#   with lesions on both sides of each DEFUSE-3 criterion (--ischemia wide), whose every verdict
#   and hypoperfused volume (within 15 %) the model fit with TIPS and oSVD's Tmax must give;
#   eight heads in 1.5 mm slices, read slice by slice and through a 5 mm slab (`slab_mm`): the
#   slab's three slices narrow the healthy brain's CBF and bring the model fit's core and
#   penumbra nearer the truth;
#   maps, label map, study page and campaign page
#   (the triage in mL and the arterial and venous curves);
# - bad series (too few frames; only 3D series, so no route can run; a named series the study
#   lacks) fail that study with one line while the campaign goes on; a named series is analysed.
# Usage: perfusion_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# The validation grid, analysed with the three deconvolutions.
expect_exit 0 grid.err "$vit" phantom --kind perfusion-grid --seed 1 --out grid.h5 --threads 2
expect_exit 0 osvd.err "$vit" --threads 2 perfusion grid.h5 -o grid_osvd
expect_exit 0 svd.err "$vit" --threads 2 --set perfusion.deconvolution=svd perfusion grid.h5 -o grid_svd
expect_exit 0 model.err "$vit" --threads 2 --set perfusion.deconvolution=model perfusion grid.h5 -o grid_model
$py "$here/check_perfusion_grid.py" grid.h5 grid_osvd grid_svd --model grid_model --json grid_figures.json
# The grid without noise (its whole-HU rounding alone), the model fit with its mixtures: rounding
# that every voxel of a block shares must not pass for a second tissue (docs/PERFUSION.md).
expect_exit 0 clean.err "$vit" phantom --kind perfusion-grid --seed 1 --noise 0 --out clean.h5 --threads 2
expect_exit 0 clean_osvd.err "$vit" --threads 2 perfusion clean.h5 -o clean_osvd
expect_exit 0 clean_model.err "$vit" --threads 2 --set perfusion.deconvolution=model perfusion clean.h5 -o clean_model
$py "$here/check_perfusion_grid.py" clean.h5 clean_osvd clean_osvd --model clean_model --json clean_figures.json
$py - <<'PY'
import json
m = json.load(open("clean_figures.json"))["model"]
assert m["mtt"]["pearson_r"] >= 0.9 and m["cbv"]["pearson_r"] >= 0.95, m  # 0.955 and 0.997
print(f"noise-free grid, model fit: MTT r {m['mtt']['pearson_r']:.3f}, CBV r {m['cbv']['pearson_r']:.3f}")
PY
# The same grid drawn with flatter residues (Erlang order 3), which the model fit's dictionary
# does not hold exactly: what stays right and what does not (docs/PERFUSION.md).
expect_exit 0 erlang.err "$vit" phantom --kind perfusion-grid --seed 1 --residue-order 3 --out erlang.h5 --threads 2
for m in osvd svd model; do
  expect_exit 0 erlang_$m.err "$vit" --threads 2 --set perfusion.deconvolution=$m perfusion erlang.h5 -o erlang_$m
done
$py "$here/check_perfusion_grid.py" erlang.h5 erlang_osvd erlang_svd --model erlang_model --json erlang_figures.json
# Tissue whose bolus arrives 1-3 s before the arterial input's (an input taken downstream of a
# stenosis): plain SVD's CBF error grows with the lead, oSVD's does not.
expect_exit 0 early.err "$vit" phantom --kind perfusion-grid --seed 2 --delays=-3,-2,-1,0 --out early.h5 --threads 2
for m in osvd svd; do
  expect_exit 0 early_$m.err "$vit" --threads 2 --set perfusion.deconvolution=$m perfusion early.h5 -o early_$m
done
$py "$here/check_perfusion_grid.py" early.h5 early_osvd early_svd --json early_figures.json

# Twenty head-neck phantoms at two noise levels, one campaign on two ranks.
expect_exit 0 hn1.err "$vit" phantom --kind head-neck --studies 10 --seed 11 --shape 40,80,80 --noise 1 --out hn_noise1.h5 --threads 2
expect_exit 0 hn2.err "$vit" phantom --kind head-neck --studies 10 --seed 12 --shape 40,80,80 --noise 1.5 --out hn_noise15.h5 --threads 2
cat > campaign.yaml <<'YAML'
input: [hn_noise1.h5]
output: campaign
outputs: [hdf5, nifti, thumbnail]
routes:
  - name: perfusion
    analysis: perfusion
YAML
expect_exit 0 infer.err "$mpirun" -n 2 "$vit" --threads 1 infer --campaign campaign.yaml
# oSVD's core, under-called (median error 40 % and 33 % at the two noise levels; 58 % and 64 % while
# the CSF floor took every core voxel of little volume: docs/PERFUSION.md), held at a median of 50 %.
$py "$here/check_perfusion_truth.py" campaign hn_noise1.h5 --core-median-max 0.5
# The NumPy/SciPy peer of the benchmarks (the same method, written independently) on three of the
# ten: its volumes within 1 mL of the campaign's and the same verdict. Catches one side's method
# drifting from docs/PERFUSION.md (a changed default or step) without the other.
for s in $(ls campaign/studies | sort | head -3); do
  expect_exit 0 peer_$s.err env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $py "$here/../../benchmarks/peers/perfusion_osvd_numpy.py" \
    --input hn_noise1.h5 --study "$s" --json "peer_$s.json"
done
$py - <<'PY'
import json, os
for study in sorted(os.listdir("campaign/studies"))[:3]:
    peer = json.load(open(f"peer_{study}.json"))
    ours = json.load(open(f"campaign/studies/{study}/report.json"))["perfusion"]
    for key in ("core", "hypoperfused", "penumbra"):
        assert abs(peer["volumes_ml"][key] - ours["volumes_ml"][key]) <= 1.0, (study, key, peer["volumes_ml"], ours["volumes_ml"])
    assert peer["defuse3"]["eligible"] == ours["defuse3"]["eligible"], (study, peer["defuse3"], ours["defuse3"])
    print(f"{study}: peer core {peer['volumes_ml']['core']:.2f} / ours {ours['volumes_ml']['core']:.2f} mL, "
          f"hypoperfused {peer['volumes_ml']['hypoperfused']:.2f} / {ours['volumes_ml']['hypoperfused']:.2f} mL")
PY
# The noisier ten (the same study ids: another output) through the perfusion verb on two ranks.
expect_exit 0 noisy.err "$mpirun" -n 2 "$vit" --threads 1 perfusion hn_noise15.h5 -o noisy
grep -q "^head_neck_00000: core .* mL, Tmax>6s .* mL, mismatch .*; DEFUSE-3 " noisy.err.out || { cat noisy.err.out; fail "no summary line"; }
$py "$here/check_perfusion_truth.py" noisy hn_noise15.h5 --core-median-max 0.5
# The edge-preserving filter (spatial_filter: tips) with the model fit, on two of the ten: the
# report names the filter and the noise its weights are scaled by; the side is right.
expect_exit 0 tips.err "$vit" --threads 2 --set perfusion.spatial_filter=tips --set perfusion.deconvolution=model \
  perfusion hn_noise1.h5 -o tips --study head_neck_00000 --study head_neck_00001
$py - <<'PY'
import h5py, json
with h5py.File("hn_noise1.h5", "r") as f:
    for study in ("head_neck_00000", "head_neck_00001"):
        p = json.load(open(f"tips/studies/{study}/report.json"))["perfusion"]
        truth = json.loads(f["studies"][study].attrs["metadata_json"])["phantom"]
        assert p["filter"]["spatial"] == "tips" and p["deconvolution"] == "model", p["filter"]
        assert 2 < p["filter"]["frame_noise_hu"] < 8, p["filter"]  # the phantom's noise ×1 on 3 mm voxels: about 4 HU
        assert p["side"] == truth["ischemia"]["side"], (study, p["side"])
        print(f"{study} tips + model: core {p['volumes_ml']['core']:.1f} mL (truth {truth['label_volumes_ml']['ischemic_core']:.1f}), "
              f"noise {p['filter']['frame_noise_hu']:.2f} HU")
PY
# Lesions on both sides of each DEFUSE-3 criterion (--ischemia wide; 6 of these 10 are not
# eligible: cores of 70 mL or more, mismatch ratios under 1.8). The model fit with TIPS and oSVD's
# Tmax (tmax_deconvolution: osvd) gives the truth's verdict in each and the hypoperfused volume
# within 15 %; oSVD, whose core comes out under the truth's, calls some of the not-eligible
# eligible (reported here, not held: docs/PERFUSION.md).
expect_exit 0 wide.err "$vit" phantom --kind head-neck --studies 10 --seed 14 --shape 40,80,80 --ischemia wide --out hn_wide.h5 --threads 2
expect_exit 0 wide_tips.err "$mpirun" -n 2 "$vit" --threads 1 --set perfusion.deconvolution=model --set perfusion.spatial_filter=tips \
  --set perfusion.tmax_deconvolution=osvd perfusion hn_wide.h5 -o wide_tips
expect_exit 0 wide_osvd.err "$mpirun" -n 2 "$vit" --threads 1 perfusion hn_wide.h5 -o wide_osvd
for m in tips osvd; do
  $py "$here/check_perfusion_truth.py" wide_$m hn_wide.h5 --json wide_$m.json --no-limits >wide_$m.check 2>&1 || { cat wide_$m.check; fail "wide lesions: check_perfusion_truth.py failed"; }
done
$py - <<'PY'
import json
tips, osvd = (json.load(open(f"wide_{m}.json"))["studies"] for m in ("tips", "osvd"))
not_eligible = [r["study"] for r in tips if not r["truth_eligible"]]
assert len(not_eligible) >= 4, f"only {len(not_eligible)} of 10 wide-lesion studies not eligible by their truth"
for name, rows in (("model fit with TIPS, oSVD's Tmax", tips), ("oSVD", osvd)):
    assert all(r["side"] == r["truth_side"] for r in rows), (name, [(r["study"], r["side"], r["truth_side"]) for r in rows])
wrong = [(r["study"], r["core_ml"], r["truth_core_ml"]) for r in tips if r["eligible"] != r["truth_eligible"]]
assert not wrong, f"model fit with TIPS, oSVD's Tmax: DEFUSE-3 verdict against the truth's in {wrong} (study, core, truth's core mL)"
hypo = [r["hypoperfused_ml"] / r["truth_hypoperfused_ml"] for r in tips]
assert all(abs(h - 1) <= 0.15 for h in hypo), f"model fit with TIPS, oSVD's Tmax: hypoperfused / truth {hypo}"
report = json.load(open("wide_tips/studies/head_neck_00000/report.json"))["perfusion"]
assert report["deconvolution"] == "model" and report["tmax_deconvolution"] == "osvd", report["deconvolution"]
right = sum(r["eligible"] == r["truth_eligible"] for r in osvd)
print(f"wide lesions: {len(not_eligible)} of 10 not eligible; the model fit with TIPS and oSVD's Tmax gives every "
      f"verdict (hypoperfused {min(hypo):.2f}-{max(hypo):.2f} of the truth), oSVD {right} of 10")
PY
grep -q "model-based (Erlang residues, likelihood-weighted) deconvolution, Tmax by block-circulant SVD (oSVD) deconvolution" \
  wide_tips/studies/head_neck_00000/perfusion.html || fail "the study page does not name the Tmax's deconvolution"

# Thin slices (3 × 3 × 1.5 mm: 9 HU a voxel and frame), the model fit with TIPS and oSVD's Tmax,
# read slice by slice and through a 5 mm slab: the slab's three slices narrow the healthy brain's
# CBF (its 10th to 90th percentile, measured on the maps), and with less noise the model fit's
# core, called over the truth by the noise in the penumbra's flows, comes nearer (median error
# 137 % → 62 % here) and the penumbra too (docs/PERFUSION.md, "Thin slices read through a slab").
expect_exit 0 thin.err "$vit" phantom --kind head-neck --studies 8 --seed 15 --spacing 3,3,1.5 --out hn_thin.h5 --threads 2
for slab in 0 5; do
  expect_exit 0 thin_$slab.err "$mpirun" -n 2 "$vit" --threads 1 --set perfusion.deconvolution=model \
    --set perfusion.spatial_filter=tips --set perfusion.tmax_deconvolution=osvd --set perfusion.slab_mm=$slab \
    perfusion hn_thin.h5 -o thin_$slab
  $py "$here/check_perfusion_truth.py" thin_$slab hn_thin.h5 --json thin_$slab.json --no-limits >thin_$slab.check 2>&1 ||
    { cat thin_$slab.check; fail "thin slices: check_perfusion_truth.py failed"; }
done
$py - <<'PY'
import json, statistics
import h5py
import numpy as np
rows = {slab: json.load(open(f"thin_{slab}.json"))["studies"] for slab in (0, 5)}
for slab, studies in rows.items():
    assert all(r["side"] == r["truth_side"] and r["eligible"] == r["truth_eligible"] for r in studies), (slab, studies)
    for r in studies:
        f = json.load(open(f"thin_{slab}/studies/{r['study']}/report.json"))["perfusion"]["filter"]
        assert f["slab_slices"] == (3 if slab else 1), f
with h5py.File("hn_thin.h5", "r") as truth:
    names = [n.decode() if isinstance(n, bytes) else n for n in truth.attrs["label_names"]]
    ids = dict(zip(names, truth.attrs["label_ids"]))
    for r in rows[0]:
        study = r["study"]
        lesion = np.isin(truth["studies"][study]["labels/anatomy"][:], (ids["ischemic_core"], ids["ischemic_penumbra"]))
        spread = {}
        for slab in (0, 5):
            with h5py.File(f"thin_{slab}/studies/{study}/labels.h5", "r") as maps:
                m = maps["studies"][study]
                cbf, tissue = m["series/perfusion_cbf/image"][:], m["labels/perfusion"][:]
            healthy = cbf[(cbf > 0) & ~lesion & (tissue == 0)]
            spread[slab] = np.percentile(healthy, 90) / np.percentile(healthy, 10)
        assert spread[5] < 0.9 * spread[0], f"{study}: healthy CBF's 90th / 10th percentile {spread[5]:.2f} through the slab, {spread[0]:.2f} slice by slice"
core = {s: statistics.median(r["core_error"] for r in rows[s]) for s in rows}
pen = {s: statistics.median(r["penumbra_error"] for r in rows[s]) for s in rows}
assert core[5] < 0.6 * core[0], f"core's median error {core[5]:.2f} through the slab, {core[0]:.2f} slice by slice"
assert pen[5] <= 0.1 and pen[5] < pen[0], f"penumbra's median error {pen[5]:.2f} through the slab, {pen[0]:.2f} slice by slice"
print(f"thin slices: core median error {100 * core[0]:.0f} % slice by slice, {100 * core[5]:.0f} % through a 5 mm slab; "
      f"penumbra {100 * pen[0]:.0f} %, {100 * pen[5]:.0f} %")
PY
grep -q "the mean of 3 slices (5 mm slab) and smoothing" thin_5/studies/head_neck_00000/perfusion.html ||
  fail "the study page does not say the curves are read through a slab"

study=$(ls campaign/studies | head -1)
for f in labels.h5 perfusion.nii.gz perfusion_cbf.nii.gz perfusion_tmax.nii.gz perfusion.png perfusion_maps.png perfusion.html thumbnail.png; do
  [[ -s campaign/studies/$study/$f ]] || fail "campaign/studies/$study/$f missing"
done
grep -q "DEFUSE-3" campaign/studies/$study/perfusion.html || fail "the study page lacks the DEFUSE-3 verdict"
grep -Eq "deconvolution on the (CPU|GPU \(cuda:[0-9]+\))\." campaign/studies/$study/perfusion.html || fail "the study page does not say where the deconvolution ran"
grep -q "studies/$study/perfusion.html" campaign/index.html || fail "the campaign page does not link the study page"
# The maps and label map read back with nibabel on the series' grid.
$py - "$study" <<'PY'
import sys, json
import nibabel as nib, numpy as np
study = sys.argv[1]
labels = nib.load(f"campaign/studies/{study}/perfusion.nii.gz").get_fdata()
cbf = nib.load(f"campaign/studies/{study}/perfusion_cbf.nii.gz").get_fdata()
report = json.load(open(f"campaign/studies/{study}/report.json"))
assert labels.shape == cbf.shape, (labels.shape, cbf.shape)
brain = cbf > 0
assert brain.sum() > 1000, brain.sum()
healthy = report["perfusion"]["healthy_cbf_ml_100g_min"]
import h5py
with h5py.File("hn_noise1.h5", "r") as f:
    truth = json.loads(f["studies"][study].attrs["metadata_json"])["phantom"]["perfusion"]["tissue"]["brain"]["cbf_ml_100g_min"]
# oSVD underestimates fast flows at this noise (docs/PERFUSION.md): within -50 % … +20 % of the truth.
assert 0.5 * truth < healthy < 1.2 * truth, (healthy, truth)
print(f"nifti maps ok: {brain.sum()} brain voxels, healthy CBF {healthy:.1f} (truth {truth:.1f})")
PY

# The campaign page shows each study's triage with units and its arterial and venous curves.
$py - "$study" <<'PY'
import re, sys, json
study = sys.argv[1]
page = open("campaign/index.html").read()
row = next(r for r in page.split("<tr>") if f"studies/{study}/report.json" in r)
p = json.load(open(f"campaign/studies/{study}/report.json"))["perfusion"]
assert re.search(r"core \d+\.\d mL", row) and "mismatch" in row and "DEFUSE-3" in row, row[:400]
svg = re.search(r'<svg [^>]*aria-label="arterial input and venous output".*?</svg>', row)
assert svg, "no curves on the campaign page"
lines = re.findall(r'<polyline [^>]*points="([^"]*)"', svg.group(0))
assert len(lines) == 1 + p["venous_output"]["found"], len(lines)
assert all(len(l.split()) == p["frames"] for l in lines), [len(l.split()) for l in lines]
print("campaign page: triage in mL and the AIF/VOF curves of", study)
# The study page: the same curves full size, and each map's colour bar with its units.
page = open(f"campaign/studies/{study}/perfusion.html").read()
svg = re.search(r'<svg [^>]*aria-label="arterial input and venous output".*?</svg>', page)
assert svg and "time (s)" in svg.group(0) and "enhancement (HU)" in svg.group(0), "no curves on the study page"
lines = re.findall(r'<polyline [^>]*points="([^"]*)"', svg.group(0))
assert len(lines) == 1 + p["venous_output"]["found"] and all(len(l.split()) == p["frames"] for l in lines)
for unit in ("mL/100 g/min", "mL/100 g", " s (black"):
    assert unit in page, f"the study page's legend lacks {unit!r}"
# The part of the core taken from under the CSF floor (low_cbv_core), shown where there is one.
below = p["volumes_ml"]["core_below_cbv_min"]
row = re.search(r"of it, under the CSF floor \(CBV &lt; 0\.4 mL/100 g\) with Tmax &gt; 6 s</td><td>([0-9.]+) mL", page)
assert (row is not None) == (below > 0), (below, row)
assert row is None or abs(float(row.group(1)) - below) <= 0.05, (row.group(1), below)
print("study page: the curves, the maps' units and the core under the CSF floor", below)
PY

# Bad series, each one line in the failure record while the campaign goes on: one study's
# perfusion cut to 3 frames, another's to its first frame (3D: no 4D series left to analyse).
$py - <<'PY'
import h5py, shutil
shutil.copy("hn_noise1.h5", "bad.h5")
with h5py.File("bad.h5", "r+") as f:
    studies = sorted(f["studies"])
    for study, frames in ((studies[0], 3), (studies[1], 1)):
        s = f["studies"][study]["series"]["perfusion"]
        image = s["image"][:frames] if frames > 1 else s["image"][0]
        attrs = dict(s["image"].attrs)
        del s["image"]
        d = s.create_dataset("image", data=image, chunks=(1,) + image.shape[1:])
        for k, v in attrs.items():
            if k != "frame_times_s":
                d.attrs[k] = v
            elif frames > 1:
                d.attrs[k] = v[:frames]
        print("cut", study, "to", frames, "frame(s)")
PY
mapfile -t ids < <(ls campaign/studies | sort | head -3)
expect_exit 1 bad.err "$vit" --threads 2 perfusion bad.h5 -o bad --study "${ids[0]}" --study "${ids[1]}" --study "${ids[2]}"
$py - "${ids[@]}" <<'PY'
import json, sys
c = json.load(open("bad/campaign.json"))
failed = {f["study"]: f["error"] for f in c["failed"]}
assert "series perfusion: 3 frames; expected at least 10" in failed.get(sys.argv[1], ""), failed
assert "no route could run: route perfusion: the study has no 4D CT series" in failed.get(sys.argv[2], ""), failed
assert "\n" not in failed[sys.argv[1]] + failed[sys.argv[2]], failed
assert sys.argv[3] in c["done_studies"], c["done_studies"]
print("bad series: one line each;", sys.argv[3], "done")
PY
# The verb prints a line for every study, in order: two failures, then the triage.
[[ $(grep -c "" bad.err.out) == 3 ]] && grep -q "^${ids[0]}: failed: .*3 frames; expected at least 10" bad.err.out &&
  grep -q "^${ids[1]}: failed: .*no route could run" bad.err.out && grep -q "^${ids[2]}: core .* DEFUSE-3 " bad.err.out ||
  { cat bad.err.out; fail "the verb's lines: expected one per study"; }
# A series chosen by name: the named one is analysed, a name the study lacks fails naming what it has.
expect_exit 0 named.err "$vit" --threads 2 perfusion bad.h5 -o named --study "${ids[2]}" --series perfusion
grep -q "^${ids[2]}: core .* DEFUSE-3 " named.err.out || { cat named.err.out; fail "--series perfusion: no summary line"; }
expect_exit 1 unnamed.err "$vit" --threads 2 perfusion bad.h5 -o unnamed --study "${ids[2]}" --series flow
grep -q "the study has no series 'flow'; expected a 4D perfusion series \[t, z, y, x\] (it has: " unnamed/campaign.json || \
  { cat unnamed/campaign.json; fail "--series flow: no one-line failure naming the series"; }
echo "perfusion: grid validated, 20 head-neck studies right, bad series recorded"
