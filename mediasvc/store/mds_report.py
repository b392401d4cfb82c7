"""The minimum data set report: per study, its series and images, each item with its status.

Input is plain data (:class:`StudyData`, built from the store by :func:`studies_from_store`
or by a caller), so that the report does not depend on how the store keeps its rows. Values
come from what extraction stored per instance (mds.py); study and series values are aggregated
from their instances ("first" found, or "earliest"), and the counts and lists that files rarely
carry (modalities in study, number of series, number of instances, storage location, stored
file) are computed from what the store holds and marked ``"source": "computed"``.

Status: ``present`` (a value), ``missing`` (applicable, no value: reported, never invented),
``not-applicable`` (the group or the item's condition does not apply to the modality).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydicom
from pydicom.errors import InvalidDicomError

from mediasvc.errors import InputError, UsageError
from mediasvc.store.mds import extract_instance
from mediasvc.store.mds_def import Item, MdsDefinition

PRESENT, MISSING, NOT_APPLICABLE = "present", "missing", "not-applicable"
COMPUTED = "computed"
CSV_COLUMNS = ("study_uid", "series_uid", "sop_instance_uid", "entity", "level", "id", "number",
               "key", "label", "value", "unit", "source", "status", "obligation")
COMPLETENESS_COLUMNS = ("study_uid", "level", "id", "key", "label", "missing_in", "of")


@dataclass
class InstanceData:
    sop_instance_uid: str
    mds: Mapping[str, Mapping[str, Any]]
    path: str | None = None
    modality: str | None = None


@dataclass
class SeriesData:
    series_instance_uid: str
    instances: list[InstanceData] = field(default_factory=list)
    modality: str | None = None


@dataclass
class StudyData:
    study_instance_uid: str
    series: list[SeriesData] = field(default_factory=list)
    storage_location: str | None = None


# -- building --------------------------------------------------------------------------------

def _series_modality(series: SeriesData) -> str:
    if series.modality:
        return series.modality
    for inst in series.instances:
        value = inst.mds.get("series.modality", {}).get("value")
        if isinstance(value, str) and value:
            return value
    return ""


def _aggregate(item: Item, instances: Iterable[InstanceData]) -> tuple[Any, str] | None:
    found = [(e["value"], str(e.get("source", ""))) for e in
             (inst.mds.get(item.key) for inst in instances) if e and e.get("value") is not None]
    if not found:
        return None
    if item.aggregate == "earliest":
        # ISO 8601 strings of the same form sort in time order.
        return min(found, key=lambda vs: str(vs[0]))
    return found[0]


def _entry(item: Item, definition: MdsDefinition, lang: str, obligation: str,
           got: tuple[Any, str] | None) -> dict[str, Any]:
    if obligation == NOT_APPLICABLE:
        status, value, source = NOT_APPLICABLE, None, None
    elif got is None:
        status, value, source = MISSING, None, None
    else:
        status, (value, source) = PRESENT, got
    entry: dict[str, Any] = {
        "id": item.numbers.get("en"),
        "number": item.numbers.get(definition.variant),
        "key": item.key,
        "level": item.level,
        "label": item.labels[lang],
        "value": value,
        "unit": item.unit,
        "source": source,
        "status": status,
        "obligation": obligation,
    }
    if item.obligation.by_modality:
        entry["condition"] = item.obligation.describe()  # e.g. "mandatory if PT, else optional"
    if item.note:
        entry["note"] = item.note
    return entry


def _obligation(item: Item, modalities: set[str]) -> str:
    if not item.group.applies(modalities):
        return NOT_APPLICABLE
    return item.obligation.resolve(modalities)


def build_report(studies: Iterable[StudyData], definition: MdsDefinition,
                 lang: str = "en") -> list[dict[str, Any]]:
    """One object per study: its items, its series (items, images (items))."""
    if lang not in definition.languages:
        raise UsageError(f"no labels in language {lang!r} (languages: "
                         f"{', '.join(definition.languages)})")
    study_items = definition.report_items("study")
    series_items = definition.report_items("series")
    image_items = definition.report_items("image")
    report: list[dict[str, Any]] = []
    for study in studies:
        modalities = {m for m in (_series_modality(s) for s in study.series) if m}
        every = [i for s in study.series for i in s.instances]
        computed: dict[str, Any] = {
            "storage_location": study.storage_location,
            "modalities_in_study": sorted(modalities) or None,
            "number_of_series": len(study.series),
        }
        items = [_entry(item, definition, lang, _obligation(item, modalities),
                        _aggregate(item, every) or _computed(item, computed))
                 for item in study_items]
        series_out = []
        for series in study.series:
            modality = _series_modality(series)
            s_computed = {"number_of_instances": len(series.instances)}
            s_items = [_entry(item, definition, lang, _obligation(item, {modality}),
                              _aggregate(item, series.instances)
                              or _computed(item, s_computed))
                       for item in series_items]
            images = []
            for inst in series.instances:
                i_computed = {"file_path": inst.path}
                i_modality = inst.modality or modality
                i_items = []
                for item in image_items:
                    obligation = _obligation(item, {i_modality})
                    if item.group.requires and item.group.requires not in inst.mds:
                        obligation = NOT_APPLICABLE
                    own = inst.mds.get(item.key)
                    got = ((own["value"], str(own.get("source", "")))
                           if own and own.get("value") is not None
                           else _computed(item, i_computed))
                    i_items.append(_entry(item, definition, lang, obligation, got))
                images.append({"sop_instance_uid": inst.sop_instance_uid, "path": inst.path,
                               "items": i_items})
            series_out.append({"series_uid": series.series_instance_uid, "modality": modality,
                               "items": s_items, "images": images})
        report.append({"study_uid": study.study_instance_uid, "variant": definition.variant,
                       "language": lang, "items": items, "series": series_out})
    return report


def _computed(item: Item, values: Mapping[str, Any]) -> tuple[Any, str] | None:
    if item.compute is None:
        return None
    value = values.get(item.compute)
    return None if value is None else (value, COMPUTED)


# -- views -----------------------------------------------------------------------------------

def _entities(study: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str,
                                                          list[dict[str, Any]]]]:
    """(entity, study uid, series uid, sop uid, items) for every entity of a study."""
    yield "study", study["study_uid"], "", "", study["items"]
    for series in study["series"]:
        yield "series", study["study_uid"], series["series_uid"], "", series["items"]
        for image in series["images"]:
            yield ("image", study["study_uid"], series["series_uid"], image["sop_instance_uid"],
                   image["items"])


def csv_value(value: Any) -> str:
    """Lists joined with DICOM's value separator; None as the empty string."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(csv_value(v) for v in value)
    return str(value)


