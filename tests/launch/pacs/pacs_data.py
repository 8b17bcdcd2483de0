"""Test studies for the PACS tests, from write_test_dicom's folder (pydicom edits it in place):
study ...1.1 (ct, t2 now MR, the spoilt scout) gets AccessionNumber ACC-1 and a structured report
and a presentation state (non-image objects) in series of their own; study ...1.2 (followup) gets
StudyDate 20230615 and AccessionNumber ACC-2. Also writes REFUSE_DIR/refuse.dcm: a copy of a
followup slice with SeriesDescription VITRUVIAN-REFUSE (tests/tools/orthanc.sh refuses it).
Usage: pacs_data.py DICOM_DIR REFUSE_DIR"""
import os
import sys

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

root, refuse_dir = sys.argv[1], sys.argv[2]
STUDY1 = "1.2.826.0.1.3680043.2.1125.1.1"
for folder in sorted(os.listdir(root)):
    for name in sorted(os.listdir(os.path.join(root, folder))):
        path = os.path.join(root, folder, name)
        d = pydicom.dcmread(path)
        if folder == "t2":
            d.Modality = "MR"
        if d.StudyInstanceUID == STUDY1:
            d.AccessionNumber = "ACC-1"
        else:
            d.AccessionNumber = "ACC-2"
            d.StudyDate = "20230615"
        d.save_as(path)


def non_image(sop_class, modality, number, path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d = Dataset()
    d.file_meta = meta
    d.SOPClassUID, d.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    d.StudyInstanceUID, d.SeriesInstanceUID = STUDY1, generate_uid()
    d.Modality, d.SeriesNumber, d.InstanceNumber = modality, number, 1
    d.PatientID, d.PatientName, d.StudyDate, d.AccessionNumber = "PAT-0042", "Test^Patient", "20240131", "ACC-1"
    d.StudyID, d.ContentDate, d.ContentTime = "1", "20240131", "120000"
    if modality == "SR":
        d.ValueType, d.ContinuityOfContent = "CONTAINER", "SEPARATE"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "18748-4", "LN", "Diagnostic Imaging Report"
        d.ConceptNameCodeSequence = [code]
    else:
        d.ContentLabel, d.PresentationCreationDate, d.PresentationCreationTime = "VIEW", "20240131", "120000"
    d.is_little_endian, d.is_implicit_VR = True, False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    d.save_as(path, write_like_original=False)


non_image("1.2.840.10008.5.1.4.1.1.88.11", "SR", 90, os.path.join(root, "nonimage", "sr.dcm"))
non_image("1.2.840.10008.5.1.4.1.1.11.1", "PR", 91, os.path.join(root, "nonimage", "pr.dcm"))

os.makedirs(refuse_dir, exist_ok=True)
first = sorted(os.listdir(os.path.join(root, "followup")))[0]
d = pydicom.dcmread(os.path.join(root, "followup", first))
d.SeriesDescription = "VITRUVIAN-REFUSE"
d.SeriesInstanceUID, d.SOPInstanceUID = generate_uid(), generate_uid()
d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
d.save_as(os.path.join(refuse_dir, "refuse.dcm"))
