#!/usr/bin/env bash
# `vitruvian phantom --dicom` and `vitruvian export --dicom` as a user runs them: 1 and 2 ranks
# write the same bytes; the series (3D CT, 4D CT perfusion, MR) come back with the same voxels,
# geometry and frame times through `vitruvian convert` and through dcm2niix read by nibabel (an
# independent reader), the 4D series also with its temporal positions removed (frames by time); dciodvfy finds no error in a CT, a 4D CT and an MR image; the UIDs are
# valid, one study UID and frame of reference per study, from --uid-root; bad roots give one line.
# Usage: phantom_dicom_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# Two head-neck studies (CT and a 4D perfusion CT) and one abdomen MR study; HDF5 and DICOM at once.
hn=(phantom --kind head-neck --studies 2 --shape 24,32,32 --frames 4 --seed 5)
expect_exit 0 hn.err "$vit" "${hn[@]}" --out hn.h5 --dicom dcm
expect_exit 0 mr.err "$vit" phantom --kind abdomen-mr --studies 1 --shape 24,32,32 --seed 5 --out mr.h5 --dicom dcm --force
# DICOM alone on 2 ranks: each rank writes its own studies; the same bytes as one rank.
expect_exit 0 two.err "$mpirun" -np 2 "$vit" "${hn[@]}" --dicom dcm2
diff -r dcm/head_neck_00000 dcm2/head_neck_00000 >/dev/null && diff -r dcm/head_neck_00001 dcm2/head_neck_00001 >/dev/null ||
  fail "2 ranks wrote other DICOM files than 1 rank"
[[ ! -e hn2.h5 ]] && ! ls -A dcm dcm2 | grep -q "\.tmp\." || fail "temporaries left behind: $(ls -A dcm dcm2)"
[[ $(ls dcm/head_neck_00000/perfusion | wc -l) == 96 && -f dcm/head_neck_00000/perfusion/0096.dcm ]] ||
  fail "expected 4 x 24 perfusion files 0001.dcm..0096.dcm"

# dciodvfy: no errors in a CT image, a 4D CT image and an MR image (warnings are printed).
for f in dcm/head_neck_00000/cta/0001.dcm dcm/head_neck_00001/perfusion/0050.dcm dcm/abdomen_mr_00000/t2/0001.dcm; do
  dciodvfy "$f" >"verify.txt" 2>&1 || true
  grep -q "Error" verify.txt && { cat verify.txt; fail "dciodvfy finds errors in $f"; }
  grep "Warning" verify.txt | sed "s|^|dciodvfy $f: |" || true
done

# Back through vitruvian convert, one study per folder, named after it.
expect_exit 0 convert.err "$vit" convert dcm/head_neck_00000 dcm/head_neck_00001 dcm/abdomen_mr_00000 -o back.h5
# And through dcm2niix (one NIfTI per series) for nibabel.
mkdir nii
for series in dcm/*/*/; do
  study=$(basename "$(dirname "$series")")
  dcm2niix -z n -b n -f "${study}_%f" -o nii "$series" >"dcm2niix.out" 2>&1 || { cat dcm2niix.out; fail "dcm2niix $series"; }
done

# The 4D series as many scanners send perfusion (tests/tools/without_temporal_positions.py): no
# TemporalPositionIdentifier, each slice position repeated once per frame, files in no useful order.
# vitruvian convert orders the frames by AcquisitionTime; dcm2niix reads the same folder (both
# checked below).
$py "$here/../tools/without_temporal_positions.py" dcm/head_neck_00001/perfusion scanner/head_neck_00001/perfusion
expect_exit 0 scanner.err "$vit" convert scanner/head_neck_00001 -o scanner.h5
dcm2niix -z n -b n -f scanner -o nii scanner/head_neck_00001/perfusion >dcm2niix_scanner.out 2>&1 ||
  { cat dcm2niix_scanner.out; fail "dcm2niix on the series without temporal positions"; }

# Export: the dataset's series as DICOM again, with the phantom's seed: the same UIDs and pixels.
expect_exit 0 export.err "$vit" export hn.h5 --dicom exported --uid-seed 5
grep -q "4 DICOM series under exported" export.err.out || { cat export.err.out; fail "export summary"; }
expect_exit 0 root.err "$vit" phantom --kind msk --studies 1 --shape 24,32,32 --dicom rooted --uid-root 1.2.3.4

$py - <<'PY'
import glob, os, re
import h5py, nibabel as nib, numpy as np, pydicom

def series_of(*files):
    out = {}
    for name in files:
        f = h5py.File(name, "r")
        for sid, study in f["studies"].items():
            for s, group in study["series"].items():
                out[(sid, s)] = group
    return out

want = series_of("hn.h5", "mr.h5")
back = series_of("back.h5")
assert sorted(back) == sorted(want), (sorted(back), sorted(want))
for key, w in want.items():
    b = back[key]
    assert b["image"].dtype == w["image"].dtype, (key, b["image"].dtype, w["image"].dtype)
    assert np.array_equal(b["image"][...], w["image"][...]), f"{key}: voxels differ after convert"
    for a in ("spacing", "origin", "direction"):
        assert np.allclose(b.attrs[a], w.attrs[a], atol=1e-6), (key, a, b.attrs[a], w.attrs[a])
    if "frame_times_s" in w.attrs:
        assert np.allclose(b.attrs["frame_times_s"], w.attrs["frame_times_s"], atol=1e-5), (key, b.attrs["frame_times_s"])
assert ("head_neck_00001", "perfusion") in want and want[("head_neck_00001", "perfusion")]["image"].ndim == 4

