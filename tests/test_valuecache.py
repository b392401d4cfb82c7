"""The import's cache of converted element values (mediasvc.store.valuecache): an instance read
with conversions taken from other instances gives the same index values and minimum data set
as one read by pydicom alone."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mediasvc.store.importer import _header
from mediasvc.store.mds import extract_instance
from mediasvc.store.mds_def import load_definition
from mediasvc.store.valuecache import ValueCache

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TESTDATA  # noqa: E402

INSTANCES = sorted(p for p in (TESTDATA / "instances").rglob("*") if p.is_file()) \
    if (TESTDATA / "instances").is_dir() else []


def header_of(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def test_testdata_read_through_the_cache_equals_plain_reads() -> None:
    if not INSTANCES:
        pytest.skip("no ../shared/testdata/instances")
    definition = load_definition()
    blobs = [p.read_bytes() for p in INSTANCES]
    cache = ValueCache()
    hits = 0
    for _round in range(2):   # the second round reads every value from the first's cache
        for data in blobs:
            try:
                plain = header_of(data)
                expected = (_header(plain), extract_instance(plain, definition))
            except Exception:
                continue   # files pydicom cannot read at all are the importer's rejections
            cached = header_of(data)
            misses = cache.seed(cached)
            raw = sum(1 for e in cached._dict.values() if type(e).__name__ == "RawDataElement")
            hits += len(cached._dict) - raw
            got = (_header(cached), extract_instance(cached, definition))
            cache.learn(cached, misses)
            assert got == expected
    assert hits > 1000   # the cache was used, not bypassed


def person(charset: str, name_bytes: bytes) -> bytes:
    """A small instance whose Patient's Name has the given raw bytes in ``charset``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientID = "P1"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    # Patient's Name written as raw bytes (pydicom would encode a str in the charset itself).
    placeholder = Dataset()
    placeholder.add_new(0x00100010, "PN", name_bytes)
    ds2 = header_of(data)
    ds2[0x00100010] = placeholder[0x00100010]
    out = io.BytesIO()
    ds2.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_same_bytes_in_another_character_set_are_not_confused() -> None:
    """PS3.5 6.1.2.3: text is decoded in the instance's Specific Character Set; the same raw
    bytes under another one are another value."""
    raw = "Müller^Jürgen".encode("latin-1")
    latin = person("ISO_IR 100", raw)
    cyrillic = person("ISO_IR 144", raw)
    cache = ValueCache()
    first = header_of(latin)
    misses = cache.seed(first)
    assert str(first.PatientName) == "Müller^Jürgen"
    cache.learn(first, misses)
    second = header_of(cyrillic)
    cache.seed(second)
    assert str(second.PatientName) == raw.decode("iso8859_5")
    again = header_of(latin)
    cache.seed(again)
    assert type(again._dict[0x00100010]).__name__ == "DataElement"   # a hit
    assert str(again.PatientName) == "Müller^Jürgen"
