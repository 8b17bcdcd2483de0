"""Writes a DICOM time series as many scanners send perfusion: without TemporalPositionIdentifier
(nor NumberOfTemporalPositions), one AcquisitionNumber for the whole run (so AcquisitionTime alone
orders the frames), the files named IM<hash>.dcm in no useful order. pydicom only.
Usage: without_temporal_positions.py SOURCE_DIR TARGET_DIR (the same folder: the originals go)"""
import glob
import hashlib
import os
import sys

import pydicom

source, target = sys.argv[1:3]
os.makedirs(target, exist_ok=True)
for path in glob.glob(os.path.join(source, "*.dcm")):
    d = pydicom.dcmread(path)
    del d.TemporalPositionIdentifier, d.NumberOfTemporalPositions
    d.AcquisitionNumber = 1
    d.save_as(os.path.join(target, "IM" + hashlib.sha1(path.encode()).hexdigest()[:8] + ".dcm"))
    if os.path.samefile(source, target):
        os.remove(path)
