#!/usr/bin/env bash
# `vitruvian phantom --kind perfusion-grid` as a user runs it: the HDF5 dataset read with h5py
# alone holds the 4D perfusion series, the four truth maps and the block label map, consistent
# with the ground truth in the metadata; the same on 2 ranks; NIfTI copies of the truth maps
# (nibabel); DICOM of the perfusion series only (pydicom); --describe prints the levels; a grid of
# Erlang-3 residues (--residue-order 3) against curves computed here with scipy.
# Usage: phantom_grid_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 grid.err "$vit" phantom --kind perfusion-grid --studies 2 --seed 4 --out grid.h5 --nifti nifti --dicom dicom
expect_exit 0 grid2.err "$mpirun" -np 2 "$vit" phantom --kind perfusion-grid --studies 2 --seed 4 --out grid2.h5
grep -q "perfusion-grid studies of 8x80x96 voxels (2x2x5 mm)" grid.err || { cat grid.err; fail "no grid shape in the log"; }

$py - <<'PY'
import glob, json
import h5py, nibabel as nib, numpy as np
import pydicom

f = h5py.File("grid.h5", "r")
names = dict(zip(f.attrs["label_ids"].tolist(), [n.decode() if isinstance(n, bytes) else n for n in f.attrs["label_names"]]))
assert len(names) == 140 and names[1] == "block_001" and names[140] == "block_140", names
ids = sorted(f["studies"])
assert ids == ["perfusion_grid_00000", "perfusion_grid_00001"], ids
for sid in ids:
    study = f["studies"][sid]
    perfusion = study["series/perfusion/image"]
    assert perfusion.shape == (40, 8, 80, 96) and perfusion.dtype == np.int16, (perfusion.shape, perfusion.dtype)
    times = study["series/perfusion"].attrs["frame_times_s"]
    assert np.allclose(np.diff(times), 1.5), times
    truth = json.loads(study.attrs["metadata_json"])["phantom"]
    assert truth["generator"]["kind"] == "perfusion-grid"
    labels = study["labels/blocks"][()]
    maps = {name: study[f"series/truth_{name}/image"][()] for name in ("cbf", "cbv", "mtt", "delay")}
    for name, m in maps.items():
        assert m.dtype == np.float32 and m.shape == (8, 80, 96), (name, m.dtype, m.shape)
        assert not m[labels == 0].any(), f"truth_{name} is not 0 outside the blocks"
    assert len(truth["blocks"]) == 140
    for block in truth["blocks"]:
        z, y, x = block["origin_zyx"]
        dz, dy, dx = block["size_zyx"]
        box = (slice(z, z + dz), slice(y, y + dy), slice(x, x + dx))
        assert (labels[box] == block["label"]).all(), block
        assert (labels == block["label"]).sum() == dz * dy * dx, block
        for name, key in (("cbf", "cbf_ml_100g_min"), ("cbv", "cbv_ml_100g"), ("mtt", "mtt_s"), ("delay", "delay_s")):
            assert np.allclose(maps[name][box], block[key], rtol=1e-6), (name, block)
        assert abs(block["cbf_ml_100g_min"] - 60 * block["cbv_ml_100g"] / block["mtt_s"]) < 1e-6, block
    # The artery peaks at about 300 HU above its 40 HU, in the frame nearest 9.5 s.
    a = truth["perfusion"]["artery"]
    z, y, x = a["origin_zyx"]
    dz, dy, dx = a["size_zyx"]
    curve = perfusion[:, z:z + dz, y:y + dy, x:x + dx].mean(axis=(1, 2, 3))
    assert abs(curve.max() - 340) < 10 and abs(times[curve.argmax()] - 9.5) <= 0.75, (curve.max(), curve.argmax())
    # Noise: Gaussian, 15 HU for a 1 x 1 x 5 mm voxel, so 7.5 HU on 2 x 2 x 5 mm (the study's
    # noise record), in the 35 HU background of the first frame.
    sigma = truth["noise"]["perfusion"]["sigma"]
    assert abs(sigma - 7.5) < 1e-9, sigma
    inside = (labels == 0) & (np.abs(perfusion[0] - 35) < 100)
    assert abs(perfusion[0][inside].std() - sigma) < 0.5, perfusion[0][inside].std()

# 2 ranks write the same contents.
g = h5py.File("grid2.h5", "r")
for sid in ids:
    for name in ("series/perfusion/image", "series/truth_cbf/image", "labels/blocks"):
        assert np.array_equal(f["studies"][sid][name][()], g["studies"][sid][name][()]), (sid, name)
    assert f["studies"][sid].attrs["metadata_json"] == g["studies"][sid].attrs["metadata_json"]

# NIfTI: the truth maps and the block labels as nibabel reads them.
study = f["studies"][ids[0]]
cbf = np.asarray(nib.load(f"nifti/{ids[0]}/truth_cbf.nii.gz").dataobj)
assert np.array_equal(cbf, study["series/truth_cbf/image"][()].T), "truth_cbf NIfTI"
blocks = np.asarray(nib.load(f"nifti/{ids[0]}/blocks.nii.gz").dataobj)
assert np.array_equal(blocks, study["labels/blocks"][()].T), "blocks NIfTI"