def report_rows(report: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, str]]:
    """One row per item per entity (study, series, image), for a data warehouse."""
    for study in report:
        for entity, study_uid, series_uid, sop_uid, items in _entities(study):
            for e in items:
                yield {"study_uid": study_uid, "series_uid": series_uid,
                       "sop_instance_uid": sop_uid, "entity": entity, "level": e["level"],
                       "id": e["id"] or "", "number": e["number"] or "", "key": e["key"],
                       "label": e["label"], "value": csv_value(e["value"]),
                       "unit": e["unit"] or "", "source": e["source"] or "",
                       "status": e["status"], "obligation": e["obligation"]}


def completeness(report: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per study: the mandatory items missing, per level, with in how many entities."""
    out = []
    for study in report:
        counts: dict[tuple[str, str], dict[str, Any]] = {}
        for _entity, _st, _se, _sop, items in _entities(study):
            for e in items:
                if e["obligation"] != "mandatory":
                    continue
                c = counts.setdefault((e["level"], e["key"]), {
                    "id": e["id"], "key": e["key"], "label": e["label"], "missing_in": 0,
                    "of": 0})
                c["of"] += 1
                if e["status"] == MISSING:
                    c["missing_in"] += 1
        missing: dict[str, list[dict[str, Any]]] = {}
        for (level, _key), c in counts.items():
            if c["missing_in"]:
                missing.setdefault(level, []).append(c)
        out.append({"study_uid": study["study_uid"], "complete": not missing,
                    "missing": missing})
    return out


def completeness_rows(result: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for study in result:
        for level, entries in study["missing"].items():
            for c in entries:
                yield {"study_uid": study["study_uid"], "level": level, "id": c["id"] or "",
                       "key": c["key"], "label": c["label"], "missing_in": c["missing_in"],
                       "of": c["of"]}


def write_json(data: Any, out: IO[str]) -> None:
    # One write: json.dump writes every token on its own, a system call each when stdout is
    # unbuffered (PYTHONUNBUFFERED, as under systemd).
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_csv(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...], out: IO[str]) -> None:
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


# -- from the store --------------------------------------------------------------------------

def studies_from_store(store: Any, study_uid: str | None = None,
                       reextract: MdsDefinition | None = None) -> list[StudyData]:
    """Plain report input from a :class:`mediasvc.store.index.Store`.

    With ``reextract``, the stored files are read again with that definition instead of using
    the values extracted at import (after a site corrected its definition).
    """
    rows = store.studies(study_uid)
    if study_uid is not None and not rows:
        raise UsageError(f"no study {study_uid} in the store at {store.root}")
    studies = []
    for row in rows:
        origins: list[str] = []
        series_list = []
        for se in store.series_of(row.study_uid):
            instances = []
            for inst in store.instances_of(se.series_uid):
                mds = inst.mds if reextract is None else _reextract(Path(inst.path), reextract)
                instances.append(InstanceData(inst.sop_uid, mds, str(inst.path), se.modality))
                origin = inst.origin
                label = " ".join(p for p in (
                    origin.medium_label, origin.fileset_id and f"file-set {origin.fileset_id}",
                    origin.volume and f"volume {origin.volume}") if p)
                if label and label not in origins:
                    origins.append(label)
            series_list.append(SeriesData(se.series_uid, instances, se.modality))
        location = f"mediasvc store {store.root}"
        if origins:
            location += f" (from {'; '.join(origins)})"
        studies.append(StudyData(row.study_uid, series_list, location))
    return studies


def _reextract(path: Path, definition: MdsDefinition) -> dict[str, dict[str, Any]]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError) as exc:
        raise InputError(path, f"cannot read the stored file: {exc}") from exc
    return extract_instance(ds, definition)
