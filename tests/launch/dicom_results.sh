#!/usr/bin/env bash
# DICOM SEG and SR outputs of `vitruvian infer` on a DICOM study (a phantom's CT written as a
# DICOM series with pydicom) and a small model trained for a few steps: every SEG and SR
# validates under dciodvfy; pydicom re-assembles the SEG frames into the campaign's label map
# voxel for voxel and reads the SR's numbers back equal to report.json's; a rerun writes the
# same UIDs; DICOM outputs on a non-DICOM input are refused with one line before any work.
# Usage: dicom_results.sh VITRUVIAN WORKDIR
set -euo pipefail
vit=$1
work=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 2 --shape 24,32,32 --out chest.h5 --threads 2
train_small_model "$vit" ct "[lung_left, lung_right, $heart_class, lung_nodule, coronary_lad, coronary_lcx, coronary_rca]" "[16, 16, 16]" 2 0.02 8

# The first phantom's CT as a DICOM series, with a patient (a UTF-8 name), a study and a frame of
# reference.
$py - <<'PY'
import os
import h5py, numpy as np, pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage

with h5py.File("chest.h5", "r") as f:
    sid = sorted(f["studies"])[0]
    g = f[f"studies/{sid}/series/ct"]
    image = g["image"][()]
    spacing, origin = np.array(g.attrs["spacing"]), np.array(g.attrs["origin"])
    direction = np.array(g.attrs["direction"]).reshape(3, 3)
root = "1.2.826.0.1.3680043.8.498.77"
os.makedirs("dicom/ct", exist_ok=True)
for k in range(image.shape[0]):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{root}.3.{k + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(f"dicom/ct/{k:03d}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the name below is not ASCII
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Müller^Zoë", "PH-0001", "19700101", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = f"{root}.1", "20260101", "101500", "S1"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "ACC42", "Ref^Doctor", "Chest phantom"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = f"{root}.2", 1, "CT"
    ds.FrameOfReferenceUID, ds.Modality, ds.InstanceNumber = f"{root}.4", "CT", k + 1
    position = origin + direction[:, 2] * spacing[2] * k
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in list(direction[:, 0]) + list(direction[:, 1])]
    ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    ds.SliceThickness = float(spacing[2])
    ds.Rows, ds.Columns = image.shape[1], image.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = image[k].astype("<i2").tobytes()
    ds.save_as(f"dicom/ct/{k:03d}.dcm", write_like_original=False)
PY

cat > campaign.yaml <<'YAML'
input: dicom
output: out
outputs: [hdf5, dicom_seg, dicom_sr]
routes:
  - {name: organs, model: run/model, modality: CT, lesions: [lung_nodule]}
calcium:
  series: ct
  arteries: [coronary_lad, coronary_lcx, coronary_rca]
YAML
expect_exit 0 infer.err "$vit" --threads 2 infer --campaign campaign.yaml
study=out/studies/dicom
[[ -f $study/organs.seg.dcm && -f $study/report.sr.dcm ]] || { ls "$study"; fail "no SEG or SR written"; }
grep -q '"organs.seg.dcm"' $study/manifest.json && grep -q '"report.sr.dcm"' $study/manifest.json ||
  { cat $study/manifest.json; fail "the manifest does not list the DICOM files"; }

# dciodvfy: no error in either object.
for f in $study/organs.seg.dcm $study/report.sr.dcm; do
  /usr/bin/dciodvfy "$f" > "$(basename "$f").vfy" 2>&1 || true
  if grep -q "^Error" "$(basename "$f").vfy"; then cat "$(basename "$f").vfy"; fail "dciodvfy finds errors in $f"; fi
done

# The validator is live: a SEG without a segment label and an SR item without its concept name fail.
$py - <<'PY'
import pydicom
seg = pydicom.dcmread("out/studies/dicom/organs.seg.dcm")
del seg.SegmentSequence[0].SegmentLabel
seg.save_as("spoilt.seg.dcm")
sr = pydicom.dcmread("out/studies/dicom/report.sr.dcm")
del sr.ContentSequence[0].ConceptNameCodeSequence
sr.save_as("spoilt.sr.dcm")
PY
for f in spoilt.seg.dcm spoilt.sr.dcm; do
  /usr/bin/dciodvfy "$f" > "$f.vfy" 2>&1 || true
  grep -q "^Error - Missing attribute" "$f.vfy" || { cat "$f.vfy"; fail "dciodvfy did not notice what $f lacks"; }
done

$py "$here/check_dicom_results.py" "$study" dicom/ct organs
cp $study/organs.seg.dcm first.seg.dcm && cp $study/report.sr.dcm first.sr.dcm

# A plain rerun verifies the study (its DICOM files included) and skips it.
expect_exit 0 skip.err "$vit" --threads 2 infer --campaign campaign.yaml
grep -q "1 studies, 1 already done, 0 to run" skip.err || { cat skip.err; fail "the finished study was not skipped"; }

# A rerun (forced) writes the same UIDs: a PACS replaces the objects instead of duplicating them.
expect_exit 0 again.err "$vit" --threads 2 infer --campaign campaign.yaml --force
$py - <<'PY'
import pydicom
for a, b in (("first.seg.dcm", "out/studies/dicom/organs.seg.dcm"), ("first.sr.dcm", "out/studies/dicom/report.sr.dcm")):
    x, y = pydicom.dcmread(a), pydicom.dcmread(b)
    assert (x.SOPInstanceUID, x.SeriesInstanceUID) == (y.SOPInstanceUID, y.SeriesInstanceUID), (a, x.SOPInstanceUID, y.SOPInstanceUID)
    assert x.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.1147.") and len(x.SOPInstanceUID) <= 64, x.SOPInstanceUID
print("rerun: the same SOP Instance and Series UIDs")
PY

# The SR alone (no SEG written): its groups reference no segment, and it still validates.
sed -e 's/^output: out/output: sr_only/' -e 's/^outputs: .*/outputs: [dicom_sr]/' campaign.yaml > sr_only.yaml
expect_exit 0 sr_only.err "$vit" --threads 2 infer --campaign sr_only.yaml
[[ -f sr_only/studies/dicom/report.sr.dcm && ! -e sr_only/studies/dicom/organs.seg.dcm ]] || { ls sr_only/studies/dicom; fail "sr_only outputs"; }
/usr/bin/dciodvfy sr_only/studies/dicom/report.sr.dcm > sr_only.vfy 2>&1 || true
if grep -q "^Error" sr_only.vfy; then cat sr_only.vfy; fail "dciodvfy finds errors in the SR without SEG"; fi

# DICOM outputs on an HDF5 input: one line, exit 2, nothing written.
printf 'input: chest.h5\noutput: refused\noutputs: [hdf5, dicom_seg]\nroutes:\n  - {name: organs, model: run/model}\n' > refused.yaml
expect_exit 2 refused.err "$vit" --threads 1 infer --campaign refused.yaml
grep -q "outputs: 'dicom_seg' needs DICOM input .*chest.h5 is not a DICOM folder" refused.err || { cat refused.err; fail "no refusal line"; }
[[ ! -e refused/studies ]] || fail "a refused campaign wrote studies"
echo "DICOM SEG and SR: all checks passed"
