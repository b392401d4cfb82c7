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


_PIECES: dict[tuple[int, str], bytes] = {}  # encoded elements that recur (class, syntax)


def _piece(tag: int, vr: str, value: object) -> bytes:
    key = (tag, str(value))
    piece = _PIECES.get(key)
    if piece is None:
        if len(_PIECES) > 4096:
            _PIECES.clear()
        piece = _PIECES[key] = encode_elements([DataElement(tag, vr, value,
                                                            already_converted=True)])
    return piece


def encode_head(record_type: str, private_record_uid: str | None = None) -> bytes:
    """(0004,1400)-(0004,1432): zero offsets, in use, the record type (and the Private Record
    UID of a PRIVATE record); the same bytes for every record of a type."""
    head = (_piece(0x00041400, "UL", 0) + _piece(0x00041410, "US", 0xFFFF)
            + _piece(0x00041420, "UL", 0) + _piece(0x00041430, "CS", record_type))
    if private_record_uid is not None:
        head += _piece(0x00041432, "UI", private_record_uid)
    return head


def encode_refs(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Referenced SOP Class / SOP Instance / Transfer Syntax UID in File (PS3.3 F.3.2.2)."""
    return (_piece(0x00041510, "UI", sop_class_uid)
            + encode_elements([DataElement(0x00041511, "UI", sop_instance_uid,
                                           already_converted=True)])
            + _piece(0x00041512, "UI", transfer_syntax_uid))


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


def encode_keys(elements: dict[int, KeyElement], charset: Sequence[str], *,
                invent_number: bool) -> tuple[bytes, int]:
    """A leaf record's directory keys (tags from (0008,0000) on) in tag order, and where an
    invented Instance Number goes (-1: none to invent). ``charset``: the record's Specific
    Character Set values, for the text keys that are not raw."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    encodings = list(charset) if charset else None
    number_at = -1
    for tag in sorted(elements):
        if invent_number and number_at < 0 and tag > INSTANCE_NUMBER:
            number_at = fp.tell()
        write_data_element(fp, elements[tag], encodings)
    if invent_number and number_at < 0:
        number_at = fp.tell()
    return fp.getvalue(), number_at