def ras_affine(group):
    d = np.reshape(group.attrs["direction"], (3, 3)) * np.asarray(group.attrs["spacing"])
    a = np.eye(4)
    a[:3, :3], a[:3, 3] = d, group.attrs["origin"]
    return np.diag([-1, -1, 1, 1]) @ a

# dcm2niix + nibabel: the same voxels at the same places (up to the axis order dcm2niix picks).
def same_as_nifti(path, w, what):
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    m = np.linalg.inv(ras_affine(w)) @ img.affine
    assert np.allclose(m, np.round(m), atol=1e-3), (what, m)
    m = np.round(m).astype(int)
    idx = np.indices(data.shape[:3]).reshape(3, -1)
    i, j, k = m[:3, :3] @ idx + m[:3, 3:]
    image = w["image"][...]
    frames = image[None] if image.ndim == 3 else image
    assert data.shape[3:] == (() if image.ndim == 3 else (frames.shape[0],)), (what, data.shape)
    for t in range(frames.shape[0]):
        got = (data if data.ndim == 3 else data[..., t])[idx[0], idx[1], idx[2]]
        assert np.array_equal(got, frames[t][k, j, i]), f"{what} frame {t}: dcm2niix reads other voxels"
for (sid, s), w in want.items():
    same_as_nifti(f"nii/{sid}_{s}.nii", w, f"{sid}/{s}")

# The perfusion series without temporal positions: convert gives back the dataset's frames and
# times, and dcm2niix reads the same frames in the same order.
w = want[("head_neck_00001", "perfusion")]
b = series_of("scanner.h5")[("head_neck_00001", "perfusion")]
assert np.array_equal(b["image"][...], w["image"][...]), "frames differ without temporal positions"
assert np.allclose(b.attrs["frame_times_s"], w.attrs["frame_times_s"], atol=1e-5), b.attrs["frame_times_s"]
same_as_nifti("nii/scanner.nii", w, "perfusion without temporal positions")

uid = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
def headers(folder):
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(glob.glob(f"{folder}/*/*/*.dcm"))]
hs = headers("dcm")
instances = set()
for h in hs:
    for value in (h.StudyInstanceUID, h.SeriesInstanceUID, h.FrameOfReferenceUID, h.SOPInstanceUID):
        assert len(value) <= 64 and uid.match(value), value
        assert value.startswith("1.2.826.0.1.3680043.10.1147."), value
    instances.add(h.SOPInstanceUID)
    assert h.Manufacturer == "Vitruvian" and h.Modality in ("CT", "MR"), (h.Manufacturer, h.Modality)
    assert h.PatientID == h.filename.split("/")[1] and h.PatientName and h.StudyID and h.AccessionNumber
assert len(instances) == len(hs), "SOP Instance UIDs repeat"
by_study = {}
for h in hs:
    by_study.setdefault(h.PatientID, set()).add((h.StudyInstanceUID, h.FrameOfReferenceUID))
assert all(len(v) == 1 for v in by_study.values()), by_study
assert len({next(iter(v))[0] for v in by_study.values()}) == 3, by_study
p = [h for h in hs if h.SeriesDescription == "perfusion" and h.PatientID == "head_neck_00000"]
assert sorted({int(h.TemporalPositionIdentifier) for h in p}) == [1, 2, 3, 4] and all(h.NumberOfTemporalPositions == 4 for h in p)
assert len({tuple(h.ImagePositionPatient) for h in p}) == 24, "each slice position once per time point"
ct = [h for h in hs if h.Modality == "CT"][0]
assert list(ct.WindowCenter) == [40, -600, 400] and ct.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2", ct.WindowCenter
mr = [h for h in hs if h.Modality == "MR"][0]
assert mr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and float(mr.WindowWidth) >= 1

# export --uid-seed 5 of the same studies: the UIDs and pixels of phantom --seed 5 --dicom.
for a in sorted(glob.glob("dcm/head_neck_*/*/*.dcm")):
    e = pydicom.dcmread(a.replace("dcm/", "exported/", 1))
    d = pydicom.dcmread(a)
    assert (e.StudyInstanceUID, e.SeriesInstanceUID, e.SOPInstanceUID) == (d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID), a
    assert e.PixelData == d.PixelData, a
assert all(h.StudyInstanceUID.startswith("1.2.3.4.") for h in headers("rooted"))
print("phantom/export DICOM: round trips and UIDs checked")
PY

# Bad roots and a missing output: one line each, exit 2, nothing written.
expect_exit 2 bad_root.err "$vit" phantom --studies 1 --shape 24 --dicom bad --uid-root 1.2.03
grep -q "uid-root 1.2.03.*not a valid UID root" bad_root.err || { cat bad_root.err; fail "bad root message"; }
expect_exit 2 long_root.err "$vit" export hn.h5 --dicom bad --uid-root 1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18
grep -q "expected at most 43" long_root.err || { cat long_root.err; fail "long root message"; }
expect_exit 2 no_out.err "$vit" phantom --studies 1 --shape 24
grep -q "give --out DATASET.h5, --dicom DIR or both" no_out.err || { cat no_out.err; fail "missing output message"; }
# A series that is neither CT nor MR (a NIfTI imported without --modality): refused before writing.
expect_exit 0 nifti.err "$vit" export hn.h5 --study head_neck_00000 --series cta -o cta.nii.gz
expect_exit 0 nomod.err "$vit" convert cta.nii.gz -o nomod.h5
expect_exit 2 nomod_export.err "$vit" export nomod.h5 --dicom bad
grep -q "study cta series image: has modality ''; expected CT or MR" nomod_export.err || { cat nomod_export.err; fail "modality message"; }
[[ ! -e bad || -z "$(ls -A bad)" ]] || fail "a refused run wrote DICOM files"
echo "phantom/export DICOM CLI: all checks passed"