# DICOM: the perfusion series only (the truth maps are not images), 40 time points x 8 slices.
folders = sorted(p.split("/")[-1] for p in glob.glob(f"dicom/{ids[0]}/*"))
assert folders == ["perfusion"], folders
files = sorted(glob.glob(f"dicom/{ids[0]}/perfusion/*.dcm"))
assert len(files) == 320, len(files)
ds = pydicom.dcmread(files[0])
assert ds.Modality == "CT" and ds.BodyPartExamined == "HEAD", (ds.Modality, ds.BodyPartExamined)
print("perfusion grid: series, truth maps, blocks, NIfTI and DICOM check out")
PY

# Another residue and other delays (one of them negative: the tissue's bolus ahead of the
# arterial input's): noise-free blocks of Erlang order 3 against (ρ/k_H) CBF ∫ AIF(τ − delay)
# R(t − τ) dτ with R(t) = Q(3, 3t / MTT) (scipy's regularised upper incomplete gamma).
expect_exit 0 erlang.err "$vit" phantom --kind perfusion-grid --seed 4 --noise 0 --residue-order 3 --delays=-2,0,1.5,4 --out erlang.h5
expect_exit 2 erlang_bad.err "$vit" phantom --kind head-neck --residue-order 3 --out bad.h5
grep -q -- "--residue-order: applies to --kind perfusion-grid only" erlang_bad.err || { cat erlang_bad.err; fail "no one-line error for --residue-order on head-neck"; }
expect_exit 2 delays_kind.err "$vit" phantom --kind head-neck --delays=-1,0,1,2 --out bad.h5
grep -q -- "--delays: applies to --kind perfusion-grid only" delays_kind.err || { cat delays_kind.err; fail "no one-line error for --delays on head-neck"; }
expect_exit 2 delays_order.err "$vit" phantom --kind perfusion-grid --delays=0,2,1,3 --out bad.h5
grep -q -- "--delays: 1 s (slab 3); expected four increasing delays from -4 to 10 s" delays_order.err || { cat delays_order.err; fail "no one-line error for unordered --delays"; }
expect_exit 2 delays_count.err "$vit" phantom --kind perfusion-grid --delays=0,1 --out bad.h5
grep -q -- "--delays: 2 values; expected four delays" delays_count.err || { cat delays_count.err; fail "no one-line error for two --delays"; }
expect_exit 2 delays_five.err "$vit" phantom --kind perfusion-grid --delays=0,1,2,3,4 --out bad.h5
grep -q -- "--delays: 5 values; expected four delays" delays_five.err || { cat delays_five.err; fail "no one-line error for five --delays"; }
[[ ! -e bad.h5 ]] || fail "a refused phantom left bad.h5"
$py - <<'PY'
import json
import h5py, numpy as np
from scipy import special

f = h5py.File("erlang.h5", "r")
study = f["studies"]["perfusion_grid_00000"]
truth = json.loads(study.attrs["metadata_json"])["phantom"]
constants = truth["perfusion"]["constants"]
assert constants["residue"].startswith("Erlang order 3"), constants
aif = truth["perfusion"]["arterial_input"]
def gamma_variate(t):
    x = np.clip((t - aif["t0_s"]) / (aif["alpha"] * aif["beta_s"]), 0, None)
    return np.where(t > aif["t0_s"], aif["peak_hu"] * x ** aif["alpha"] * np.exp(aif["alpha"] * (1 - x)), 0.0)
series = study["series/perfusion/image"][()].astype(float)
times = study["series/perfusion"].attrs["frame_times_s"]
labels = study["labels/blocks"][()]
assert truth["levels"]["delay_s"] == [-2, 0, 1.5, 4], truth["levels"]
delay_map = study["series/truth_delay/image"][()]
for block in truth["blocks"]:
    assert np.all(delay_map[labels == block["label"]] == block["delay_s"]), block
assert sorted({b["delay_s"] for b in truth["blocks"]}) == [-2, 0, 1.5, 4]
h = 0.005
tau = np.arange(0, times[-1] + h, h)
worst = 0.0
for block in truth["blocks"]:
    assert block["residue_order"] == 3, block
    residue = special.gammaincc(3, 3 * (tau + h / 2) / block["mtt_s"])
    arterial = gamma_variate(tau + h / 2 - block["delay_s"])
    conv = np.convolve(arterial, residue)[: len(tau)] * h
    expected = constants["tissue_factor"] * block["cbf_ml_100g_min"] / 6000 * np.interp(times, tau + h, conv)
    measured = series[:, labels == block["label"]].mean(axis=1) - truth["layout"]["background_hu"]
    worst = max(worst, float(np.abs(measured - expected).max()))
# Stored as int16: 0.5 HU of rounding, plus the convolutions' discretisation.
assert worst < 0.6, worst
print(f"Erlang-3 grid, delays -2 to 4 s: every block's curve within {worst:.2f} HU of scipy's")
PY

expect_exit 0 describe.err "$vit" phantom --kind perfusion-grid --describe
grep -q "| tissue_block | block_001 … block_140 (1 … 140) |" describe.err.out || { cat describe.err.out; fail "describe has no block row"; }
grep -q "| MTT (s) | 3.43, 4, 4.8, 6, 8, 12, 24 |" describe.err.out || fail "describe has no MTT levels"
echo "phantom grid CLI: all checks passed"
