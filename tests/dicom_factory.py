"""Small synthetic DICOM instances for tests (pydicom), when make_corpus has no such modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1149.9."

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
INTRAORAL = "1.2.840.10008.5.1.4.1.1.1.3"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_image(path: Path, *, sop_class: str = CT_IMAGE, modality: str = "CT",
               rows: int = 32, cols: int = 32, bits: int = 16, samples: int = 1,
               frames: int = 1, photometric: str | None = None, study_uid: str | None = None,
               series_uid: str | None = None, patient_id: str = "PID1", number: int = 1,
               implicit: bool = False, seed: int = 0, **extra: object) -> Dataset:
    """Write one image instance and return its data set."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(prefix=ROOT)
    ds.StudyInstanceUID = study_uid or generate_uid(prefix=ROOT)
    ds.SeriesInstanceUID = series_uid or generate_uid(prefix=ROOT)
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "101010"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.StudyDescription = "TEST STUDY"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.Manufacturer = "TEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits
    ds.BitsStored = bits if bits == 8 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    shape: tuple[int, ...] = (rows, cols) if samples == 1 else (rows, cols, samples)
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 33.3
        shape = (frames, *shape)
    dtype = np.uint8 if bits == 8 else np.uint16
    top = 255 if bits == 8 else 4095
    ds.PixelData = rng.integers(0, top, size=shape, dtype=dtype).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    for key, value in extra.items():
        setattr(ds, key, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds
