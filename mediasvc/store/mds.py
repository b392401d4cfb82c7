"""Minimum data set extraction from one instance, driven by the definition (mds_def.py).

The store calls :func:`extract_instance` for every instance it imports and keeps the result as
JSON in its index: item key -> {"value": ..., "source": ...}, only for items found. Values are
plain JSON (str, int, float, lists); ``source`` is the tag path read, ``A+B`` for a date and a
time combined, or ``derived`` for a value computed from other items (field of view).

Nothing is invented: an empty element, a date that does not parse or a zero weight is "not
found", and the next alternative is tried; an item none of whose alternatives gives a value is
left out (the report says it is missing). Study, series and image aggregation and the values
computed from the store are the report's job (mds_report.py).
"""

from __future__ import annotations

import datetime
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from mediasvc.store.mds_def import (
    ALL,
    CONVERSIONS,
    DateTimeAlt,
    FovAlt,
    Item,
    JoinAlt,
    MdsDefinition,
    PathAlt,
    Step,
    TagPath,
    load_definition,
)
from mediasvc.store.valuecache import element

__all__ = ["extract_instance", "load_definition", "MdsDefinition"]

log = logging.getLogger(__name__)

_NOTHING: Any = object()

_DA_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT_RE = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")


# -- reading paths ---------------------------------------------------------------------------

def _element_value(ds: Dataset, step: Step) -> Any:
    """The value of one element of ``ds``, or _NOTHING when absent."""
    tag = step.tag if step.creator is None else _private_tag(ds, step.tag, step.creator)
    # The dataset's own dict first: `tag in ds` builds a Tag and compares it (measured: a
    # third of the extraction time), and most tags of the definition are absent.
    if tag is None:
        return _NOTHING
    try:
        elem = element(ds, tag)
    except Exception as exc:  # pydicom failing to decode a raw element: not a value
        log.debug("MDS: element %08X unreadable: %s", step.tag, exc)
        return _NOTHING
    if elem is None:
        return _NOTHING
    return elem.value


def _private_tag(ds: Dataset, tag: int, creator: str) -> int | None:
    """PS3.5 7.8.1: a private element lives in the block its creator reserved in this data
    set; the block number in the definition is only how the table printed it. (Faster than
    Dataset.private_block, which slices the whole group.)"""
    group = tag & 0xFFFF0000
    for block in range(0x10, 0x100):
        reservation = ds._dict.get(group | block)  # type: ignore[call-overload]
        if reservation is None:
            continue
        try:
            value = ds[group | block].value
        except Exception:  # an unreadable reservation reserves nothing we can trust
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and value.strip(" \x00") == creator:
            return group | (block << 8) | (tag & 0xFF)
    return None


def _walk(ds: Dataset, steps: tuple[Step, ...]) -> Iterator[Any]:
    """Yield the leaf value(s) of a path; _NOTHING for a missing leaf under a [*] item."""
    step = steps[0]
    value = _element_value(ds, step)
    if len(steps) == 1:
        yield value
        return
    if not isinstance(value, Sequence):
        yield _NOTHING
        return
    if step.index == ALL:
        for item in value:
            yield from _walk(item, steps[1:])
    elif step.index is not None and step.index < len(value):
        yield from _walk(value[step.index], steps[1:])
    else:
        yield _NOTHING


def read_path(ds: Dataset, path: TagPath) -> Any:
    """One value, or for a [*] path a list of values (None where an item lacks it)."""
    if path.multi:
        values = [None if _empty(v) else v for v in _walk(ds, path.steps)]
        return values if any(v is not None for v in values) else _NOTHING
    value = next(_walk(ds, path.steps))
    return _NOTHING if _empty(value) else value


def _empty(value: Any) -> bool:
    if value is _NOTHING or value is None:
        return True
    if isinstance(value, bytes):
        return not value.strip(b" \x00")
    if isinstance(value, str):
        return not value.strip(" \x00")
    if isinstance(value, list | MultiValue | Sequence):
        return len(value) == 0 or all(_empty(v) for v in value)
    return False


# -- conversions -----------------------------------------------------------------------------

def _as_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, list | MultiValue):
        # Multi-valued strings keep DICOM's own separator (PS3.5 6.4).
        text = "\\".join(s for s in (_as_str(v) for v in value) if s is not None)
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text or None


def _as_number(value: Any) -> float:
    if isinstance(value, list | MultiValue):
        value = value[0]  # e.g. Inversion Times (0018,9079) 1-n: the first
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return float(str(value).strip(" \x00")) if isinstance(value, str) else float(value)


def _number_out(n: float, item: Item, as_int: bool) -> int | float:
    if as_int and n.is_integer():
        return int(n)
    return round(n, item.round) if item.round is not None else n


def _numbers(value: Any) -> list[float]:
    if isinstance(value, list | MultiValue):
        return [_as_number(v) for v in value]
    if isinstance(value, str) and "\\" in value:
        return [float(v) for v in value.split("\\")]
    return [_as_number(value)]


def iso_date(value: Any) -> str | None:
    m = _DA_RE.match(str(value).strip().replace("-", "").replace(".", ""))
    if not m:
        return None
    try:
        return datetime.date(*(int(x) for x in m.groups())).isoformat()
    except ValueError:  # 30 February, month 13, year 0: not a date
        return None


def iso_time(value: Any) -> str | None:
    m = _TM_RE.match(str(value).strip())
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    h, mi, s = int(hh), int(mm or 0), int(ss or 0)
    if h > 23 or mi > 59 or s > 60:
        return None
    return f"{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "")


def iso_datetime(value: Any) -> str | None:
    """DT (PS3.5 6.2: YYYYMMDDHHMMSS.FFFFFF&ZZXX) as ISO 8601, or None."""
    m = _DT_RE.match(str(value).strip())
    if not m:
        return None
    date = iso_date(m[1])
    if date is None:
        return None
    if not m[2]:
        return date
    time = iso_time(m[2])
    if time is None:
        return None
    tz = f"{m[3][:3]}:{m[3][3:]}" if m[3] else ""
    return f"{date}T{time}{tz}"


def convert(item: Item, value: Any, unit: str | None = None) -> Any:
    """Convert a raw element value to the item's type; None if it is not a usable value."""
    factor = CONVERSIONS[(unit, item.unit)] if unit and item.unit and unit != item.unit else 1.0
    kind = item.type
    if isinstance(value, list) and kind in ("strings", "decimals") and not isinstance(
            value, MultiValue):
        # A [*] path: one entry per sequence item, None kept so that lists stay aligned.
        if kind == "strings":
            out: list[Any] = [None if v is None else _as_str(v) for v in value]
        else:
            out = [None if v is None else _scaled(_as_number(v), factor, item)
                   for v in value]
        if item.distinct:
            seen: list[Any] = []
            for v in out:
                if v is not None and v not in seen:
                    seen.append(v)
            out = seen
        return out if any(v is not None for v in out) else None
    if kind in ("string", "uid"):
        return _as_str(value)
    if kind == "strings":
        if isinstance(value, list | MultiValue):
            strs = [s for s in (_as_str(v) for v in value) if s is not None]
        else:
            one = _as_str(value)
            strs = one.split("\\") if one else []
        return strs or None
    if kind == "datetime":
        return iso_datetime(value)
    if kind == "decimals":
        numbers = _numbers(value)
        if not all(math.isfinite(n) for n in numbers):
            return None  # DS allows no NaN or infinity (PS3.5 6.2); not a value
        return [_scaled(n, factor, item) for n in numbers]
    n = _as_number(value) * factor
    if not math.isfinite(n) or (item.zero_is_missing and n == 0):
        return None
    return _number_out(n, item, as_int=kind == "integer")


def _scaled(n: float, factor: float, item: Item) -> float:
    n *= factor
    return round(n, item.round) if item.round is not None else n


# -- alternatives ----------------------------------------------------------------------------

def _try(ds: Dataset, item: Item, alt: Any, found: dict[str, dict[str, Any]]
         ) -> tuple[Any, str] | None:
    if isinstance(alt, PathAlt):
        raw = read_path(ds, alt.path)
        if raw is _NOTHING:
            return None
        value = convert(item, raw, alt.path.unit)
        return None if value is None else (value, alt.path.source)
    if isinstance(alt, DateTimeAlt):
        raw_time = read_path(ds, alt.time)
        time = None if raw_time is _NOTHING else iso_time(_as_str(raw_time) or "")
        if time is None:
            return None  # a date alone is not a time of acquisition: never invented
        for date_path in alt.dates:
            raw_date = read_path(ds, date_path)
            date = None if raw_date is _NOTHING else iso_date(_as_str(raw_date) or "")
            if date is not None:
                return f"{date}T{time}", f"{date_path.source}+{alt.time.source}"
        return None
    if isinstance(alt, FovAlt):
        if alt.diameter is not None:
            raw = read_path(ds, alt.diameter)
            if raw is not _NOTHING:
                d = _scaled(_as_number(raw), 1.0, item)
                if d > 0:
                    return [d, d], alt.diameter.source
        rows, cols, spacing = (found.get(k, {}).get("value")
                               for k in (alt.rows, alt.columns, alt.spacing))
        if not (isinstance(rows, int | float) and isinstance(cols, int | float)
                and isinstance(spacing, list) and len(spacing) == 2):
            return None
        # Pixel Spacing is row spacing \ column spacing (PS3.3 10.7.1.3): the width is
        # Columns x column spacing, the height Rows x row spacing.
        return ([_scaled(cols * spacing[1], 1.0, item), _scaled(rows * spacing[0], 1.0, item)],
                "derived")
    if isinstance(alt, JoinAlt):
        raw_parts = [(p.source, read_path(ds, p)) for p in alt.parts]
        texts = [(src, _as_str(v)) for src, v in raw_parts if v is not _NOTHING]
        got = [(src, text) for src, text in texts if text]
        if not got or got[0][0] != alt.parts[0].source:
            return None  # the first part (e.g. Modality) is what the value is about
        return alt.separator.join(t for _, t in got), "+".join(src for src, _ in got)
    raise TypeError(f"unknown alternative {alt!r}")  # pragma: no cover


def extract_item(ds: Dataset, item: Item, found: dict[str, dict[str, Any]]
                 ) -> dict[str, Any] | None:
    for alt in item.alternatives:
        try:
            got = _try(ds, item, alt, found)
        except (ValueError, TypeError, OverflowError, AttributeError) as exc:
            # A malformed value (e.g. DS "abc") is not a value: try the next alternative.
            log.debug("MDS %s: %s unreadable: %s", item.key, alt, exc)
            continue
        if got is not None:
            return {"value": got[0], "source": got[1]}
    return None


def extract_instance(ds: pydicom.Dataset, definition: MdsDefinition
                     ) -> dict[str, dict[str, Any]]:
    """Item key -> {"value": <json-able>, "source": "(0018,0087)" | ...}; only items found.

    Every item of the definition is extracted whatever the variant (variants only change
    obligations), so a store indexed once can be reported in any variant.
    """
    found: dict[str, dict[str, Any]] = {}
    later: list[Item] = []
    raw_modality = _element_value(ds, Step(0x00080060, None))  # (0008,0060) Modality
    modality = "" if raw_modality is _NOTHING else (_as_str(raw_modality) or "")
    for item in definition.items:
        if not item.alternatives or not item.group.applies({modality}):
            # A group that does not apply to this modality (MR items of a CT image) is not
            # extracted: its values would be meaningless (PS3.3 modules differ per IOD).
            continue
        if item.derived_from_items:
            later.append(item)  # needs the values of other items first
            continue
        got = extract_item(ds, item, found)
        if got is not None:
            found[item.key] = got
    for item in later:
        got = extract_item(ds, item, found)
        if got is not None:
            found[item.key] = got
    return found
