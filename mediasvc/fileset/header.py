"""Read the header of a DICOM file: everything before its pixel data, nothing after.

The File-set Creator needs a few dozen attributes per file, all of them before (7FE0,0010);
reading and parsing the rest (pixel data, trailing padding) is most of a full dcmread. So the
first block of the file (64 KiB, far more than a usual header) is read in one system call and
parsed from memory by pydicom (filereader.read_dataset, stopping at the first pixel data
element). When the header does not end inside the block (large private blobs, long
sequences), or the file is anything but a plain Part 10 file of a non-deflated transfer
syntax, or something follows the pixel data, the file is read as before, with
dcmread(defer_size=...): the result is the same either way, only the cost differs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

BLOCK = 65536
DEFER = 2048  # values larger than this are not read (pixel data, big private blobs)
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel, Float, Double Float Pixel Data
_PIXEL_SET = frozenset(PIXEL_TAGS)
_UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class Pixels:
    """Where the (first) pixel data element's value lies in the file."""

    tag: int
    length: int  # 0xFFFFFFFF: encapsulated (undefined length)
    value_tell: int


@dataclass
class Header:
    ds: Dataset  # the data set up to (not including) the pixel data
    meta: Dataset  # the file meta information (empty for a bare data set)
    pixels: Pixels | None
    # Values deferred by dcmread that the truncation check must look at (slow path only).
    deferred: Dataset | None = None


def _fast(data: bytes, size: int, tags: frozenset[int] | None) -> Header | None:
    """Parse a block; None when it does not hold the whole header (or is unusual)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    fp = io.BytesIO(data)
    fp.seek(132)
    meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
    ts = meta.get("TransferSyntaxUID")
    if not ts:
        return None
    uid = UID(str(ts))
    if uid.is_deflated or not uid.is_transfer_syntax:
        return None
    implicit, little = uid.is_implicit_VR, uid.is_little_endian
    found: list[tuple[int, str | None, int]] = []

    def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in _PIXEL_SET:
            found.append((tag, vr, length))
            return True
        return False

    # Only the attributes asked for are kept (the pixel data tags must not be skipped: the
    # stop sees them first either way).
    ds = read_dataset(fp, implicit, little, stop_when=stop,
                      specific_tags=list(tags) if tags else None)
    if not found:
        # The block ended first (the header is longer), or the file has no pixel data (its
        # large values are better deferred, and a truncated one must be noticed): read it all.
        return None
    tag, vr, length = found[0]
    start = fp.tell()  # read_dataset rewound to the pixel data element's first byte
    header = 12 if not implicit and vr in EXPLICIT_VR_LENGTH_32 else 8
    pixels = Pixels(tag, length, start + header)
    if length != _UNDEFINED and pixels.value_tell + length != size:
        return None  # elements after the pixel data, or a truncated file: read it all
    return Header(ds, meta, pixels)


def read_header(path: Path, size: int, tags: frozenset[int] | None = None) -> Header:
    """The header of a Part 10 file. Raises InvalidDicomError (no preamble) like dcmread.
    ``tags``: the attributes wanted (others may be left out of the data set)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, min(BLOCK, max(size, 1)))
    finally:
        os.close(fd)
    try:
        fast = _fast(data, size, tags)
    except (ValueError, EOFError, KeyError, TypeError, AttributeError, NotImplementedError,
            OSError):
        fast = None  # let the full read report what is wrong with the file
    if fast is not None:
        return fast
    return _slow(path)


def _slow(path: Path, force: bool = False) -> Header:
    ds = dcmread(path, defer_size=DEFER, force=force)
    pixels = None
    for tag in PIXEL_TAGS:
        elem = ds._dict.get(BaseTag(tag))
        if elem is not None:
            pixels = Pixels(tag, getattr(elem, "length", 0) or 0,
                            getattr(elem, "value_tell", None) or 0)
            break
    return Header(ds, ds.file_meta, pixels, deferred=ds)


def read_bare(path: Path) -> Header:
    """A data set without preamble and file meta (force)."""
    return _slow(path, force=True)
