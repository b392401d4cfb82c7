"""Encode and write a DICOMDIR (Basic Directory IOD, PS3.3 Annex F; PS3.10 section 8.6).

The writer takes a tree of records (Node) and writes them depth-first, as DCMTK and most
FSCs do. pydicom encodes every element; this module only frames the Directory Record
Sequence (0004,1220) itself (one undefined-length sequence of defined-length items) so that
it can compute the record offsets in one pass: each record is encoded once with zero offsets,
its length is then known, and the three structural values are patched in place. pydicom's
FileSet instead rewrites the whole file until the offsets settle, which is the slow part of
its write for large sets.

Offsets (PS3.3 F.3.2.1) count bytes from the first byte of the file (the preamble) to the
first byte of the record's Item tag; 0 means "none".

A DICOMDIR is replaced atomically: written to a temporary file in the same folder, fsynced,
renamed over the old one, and the folder fsynced, so a crash at any moment leaves either the
old or the new DICOMDIR, never a broken one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from mediasvc import __version__
from mediasvc.durable import atomic_write
from mediasvc.fileset.records import MEDIA_STORAGE_DIRECTORY

# PS3.7 / PS3.10 7.1: our Implementation Class UID (under the pydicom-documented example root
# used for generated UIDs; a site may set its own) and version name (max 16 chars).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1149.1.1"
IMPLEMENTATION_VERSION_NAME = f"MEDIASVC_{__version__}"[:16]

_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_SEQ_DELIM = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_SEQ_HEADER = struct.pack("<HH", 0x0004, 0x1220) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
# Byte positions of the structural values inside an encoded record (Explicit VR LE):
# (0004,1400) UL at 0..12, value 8..12; (0004,1410) US at 12..22, value 20..22;
# (0004,1420) UL at 22..34, value 30..34. Checked at encode time.
_NEXT_TAG, _FLAG_TAG, _LOWER_TAG = (struct.pack("<HH", 0x0004, t) for t in (0x1400, 0x1410,
                                                                             0x1420))


@dataclass
class Node:
    """One directory record and the records of the entity below it."""

    record: Dataset  # the keys; the structural elements are set by the encoder
    children: list[Node] = field(default_factory=list)
    in_use: bool = True
    # The record already encoded (leaf records are encoded in worker processes, in
    # parallel); ``record`` is then left empty.
    body: bytes | None = None

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


@contextmanager
def unvalidated() -> Iterator[None]:
    """pydicom checks every value as an element is made and again as it is written; the
    records hold values read from files (checked by the profile rules and, in the tests, by
    dciodvfy) or made by us, and checking them per element is most of the cost of building
    and encoding a large DICOMDIR."""
    saved = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def encode_record(record: Dataset) -> bytes:
    """A record's bytes with zero offsets and in use (for Node.body)."""
    with unvalidated():
        return bytes(_record_body(Node(record)))


def _record_body(node: Node) -> bytearray:
    if node.body is not None:
        body = bytearray(node.body)
        struct.pack_into("<H", body, 20, 0xFFFF if node.in_use else 0x0000)
        return body
    rec = node.record
    rec[0x00041400] = DataElement(0x00041400, "UL", 0, already_converted=True)
    rec[0x00041410] = DataElement(0x00041410, "US", 0xFFFF if node.in_use else 0x0000,
                                  already_converted=True)
    rec[0x00041420] = DataElement(0x00041420, "UL", 0, already_converted=True)
    body = bytearray(_encode(rec))
    if body[0:4] != _NEXT_TAG or body[12:16] != _FLAG_TAG or body[22:26] != _LOWER_TAG:
        raise AssertionError("directory record does not start with its structural elements")
    return body


def encode_dicomdir(roots: list[Node], fileset_id: str, *,
                    media_sop_instance_uid: str | None = None) -> bytes:
    """The bytes of a DICOMDIR holding ``roots`` (and everything below them)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MEDIA_STORAGE_DIRECTORY
    meta.MediaStorageSOPInstanceUID = UID(media_sop_instance_uid or generate_uid())
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    top = Dataset()
    top.FileSetID = fileset_id
    top.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    top.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    top.FileSetConsistencyFlag = 0x0000
    header = bytearray(head.getvalue() + _encode(top))
    first_pos = header.index(struct.pack("<HH", 0x0004, 0x1200) + b"UL") + 8
    last_pos = header.index(struct.pack("<HH", 0x0004, 0x1202) + b"UL") + 8

    # Depth-first order; remember each node's offset, then patch next/lower offsets.
    order: list[Node] = [n for root in roots for n in root.walk()]
    with unvalidated():
        bodies = [_record_body(n) for n in order]
    offsets: dict[int, int] = {}
    pos = len(header) + len(_SEQ_HEADER)
    for node, body in zip(order, bodies, strict=True):
        offsets[id(node)] = pos
        pos += 8 + len(body)

    def link(siblings: list[Node]) -> None:
        for i, node in enumerate(siblings):
            body = bodies_by_id[id(node)]
            if i + 1 < len(siblings):
                struct.pack_into("<I", body, 8, offsets[id(siblings[i + 1])])
            if node.children:
                struct.pack_into("<I", body, 30, offsets[id(node.children[0])])
                link(node.children)

    bodies_by_id = {id(n): b for n, b in zip(order, bodies, strict=True)}
    link(roots)
    if roots:
        struct.pack_into("<I", header, first_pos, offsets[id(roots[0])])
        struct.pack_into("<I", header, last_pos, offsets[id(roots[-1])])
    out = bytearray(header)
    out += _SEQ_HEADER
    for body in bodies:
        out += _ITEM + struct.pack("<I", len(body)) + body
    out += _SEQ_DELIM
    return bytes(out)


def write_dicomdir(path: Path, roots: list[Node], fileset_id: str, *,
                   media_sop_instance_uid: str | None = None) -> None:
    atomic_write(path, encode_dicomdir(roots, fileset_id,
                                       media_sop_instance_uid=media_sop_instance_uid))
