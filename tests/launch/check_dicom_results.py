"""Checks a study's DICOM SEG, SR and parametric maps against the campaign's own outputs, decoding
them with pydicom only: the SEG's frames re-assembled on the source slices equal labels.h5's map
voxel for voxel (and a frame exists exactly where a segment has voxels); the SR's numbers equal
report.json's (a perfusion route's triage as a group of its own); each parametric map's
float frames equal labels.h5's map bit for bit, each frame where its source slice is and derived
from that slice at every temporal position, with the quantity and units of the map; all carry the source's patient, study and frame of reference.
A 4D source (a CT perfusion series) is referenced by its first temporal position's slices; a
source that names no temporal positions has them by AcquisitionTime at each slice position.
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
every = [pydicom.dcmread(os.path.join(source_dir, n)) for n in os.listdir(source_dir)]

def temporal_positions(images):
    """Each image's temporal position: its TemporalPositionIdentifier, or where the series names
    none, its rank in AcquisitionTime among the images at its slice position (1 for a volume)."""
    if any("TemporalPositionIdentifier" in d for d in images):
        return {d.SOPInstanceUID: int(d.TemporalPositionIdentifier) for d in images}
    at_place = {}
    for d in images:
        at_place.setdefault(float(d.ImagePositionPatient[2]), []).append(d)
    return {d.SOPInstanceUID: t + 1 for repeats in at_place.values()
            for t, d in enumerate(sorted(repeats, key=lambda d: str(getattr(d, "AcquisitionTime", ""))))}


position_of = temporal_positions(every)
source = sorted((d for d in every if position_of[d.SOPInstanceUID] == min(position_of.values())),
                key=lambda d: float(d.ImagePositionPatient[2]))
# Every image of the series by its place: (temporal position, z).
z_of_position = {float(d.ImagePositionPatient[2]): z for z, d in enumerate(source)}
place_of = {d.SOPInstanceUID: (position_of[d.SOPInstanceUID], z_of_position[float(d.ImagePositionPatient[2])]) for d in every}
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
perfusion = report.get("perfusion") if report.get("perfusion", {}).get("route") == route else None
segments = {}
for s in seg.SegmentSequence:
    # A perfusion route's core and penumbra carry the study page's colours; other classes none.
    coloured = perfusion is not None and s.SegmentLabel in ("ischemic_core", "ischemic_penumbra")
    assert ("RecommendedDisplayCIELabValue" in s) == coloured, (s.SegmentLabel, coloured)
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
    reference = report["routes"][route]["series"][0]
    # A 4D reference (perfusion) has no mean intensity; every 3D one does.
    assert perfusion or reference in s.get("intensity", {}), (name, reference)
    if reference in s.get("intensity", {}):
        assert g["numbers"]["Attenuation Coefficient"] == (s["intensity"][reference]["mean"], "[hnsf'U]"), (name, g["numbers"])
    expected += 1
    for k, lesion in enumerate(s.get("lesions", {}).get("items", [])):
        l = groups[f"{route} {name} lesion {k + 1}"]
        assert l["numbers"]["Volume"] == (lesion["volume_ml"], "ml"), (name, k, l)
        assert l["numbers"]["Long Axis"] == (lesion["axial_diameter_mm"], "mm"), (name, k, l)
        expected += 1
if perfusion:
    # The triage: its own group (no segment), the hypoperfused volume and the verdict in text.
    g = groups[f"{route} Tmax > {perfusion['thresholds']['tmax_s']:g} s"]
    v, d = perfusion["volumes_ml"], perfusion["defuse3"]
    assert "segment" not in g, g
    # To the microlitre, as the SR writes it.
    assert g["numbers"]["Volume"][1] == "ml" and abs(g["numbers"]["Volume"][0] - v["hypoperfused"]) <= 1e-6, (g, v)
    ratio = f"{perfusion['mismatch_ratio']:.1f}" if perfusion["mismatch_ratio"] is not None else "none (no core)"
    side = perfusion["side"] or "none"

    def criterion(key, what, unit):
        c = d[key]
        value = f"{c['value']:.1f}{unit}" if c["value"] is not None else "none (no core)"
        return f"{what} {value} {c['limit']} ({'met' if c['met'] else 'not met'})"
    want = [f"Mismatch: {v['mismatch']:.1f} mL, ratio {ratio}", f"Lesion side: {side}",
            f"DEFUSE-3: {'eligible' if d['eligible'] else 'not eligible'}; {criterion('core_ml', 'core', ' mL')}; "
            f"{criterion('mismatch_ratio', 'mismatch ratio', '')}; {criterion('mismatch_ml', 'mismatch', ' mL')}"]
    assert g["evaluations"] == want, (g["evaluations"], want)
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

# ---- parametric maps ----
maps = perfusion["maps"] if perfusion else {}
units = {"cbf": "ml/(100.g)/min", "cbv": "ml/(100.g)", "mtt": "s", "tmax": "s", "ttp": "s"}
quantities = {"cbf": "126390", "cbv": "126391", "mtt": "113052", "tmax": "113084", "ttp": "113069"}
for key, name in maps.items():
    pm = pydicom.dcmread(f"{study_dir}/{name}.pm.dcm")
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30", (name, pm.SOPClassUID)
    same_identity(pm, name)
    assert pm.FrameOfReferenceUID == first.FrameOfReferenceUID, name
    assert pm.Modality == first.Modality, (name, pm.Modality)
    assert list(pm.ImageType) == ["DERIVED", "PRIMARY", "VOLUME", "NONE"], (name, pm.ImageType)
    anatomy = pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0]
    assert anatomy.AnatomicRegionSequence[0].CodeValue == "12738006" and anatomy.FrameLaterality == "U", (name, anatomy)
    referenced = {i.ReferencedSOPInstanceUID for s in pm.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == set(place_of), f"{name} does not reference every image of the source series"
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == units[key], (name, mapping.MeasurementUnitsCodeSequence)
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == quantities[key], name
    assert (float(mapping.RealWorldValueSlope), float(mapping.RealWorldValueIntercept)) == (1.0, 0.0), name
    with h5py.File(f"{study_dir}/labels.h5", "r") as f:
        want = f[f"studies/{sid}/series/{name}/image"][()]
    assert want.dtype == np.float32 and int(pm.NumberOfFrames) == want.shape[0], (name, want.dtype, pm.NumberOfFrames)
    frames = np.frombuffer(pm.FloatPixelData, "<f4").reshape(-1, int(pm.Rows), int(pm.Columns))
    rebuilt = np.full(want.shape, np.nan, np.float32)
    for i, fg in enumerate(pm.PerFrameFunctionalGroupsSequence):
        derivation = fg.DerivationImageSequence[0]
        assert derivation.DerivationCodeSequence[0].CodeValue == "129104", (name, i)
        # Derived from one slice at every temporal position.
        places = {place_of[x.ReferencedSOPInstanceUID] for x in derivation.SourceImageSequence}
        assert len({z for _, z in places}) == 1 and len(places) == len(set(position_of.values())), (name, i, places)
        z = places.pop()[1]
        assert np.allclose([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in source[z].ImagePositionPatient], atol=1e-4), (name, i, z)
        rebuilt[z] = frames[i]
    assert np.array_equal(rebuilt, want), f"{name}: the parametric map differs from labels.h5 on {(rebuilt != want).sum()} voxels"
    assert (float(mapping.DoubleFloatRealWorldValueFirstValueMapped), float(mapping.DoubleFloatRealWorldValueLastValueMapped)) == \
        (float(want.min()), float(want.max())), name
if maps:
    print(f"parametric maps: {', '.join(sorted(maps))}, equal to labels.h5 bit for bit, with their quantities and units")
