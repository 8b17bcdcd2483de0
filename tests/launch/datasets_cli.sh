#!/usr/bin/env bash
# `vitruvian convert | inspect | export` as a user runs them, on NIfTI files written by nibabel
# (Debian's python3-nibabel), and the exports read back by nibabel: values and affines must be
# those of the originals. Bad files: one line each, the other studies land, non-zero exit, and
# no output or temporary file left when nothing could be imported.
# Usage: datasets_cli.sh VITRUVIAN WORKDIR
set -euo pipefail
vit=$1
work=$2
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"

$py - <<'PY'
import nibabel as nib, numpy as np
rng = np.random.default_rng(0)
c, s = np.cos(0.3), np.sin(0.3)
aff = np.array([[-0.8 * c, 0.9 * s, 0, 100.5], [-0.8 * s, -0.9 * c, 0, 120.25], [0, 0, 2.5, -300], [0, 0, 0, 1]])
for i in range(3):
    ct = rng.integers(-1024, 2000, (20, 24, 16)).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, aff), f"ct{i}.nii.gz")
    lab = np.zeros((20, 24, 16), np.uint8)
    lab[5:10, 5:12, 3:8] = 1
    lab[12:15, 3:6, 9:12] = 2
    nib.save(nib.Nifti1Image(lab, aff), f"seg{i}.nii.gz")
mr = rng.random((20, 24, 16, 3)).astype(np.float32)  # 4D
nib.save(nib.Nifti2Image(mr, aff), "dyn.nii")
shifted = aff.copy()
shifted[2, 3] += 5
nib.save(nib.Nifti1Image(lab, shifted), "seg_shifted.nii.gz")
nib.save(nib.Nifti1Image(lab.astype(np.float32) + 0.5, aff), "seg_fractional.nii.gz")
open("bad.nii.gz", "wb").write(open("ct0.nii.gz", "rb").read()[:300])
PY

cat > manifest.yaml <<'YAML'
labels: {1: liver, 2: spleen}
studies:
  - id: good_a
    series:
      ct: {file: ct0.nii.gz, modality: CT}
      dyn: {file: dyn.nii, modality: MR}
    labels:
      organs: {file: seg0.nii.gz, series: ct}
  - id: shifted_label
    series: {ct: ct1.nii.gz}
    labels: {organs: seg_shifted.nii.gz}
  - id: truncated
    series: {ct: bad.nii.gz}
  - id: fractional_label
    series: {ct: ct1.nii.gz}
    labels: {organs: seg_fractional.nii.gz}
  - id: good_b
    series: {ct: ct2.nii.gz}
    labels: {organs: seg2.nii.gz}
    metadata: {site: test, slices: 16}
YAML

# Three bad studies are named, one line each; the two good ones land; exit 1.
expect_exit 1 convert.err "$vit" convert --manifest manifest.yaml -o d.h5 --chunk 8,16,16 --deflate 3
[[ $(grep -c "^vitruvian convert: rejected" convert.err) == 3 ]] || { cat convert.err; fail "expected 3 rejection lines"; }
grep -q "rejected .*seg_shifted.nii.gz: label map geometry .*differs from series 'ct'" convert.err || fail "shifted label"
grep -q "rejected .*bad.nii.gz: .*truncated or corrupt" convert.err || fail "truncated file"
grep -q "rejected .*seg_fractional.nii.gz: label map holds non-integer values" convert.err || fail "fractional label"
grep -q "d.h5: 2 studies, 3 series, 2 label maps" convert.err.out || { cat convert.err.out; fail "summary"; }

# inspect: studies, series, shapes, spacing, dtype, chunking, compression, label volumes.
"$vit" inspect d.h5 >inspect.out
grep -q "2 studies" inspect.out || fail "inspect count"
grep -Eq "series +dyn +MR +float32 +3x16x24x20 +0.8 0.9 2.5 +1x8x16x16 +shuffle\+deflate-3" inspect.out ||
  { cat inspect.out; fail "inspect 4D series line"; }
grep -Eq "1 liver +0\.3[12] mL +\(175 voxels\)" inspect.out || { cat inspect.out; fail "inspect label volume"; }
"$vit" inspect d.h5 --json >inspect.json
$py -c "
import json; r = json.load(open('inspect.json'))
assert [s['id'] for s in r['studies']] == ['good_a', 'good_b'], r['studies']
assert r['label_table'] == {'1': 'liver', '2': 'spleen'}
assert r['studies'][1]['metadata'] == {'site': 'test', 'slices': 16}
"

