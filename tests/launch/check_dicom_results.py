"""Checks a study's DICOM SEG and SR against the campaign's own outputs, decoding them with
pydicom only: the SEG's frames re-assembled on the source slices equal labels.h5's map voxel for
voxel (and a frame exists exactly where a segment has voxels); the SR's numbers equal
report.json's; both carry the source's patient, study and frame of reference.
Usage: check_dicom_results.py STUDY_DIR SOURCE_DICOM_DIR ROUTE"""
import json
import os
import sys

import h5py
import numpy as np
import pydicom

study_dir, source_dir, route = sys.argv[1:4]
sid = os.path.basename(os.path.normpath(study_dir))
report = json.load(open(f"{study_dir}/report.json"))
source = sorted((pydicom.dcmread(os.path.join(source_dir, n)) for n in os.listdir(source_dir)),
                key=lambda d: float(d.ImagePositionPatient[2]))
slice_of = {d.SOPInstanceUID: z for z, d in enumerate(source)}
first = source[0]

with h5py.File(f"{study_dir}/labels.h5", "r") as f:
    names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["label_names"]]
    table = dict(zip(names, (int(i) for i in f.attrs["label_ids"])))
    labels = f[f"studies/{sid}/labels/{route}"][()]


def same_identity(ds, what):
    for key in ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
                "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        assert str(getattr(ds, key)) == str(getattr(first, key)), (what, key, getattr(ds, key), getattr(first, key))


# ---- SEG ----
seg = pydicom.dcmread(f"{study_dir}/{route}.seg.dcm")
assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.Modality == "SEG", seg.SOPClassUID
assert seg.SegmentationType == "BINARY", seg.SegmentationType
same_identity(seg, "SEG")
assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
assert referenced == set(slice_of), "the SEG does not reference every source slice"
segments = {}
for s in seg.SegmentSequence:
    assert s.SegmentAlgorithmType == "AUTOMATIC" and s.SegmentAlgorithmName == "Vitruvian", s
    assert s.SegmentedPropertyCategoryCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    segments[int(s.SegmentNumber)] = s.SegmentLabel
frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
assert frames.shape[0] == int(seg.NumberOfFrames)
rebuilt = np.zeros(labels.shape, labels.dtype)
frames_of = {n: set() for n in segments}
for i, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
    number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    z = slice_of[uid]
    assert np.allclose([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient],
                       [float(v) for v in source[z].ImagePositionPatient], atol=1e-4), (i, z)
    frames_of[number].add(z)
    rebuilt[z][frames[i] != 0] = table[segments[number]]
assert np.array_equal(rebuilt, labels), f"SEG differs from labels.h5 on {(rebuilt != labels).sum()} voxels"
for number, name in segments.items():
    present = {int(z) for z in np.nonzero((labels == table[name]).any(axis=(1, 2)))[0]}
    assert frames_of[number] == present, (name, sorted(frames_of[number]), sorted(present))
present_names = {n for n in names if n in table and (labels == table[n]).any()}
assert set(segments.values()) == present_names, (segments, present_names)
print(f"SEG: {len(segments)} segments, {frames.shape[0]} frames, equal to labels.h5 voxel for voxel")

# ---- SR ----
sr = pydicom.dcmread(f"{study_dir}/report.sr.dcm")
same_identity(sr, "SR")
assert sr.Modality == "SR" and sr.ContentTemplateSequence[0].TemplateIdentifier == "1500", sr.ContentTemplateSequence
evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
            for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
assert seg.SOPInstanceUID in evidence, evidence


def meaning(item):
    return item.ConceptNameCodeSequence[0].CodeMeaning


def walk(items):
    for item in items:
        yield item
        yield from walk(getattr(item, "ContentSequence", []))


observer = [i.TextValue for i in walk(sr.ContentSequence) if i.ValueType == "TEXT" and meaning(i) == "Device Observer Name"]
assert observer and observer[0].startswith("Vitruvian "), observer
groups = {}
for item in walk(sr.ContentSequence):
    if item.ValueType != "CONTAINER" or meaning(item) != "Measurement Group":
        continue
    g = {"numbers": {}, "evaluations": []}
    for child in item.ContentSequence:
        if child.ValueType == "TEXT" and meaning(child) == "Qualitative Evaluations":
            g["evaluations"].append(child.TextValue)
        elif meaning(child) == "Tracking Identifier":
            g["id"] = child.TextValue
        elif child.ValueType == "IMAGE" and meaning(child) == "Referenced Segment":
            ref = child.ReferencedSOPSequence[0]
            g["segment"] = (ref.ReferencedSOPInstanceUID, int(ref.ReferencedSegmentNumber))
        elif child.ValueType == "NUM":
            value = child.MeasuredValueSequence[0]
            g["numbers"][meaning(child)] = (float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue)
    groups[g["id"]] = g
number_of = {name: n for n, name in segments.items()}
expected = 0
for name, s in report["routes"][route]["structures"].items():
    if s["voxels"] == 0:
        continue
    g = groups[f"{route} {name}"]
    assert g["segment"] == (seg.SOPInstanceUID, number_of[name]), (name, g)
    assert not g["evaluations"], (name, g)
    assert g["numbers"]["Volume"] == (s["volume_ml"], "ml"), (name, g["numbers"], s["volume_ml"])
    assert g["numbers"]["Attenuation Coefficient"] == (s["intensity"]["ct"]["mean"], "[hnsf'U]"), (name, g["numbers"])
    expected += 1
    for k, lesion in enumerate(s.get("lesions", {}).get("items", [])):
        l = groups[f"{route} {name} lesion {k + 1}"]
        assert l["numbers"]["Volume"] == (lesion["volume_ml"], "ml"), (name, k, l)
        assert l["numbers"]["Long Axis"] == (lesion["axial_diameter_mm"], "mm"), (name, k, l)
        expected += 1
calcium = report.get("calcium")
if calcium:
    # A score on a grid too coarse for Agatston's definition says so in every calcium group.
    estimate = [f"Estimate: {calcium['estimate_why']}"] if calcium["estimate"] else []
    assert groups["calcium total"]["evaluations"] == estimate, (groups["calcium total"], estimate)
    for artery, score in calcium["arteries"].items():
        g = groups[f"calcium {artery}"]
        assert g["numbers"]["Calcium score"] == (score["agatston"], "1"), (artery, g)
        assert g["evaluations"] == estimate, (artery, g, estimate)
        if artery in number_of:
            assert g["segment"] == (seg.SOPInstanceUID, number_of[artery]), (artery, g)
        expected += 1
    assert groups["calcium total"]["numbers"]["Calcium score"] == (calcium["total"]["agatston"], "1"), groups["calcium total"]
    expected += 1
assert len(groups) == expected, (sorted(groups), expected)
print(f"SR: {len(groups)} measurement groups, every number equal to report.json's"
      f"{' (calcium scored' + (', an estimate' if calcium['estimate'] else '') + ')' if calcium else ''}")
