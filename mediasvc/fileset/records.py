"""Directory record types and their baseline keys (PS3.3 Annex F.5, one table of keys per
record type, cited by title), as a public table.

Profiles (profiles/media/*.toml) add keys on top of these; a caller may also override
BASELINE_KEYS for a record type, as pydicom's DIRECTORY_RECORDERS allows.

Key types, as in PS3.3 F.5:
    "1"   must have a value: taken from the instance; absent -> see INVENTABLE, else rejected
    "2"   must be present, may be empty
    "1C"  required if present in the instance (copied when present)
    "3"   optional (copied when present)
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

# (keyword, type). SpecificCharacterSet (type 1C on every record) is handled by the writer.
BASELINE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    # PS3.3 F.5, Patient Keys
    "PATIENT": (("PatientName", "2"), ("PatientID", "1")),
    # PS3.3 F.5, Study Keys
    "STUDY": (("StudyDate", "1"), ("StudyTime", "1"), ("AccessionNumber", "2"),
              ("StudyDescription", "2"), ("StudyInstanceUID", "1C"), ("StudyID", "1")),
    # PS3.3 F.5, Series Keys
    "SERIES": (("Modality", "1"), ("SeriesInstanceUID", "1"), ("SeriesNumber", "1")),
    # PS3.3 F.5, Image Keys
    "IMAGE": (("InstanceNumber", "1"),),
    # PS3.3 F.5, RT Dose Keys
    "RT DOSE": (("InstanceNumber", "1"), ("DoseSummationType", "1")),
    # PS3.3 F.5, RT Structure Set Keys
    "RT STRUCTURE SET": (("InstanceNumber", "1"), ("StructureSetLabel", "1"),
                         ("StructureSetDate", "2"), ("StructureSetTime", "2")),
    # PS3.3 F.5, RT Plan Keys
    "RT PLAN": (("InstanceNumber", "1"), ("RTPlanLabel", "1"), ("RTPlanDate", "2"),
                ("RTPlanTime", "2")),
    # PS3.3 F.5, RT Treatment Record Keys
    "RT TREAT RECORD": (("InstanceNumber", "1"), ("TreatmentDate", "2"),
                        ("TreatmentTime", "2")),
    # PS3.3 F.5, Presentation Keys
    "PRESENTATION": (("PresentationCreationDate", "1"), ("PresentationCreationTime", "1"),
                     ("InstanceNumber", "1"), ("ContentLabel", "1"),
                     ("ContentDescription", "2"), ("ContentCreatorName", "2"),
                     ("ReferencedSeriesSequence", "1C"), ("BlendingSequence", "1C")),
    # PS3.3 F.5, Waveform Keys
    "WAVEFORM": (("InstanceNumber", "1"), ("ContentDate", "1"), ("ContentTime", "1")),
    # PS3.3 F.5.25, SR Document Keys (Table F.5-25)
    "SR DOCUMENT": (("InstanceNumber", "1"), ("CompletionFlag", "1"),
                    ("VerificationFlag", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                    ("VerificationDateTime", "1C"), ("ConceptNameCodeSequence", "1")),
    # PS3.3 F.5.26, Key Object Document Keys (Table F.5-26)
    "KEY OBJECT DOC": (("InstanceNumber", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                       ("ConceptNameCodeSequence", "1")),
    # PS3.3 F.5, Spectroscopy Keys
    "SPECTROSCOPY": (("ImageType", "1"), ("ContentDate", "1"), ("ContentTime", "1"),
                     ("InstanceNumber", "1"), ("ReferencedImageEvidenceSequence", "1C"),
                     ("NumberOfFrames", "1"), ("Rows", "1"), ("Columns", "1"),
                     ("DataPointRows", "1"), ("DataPointColumns", "1")),
    # PS3.3 F.5, Raw Data Keys
    "RAW DATA": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1")),
    # PS3.3 F.5, Registration and Fiducial Keys (Content Identification Macro)
    "REGISTRATION": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
                     ("ContentLabel", "1"), ("ContentDescription", "2"),
                     ("ContentCreatorName", "2")),
    "FIDUCIAL": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
                 ("ContentLabel", "1"), ("ContentDescription", "2"),
                 ("ContentCreatorName", "2")),
    # PS3.3 F.5, Encapsulated Document Keys
    "ENCAP DOC": (("ContentDate", "2"), ("ContentTime", "2"), ("InstanceNumber", "1"),
                  ("DocumentTitle", "2"), ("HL7InstanceIdentifier", "1C"),
                  ("ConceptNameCodeSequence", "2"), ("MIMETypeOfEncapsulatedDocument", "1")),
    # PS3.3 F.5, Real World Value Mapping Keys
    "VALUE MAP": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
                  ("ContentLabel", "1"), ("ContentDescription", "2"),
                  ("ContentCreatorName", "2")),
    "STEREOMETRIC": (),
    # PS3.3 F.5, Measurement Keys
    "MEASUREMENT": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
                    ("ConceptNameCodeSequence", "1")),
    # PS3.3 F.5, Surface Keys
    "SURFACE": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
                ("ContentLabel", "1"), ("ContentDescription", "2"),
                ("ContentCreatorName", "2")),
    "SURFACE SCAN": (("ContentDate", "1"), ("ContentTime", "1")),
    "TRACT": (("ContentDate", "1"), ("ContentTime", "1"), ("InstanceNumber", "1"),
              ("ContentLabel", "1"), ("ContentDescription", "2"), ("ContentCreatorName", "2")),
    "ASSESSMENT": (("InstanceNumber", "1"), ("InstanceCreationDate", "1"),
                   ("InstanceCreationTime", "2")),
    "RADIOTHERAPY": (("InstanceNumber", "1"), ("UserContentLabel", "1C"),
                     ("UserContentLongLabel", "1C"), ("ContentDescription", "2"),
                     ("ContentCreatorName", "2")),
    "PLAN": (),
    # F.5.x Private Keys: Private Record UID is set by the writer (the SOP Class UID).
    "PRIVATE": (),
}

# Type 1 directory keys that are type 2 (may be empty) in the composite IODs, so real files
# often lack them. Rejecting such files would leave a patient's images off the disc; DCMTK's
# dcmmkdir +I invents them too. The writer invents a value and says so in the file's verdict.
INVENTABLE = ("PatientID", "StudyID", "StudyDate", "StudyTime", "SeriesNumber",
              "InstanceNumber")

# Record types for SOP classes (PS3.3 F.4, Table F.4-1). pydicom keeps the same table; reuse
# it so that new classes arrive with pydicom releases, and add what it lacks.
try:
    from pydicom.fileset import _FOUR_LEVEL_SOP_CLASSES as _PYDICOM_TABLE
except ImportError:  # pragma: no cover - pydicom moved it
    _PYDICOM_TABLE = {}

SOP_CLASS_RECORD_TYPES: dict[str, str] = {str(k): v for k, v in _PYDICOM_TABLE.items()}
SOP_CLASS_RECORD_TYPES.update({
    "1.2.840.10008.5.1.4.1.1.104.1": "ENCAP DOC",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.104.2": "ENCAP DOC",  # Encapsulated CDA
    "1.2.840.10008.5.1.4.1.1.104.3": "ENCAP DOC",  # Encapsulated STL
    "1.2.840.10008.5.1.4.1.1.104.4": "ENCAP DOC",  # Encapsulated OBJ
    "1.2.840.10008.5.1.4.1.1.104.5": "ENCAP DOC",  # Encapsulated MTL
    "1.2.840.10008.5.1.4.1.1.481.5": "RT PLAN",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8": "RT PLAN",  # RT Ion Plan
})

# Top-level records without a patient (PS3.3 F.4): hanging protocols, palettes, implants.
SINGLE_LEVEL_RECORD_TYPES: dict[str, str] = {
    "1.2.840.10008.5.1.4.38.1": "HANGING PROTOCOL",
    "1.2.840.10008.5.1.4.39.1": "PALETTE",
    "1.2.840.10008.5.1.4.43.1": "IMPLANT",
    "1.2.840.10008.5.1.4.44.1": "IMPLANT ASSY",
    "1.2.840.10008.5.1.4.45.1": "IMPLANT GROUP",
}

STANDARD_UID_ROOT = "1.2.840.10008."
MEDIA_STORAGE_DIRECTORY = UID("1.2.840.10008.1.3.10")


def record_type_for(sop_class_uid: str, has_pixels: bool) -> str:
    """The leaf record type for an instance. Image storage classes get IMAGE records even
    without Pixel Data (PS3.3 F.4 names the class, not the content; dcmmkdir agrees); an
    unknown class with pixel data is an image too; anything else unknown (private classes
    included) gets a PRIVATE record."""
    rtype = SOP_CLASS_RECORD_TYPES.get(sop_class_uid)
    if rtype:
        return rtype
    if has_pixels:
        return "IMAGE"
    if sop_class_uid.startswith(STANDARD_UID_ROOT) and "Image" in UID(sop_class_uid).name:
        return "IMAGE"
    return "PRIVATE"


def concept_modifiers(ds: Dataset) -> Sequence | None:
    """Content Sequence of an SR/KOS record: the root's HAS CONCEPT MOD items only (PS3.3
    Tables F.5-25/F.5-26, type 1C), or None when it has none."""
    items = [item for item in ds.get("ContentSequence", [])
             if str(item.get("RelationshipType", "")) == "HAS CONCEPT MOD"]
    return Sequence(items) if items else None
