"""Converted element values shared between the instances of one import.

Most header elements of an instance repeat, byte for byte, in every other instance of its
series and study (Modality, Manufacturer, KVP, Patient's Name, Study Instance UID...). pydicom
converts each raw element on first access (hooks, VR lookup, value conversion: about 8 us an
element here), so reading the same 45 elements of 2,000 CT slices converted the same bytes
90,000 times. This cache keeps the converted DataElement per raw form and puts it back into
the next data set before anything is read from it: measured on 512x512 CT, index values plus
MDS went from 0.59 to 0.27 ms an instance.

Only what converts the same way in every data set is cached: explicit VR (the VR is in the
file, not looked up), a text or number VR (no sequence, no bulk data, no ambiguous VR), a
public tag (a private one depends on its creator), short values; the key holds the raw bytes,
byte order and the Specific Character Set (0008,0005) raw value, which text decoding depends on
(PS3.5 6.1.2.3). The shared DataElements are only read, never changed.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                  "UC", "UI", "UR", "UT", "US", "SS", "UL", "SL", "FL", "FD"})
_MAX_VALUE = 256       # bytes: longer values (descriptions, comments) rarely repeat
_MAX_ENTRIES = 20_000  # a bound on memory (a few MB); the cache starts again when it is full
_CHARSET = 0x00080005

Key = tuple[int, str, bytes, bool, Any]


class ValueCache:
    def __init__(self) -> None:
        self._values: dict[Key, Any] = {}

    def seed(self, ds: Dataset) -> list[tuple[int, Key]]:
        """Put cached conversions into ``ds``; return what to :meth:`learn` after reading."""
        elements = ds._dict
        charset = elements.get(_CHARSET)  # type: ignore[call-overload]
        charset_key = charset.value if isinstance(charset, RawDataElement) else (
            None if charset is None else str(charset.value))
        misses: list[tuple[int, Key]] = []
        values = self._values
        for tag, elem in elements.items():
            if (type(elem) is not RawDataElement or elem.VR not in _VRS or tag & 0x10000
                    or elem.value is None or len(elem.value) > _MAX_VALUE):
                continue
            key = (tag, elem.VR, elem.value, elem.is_little_endian, charset_key)
            hit = values.get(key)
            if hit is None:
                misses.append((tag, key))
            else:
                elements[tag] = hit
        return misses

    def learn(self, ds: Dataset, misses: list[tuple[int, Key]]) -> None:
        """Keep the conversions pydicom made while ``ds`` was read."""
        if len(self._values) > _MAX_ENTRIES:
            self._values.clear()
        elements = ds._dict
        for tag, key in misses:
            elem = elements.get(tag)  # type: ignore[call-overload]
            if elem is not None and type(elem) is not RawDataElement:
                self._values[key] = elem


def element(ds: Dataset, tag: int) -> DataElement | None:
    """``ds[tag]``, or None when absent. An element converted already (most are, seeded from
    the cache) is taken straight from the data set's dict, without Dataset.__getitem__'s
    checks; a raw one is converted by pydicom (which may raise on a damaged value)."""
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    if elem is None or type(elem) is DataElement:
        return elem
    return ds[tag]
