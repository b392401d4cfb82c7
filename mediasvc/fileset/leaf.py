"""The leaf directory record of one instance (IMAGE, SR DOCUMENT, ...), encoded where the
instance's header is read (in a scan worker), so that the parent process receives bytes, not
Datasets: less to pickle, less memory per instance, and no per-element encoding in the one
process that assembles the DICOMDIR.

Only what the File-set Creator decides later is left out: the Referenced File ID (0004,1500)
(known once files are placed) and, where the file has none, the Instance Number it invents
(known once the series is sorted). The record is kept in three encoded pieces around those
two elements; ``LeafRecord.body`` joins them. Every element is encoded by pydicom
(write_data_element), in tag order as PS3.5 7.1 requires; the pieces only fall at element
boundaries that come from the tag order, never from parsing bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue

KeyElement = DataElement | RawDataElement

REFERENCED_FILE_ID = 0x00041500
INSTANCE_NUMBER = 0x00200013
_FIRST_KEY_GROUP = 0x00080000  # directory keys; below are the record's own (0004,xxxx)


def encode_elements(elements: Iterable[KeyElement], encodings: Sequence[str] | None = None
                    ) -> bytes:
    """Elements (in the order given) as Explicit VR Little Endian bytes. Raw elements read
    from an Explicit VR Little Endian file are written as read (PS3.5 7.1.2)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    enc = list(encodings) if encodings else None
    for elem in elements:
        write_data_element(fp, elem, enc)
    return fp.getvalue()


def encode_refs(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Referenced SOP Class / SOP Instance / Transfer Syntax UID in File (PS3.3 F.3.2.2)."""
    return encode_elements([
        DataElement(0x00041510, "UI", sop_class_uid, already_converted=True),
        DataElement(0x00041511, "UI", sop_instance_uid, already_converted=True),
        DataElement(0x00041512, "UI", transfer_syntax_uid, already_converted=True)])


@dataclass(frozen=True, slots=True)
class LeafRecord:
    """An encoded leaf record less its Referenced File ID (and an invented Instance Number).
    ``head``: (0004,1400)-(0004,1432), offsets zero, in use; ``refs``: (0004,1510)-(0004,1512);
    ``keys``: the directory keys, (0008,0000) onwards; ``number_at``: where an invented
    Instance Number goes in ``keys``, or -1 when the file has one."""

    head: bytes
    refs: bytes
    keys: bytes
    number_at: int = -1

    def body(self, file_id: Sequence[str], number: int, refs: bytes | None = None) -> bytes:
        ref = encode_elements([DataElement(REFERENCED_FILE_ID, "CS", MultiValue(str, file_id),
                                           already_converted=True)])
        keys = self.keys
        if self.number_at >= 0:
            inum = encode_elements([DataElement(INSTANCE_NUMBER, "IS", number)])
            keys = keys[:self.number_at] + inum + keys[self.number_at:]
        return self.head + ref + (self.refs if refs is None else refs) + keys


def encode_leaf(elements: dict[int, KeyElement], charset: Sequence[str], *,
                invent_number: bool) -> LeafRecord:
    """Encode a leaf record's elements (tag -> element, Referenced File ID absent) into a
    LeafRecord. ``charset``: the record's Specific Character Set values, for the text keys
    that are not raw."""
    encodings = list(charset) if charset else None
    tags = sorted(elements)
    head = [elements[t] for t in tags if t < REFERENCED_FILE_ID]
    refs = [elements[t] for t in tags if REFERENCED_FILE_ID < t < _FIRST_KEY_GROUP]
    before = [elements[t] for t in tags if _FIRST_KEY_GROUP <= t < INSTANCE_NUMBER]
    after = [elements[t] for t in tags if t >= INSTANCE_NUMBER]
    first = encode_elements(before, encodings)
    return LeafRecord(encode_elements(head), encode_elements(refs),
                      first + encode_elements(after, encodings),
                      len(first) if invent_number else -1)