# export: nibabel reads back the original values and affine.
"$vit" export d.h5 --study good_a --series ct -o ct_back.nii.gz >/dev/null
"$vit" export d.h5 --out-dir exported --nifti2 >/dev/null
$py - <<'PY'
import nibabel as nib, numpy as np
def same(a, b):
    a, b = nib.load(a), nib.load(b)
    assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)), "values differ"
    assert a.get_data_dtype() == b.get_data_dtype(), (a.get_data_dtype(), b.get_data_dtype())
    assert np.allclose(a.affine, b.affine, atol=1e-5), (a.affine, b.affine)
same("ct0.nii.gz", "ct_back.nii.gz")
same("ct0.nii.gz", "exported/good_a/ct.nii.gz")
same("dyn.nii", "exported/good_a/dyn.nii.gz")
same("seg0.nii.gz", "exported/good_a/label_organs.nii.gz")
same("ct2.nii.gz", "exported/good_b/ct.nii.gz")
assert nib.load("exported/good_b/ct.nii.gz").header.sizeof_hdr == 540
PY

# The simple form: one NIfTI with a label, written as shards plus an index.
"$vit" convert ct1.nii.gz --label organs=seg1.nii.gz --modality CT --shard-studies 1 -o simple.h5 >/dev/null
[[ -f simple.shard-00000.h5 ]] || fail "no shard file"
"$vit" inspect simple.h5 --no-volumes | grep -q "in shards" || fail "index not recognised"

# Nothing importable: exit 1, no output, no temporary file.
expect_exit 1 none.err "$vit" convert bad.nii.gz -o none.h5
grep -q "none.h5 was not written" none.err || fail "no-output message"
[[ -z $(ls -A | grep -E "^none\.h5|\.tmp\.") ]] || { ls -A; fail "left files behind"; }

# A manifest typo names the file, the line and the keys it knows.
printf 'studies:\n  - id: a\n    series: {ct: {file: ct0.nii.gz, modalty: CT}}\n' >typo.yaml
expect_exit 2 typo.err "$vit" convert --manifest typo.yaml -o typo.h5
grep -q "typo.yaml:3: unknown key 'modalty' in a series; expected one of: file, modality" typo.err || fail "typo message"

# Existing output is kept unless --force.
expect_exit 2 exists.err "$vit" convert ct0.nii.gz -o d.h5
grep -q "d.h5: exists already; pass --force" exists.err || fail "exists message"
"$vit" inspect d.h5 --no-volumes | grep -q "2 studies" || fail "existing dataset was touched"
# preprocess: a T2 series on its own coarser grid joins the CT's grid, at a new spacing, cropped.
$py - <<'PY'
import nibabel as nib, numpy as np
ct = nib.load("ct0.nii.gz")
aff = ct.affine.copy()
aff[:3, :3] *= 1.5  # 1.5x coarser in-plane and through-plane, same origin and directions
t2 = np.random.default_rng(1).random((14, 16, 11)).astype(np.float32) * 300 + 50
nib.save(nib.Nifti1Image(t2, aff), "t2.nii.gz")
PY
cat > multi.yaml <<'YAML'
studies:
  - id: multi
    series:
      ct: {file: ct0.nii.gz, modality: CT}
      t2: {file: t2.nii.gz, modality: MR}
    labels: {organs: seg0.nii.gz}
YAML
"$vit" convert --manifest multi.yaml -o multi.h5 >/dev/null
"$vit" preprocess multi.h5 -o multi_pre.h5 --channels ct,t2 --label organs --spacing 1.6,1.8,2.5 >pre.out
grep -q "multi_pre.h5: 1 studies, channels ct, t2 on one grid" pre.out || { cat pre.out; fail "preprocess summary"; }
$py - <<'PY'
import h5py, json, numpy as np
f = h5py.File("multi_pre.h5", "r")
s = f["studies/multi"]
ct, t2, lab = s["series/ct/image"], s["series/t2/image"], s["labels/organs"]
assert ct.shape == t2.shape == lab.shape == (16, 12, 10), (ct.shape, t2.shape, lab.shape)
for name in ("spacing", "origin", "direction"):
    assert np.allclose(s["series/ct"].attrs[name], s["series/t2"].attrs[name]), name
assert np.allclose(s["series/ct"].attrs["spacing"], [1.6, 1.8, 2.5], atol=1e-6)
assert set(np.unique(lab[...])) <= {0, 1, 2}
meta = json.loads(s.attrs["metadata_json"])
assert meta["preprocessed"]["channels"] == ["ct", "t2"]
PY
expect_exit 2 badpre.err "$vit" preprocess multi.h5 -o bad_pre.h5 --channels ct,flair
grep -q "study 'multi': has no series 'flair'" badpre.err || { cat badpre.err; fail "missing series message"; }
[[ ! -e bad_pre.h5 ]] || fail "half-written preprocess output"
echo "datasets CLI: all checks passed"
