"""The minimum data set (MDS) definition: profiles/mds/*.toml, loaded and validated.

The MDS of ../shared/seeds/000 (English) and 001 (French) is data, not code, so that a site can
correct or extend it: groups (levels) with their applicability by modality, items with a stable
key, both numberings, labels per language, an obligation (possibly conditional on the series
modality, possibly overridden per variant), and ordered tag alternatives (paths into sequences
and functional groups, private elements under their creator, unit conversions, derived values).

Every error names file, key and value (mediasvc.config.Table). The extractor (mds.py) and the
report (mds_report.py) only read the frozen objects built here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword

from mediasvc.config import Table, load_toml
from mediasvc.errors import NO_VALUE, ConfigError, UsageError
from mediasvc.profiles import profiles_dir

ENTITIES = ("study", "series", "image")
TYPES = ("uid", "string", "strings", "integer", "decimal", "decimals", "datetime")
LIST_TYPES = ("strings", "decimals")
OBLIGATIONS = ("mandatory", "optional", "not-applicable")
VARIANT_OBLIGATIONS = (*OBLIGATIONS, "excluded")
AGGREGATES = ("first", "earliest")
DERIVATIONS = ("datetime", "fov", "join")
# What a `compute` item is computed from, and the entity it belongs to.
COMPUTED = {
    "storage_location": "study",
    "modalities_in_study": "study",
    "number_of_series": "study",
    "number_of_instances": "series",
    "file_path": "image",
}
# Unit conversions a tag alternative may need: (from, to) -> factor.
CONVERSIONS: dict[tuple[str, str], float] = {
    ("Bq", "MBq"): 1e-6,
    ("kBq", "MBq"): 1e-3,
    ("uAs", "mAs"): 1e-3,
    ("us", "ms"): 1e-3,
    ("s", "ms"): 1e3,
    ("g", "kg"): 1e-3,
    ("cm", "mm"): 10.0,
    ("cm", "m"): 1e-2,
    ("mm", "m"): 1e-3,
}
# Functional groups of enhanced multi-frame objects (PS3.3 C.7.6.16): shared first, then the
# first frame's.
FG_SEQUENCES = (("SharedFunctionalGroupsSequence", 0x52009229),
                ("PerFrameFunctionalGroupsSequence", 0x52009230))
ALL = -1  # index of a [*] step: every item of the sequence

_STEP_RE = re.compile(
    r"^(?:(?P<kw>[A-Za-z][A-Za-z0-9]*)|\((?P<g>[0-9A-Fa-f]{4}),(?P<e>[0-9A-Fa-f]{4})\))"
    r"(?:\[(?P<i>\d+|\*)\])?$")


# -- the model -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    tag: int
    index: int | None  # sequence item (ALL for [*]); None on the last step (a plain element)
    creator: str | None = None  # private creator of an odd-group element


@dataclass(frozen=True)
class TagPath:
    """A path to one element, possibly through sequences; ``source`` is how reports show it."""

    steps: tuple[Step, ...]
    source: str
    unit: str | None = None
    multi: bool = False  # a [*] step: the value is a list, one entry per sequence item


@dataclass(frozen=True)
class PathAlt:
    path: TagPath


@dataclass(frozen=True)
class DateTimeAlt:
    """Date + time combined into one date-time (PS3.5 6.2 DA, TM)."""

    dates: tuple[TagPath, ...]
    time: TagPath


@dataclass(frozen=True)
class FovAlt:
    """Field of view: Reconstruction Diameter, else matrix x spacing (from other items)."""

    diameter: TagPath | None
    rows: str
    columns: str
    spacing: str


@dataclass(frozen=True)
class JoinAlt:
    parts: tuple[TagPath, ...]
    separator: str


Alternative = PathAlt | DateTimeAlt | FovAlt | JoinAlt


@dataclass(frozen=True)
class Obligation:
    """``default``, or per series modality: e.g. PT mandatory, NM optional, else n/a."""

    default: str
    by_modality: tuple[tuple[str, str], ...] = ()

    def resolve(self, modalities: set[str] | frozenset[str]) -> str:
        """The obligation for a series of this modality (for a study: the strongest)."""
        if not self.by_modality:
            return self.default
        table = dict(self.by_modality)
        found = [table.get(m, self.default) for m in modalities] or [self.default]
        return min(found, key=OBLIGATIONS.index)

    def describe(self) -> str:
        if not self.by_modality:
            return self.default
        parts = [f"{o} if {m}" for m, o in self.by_modality]
        return ", ".join(parts) + f", else {self.default}"


@dataclass(frozen=True)
class Group:
    level: str
    number: str
    entity: str
    labels: dict[str, str]
    modalities: frozenset[str] | None  # None: every modality
    requires: str | None  # an item key the instance must have for the group to apply

    def applies(self, modalities: set[str] | frozenset[str]) -> bool:
        return self.modalities is None or bool(self.modalities & set(modalities))


@dataclass(frozen=True)
class Item:
    key: str
    numbers: dict[str, str | None]
    labels: dict[str, str]
    group: Group
    type: str
    obligation: Obligation  # for the variant the definition was loaded with
    excluded: bool  # not part of that variant's table (still extracted)
    alternatives: tuple[Alternative, ...]
    compute: str | None = None
    aggregate: str = "first"
    unit: str | None = None
    round: int | None = None
    distinct: bool = False
    zero_is_missing: bool = False
    note: str = ""

    @property
    def level(self) -> str:
        return self.group.level

    @property
    def entity(self) -> str:
        return self.group.entity

    derived_from_items: bool = False  # a fov derivation: extracted after the other items


@dataclass(frozen=True)
class MdsDefinition:
    name: str
    version: str
    languages: tuple[str, ...]
    variants: tuple[str, ...]
    variant: str
    groups: tuple[Group, ...]
    items: tuple[Item, ...]  # every item, in file order (extraction covers them all)
    source: Path | None = None
    by_key: dict[str, Item] = field(default_factory=dict)

    def report_items(self, entity: str | None = None) -> list[Item]:
        """The items of this variant's table (optionally of one entity), in file order."""
        return [i for i in self.items
                if not i.excluded and (entity is None or i.entity == entity)]


# -- parsing ---------------------------------------------------------------------------------

def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def parse_path(t: Table, key: str, text: object, unit: str | None = None,
               creator: str | None = None) -> list[TagPath]:
    """Parse one path string; ``fg:`` expands to the shared, then first per-frame group."""
    if not isinstance(text, str) or not text:
        raise t.error(key, "must be a tag path such as KVP or Sequence[0].Keyword", text)
    if text.startswith("fg:"):
        rest = text[3:]
        out = []
        for kw, _tag in FG_SEQUENCES:
            out += parse_path(t, key, f"{kw}[0].{rest}", unit, creator)
        return out
    steps: list[Step] = []
    shown: list[str] = []
    parts = text.split(".")
    for n, part in enumerate(parts):
        m = _STEP_RE.match(part)
        if not m:
            raise t.error(key, f"{part!r} is not a keyword or (gggg,eeee), optionally with "
                               "[n] or [*]", text)
        last = n == len(parts) - 1
        if m["kw"]:
            tag = tag_for_keyword(m["kw"])
            if tag is None:
                raise t.error(key, f"{m['kw']!r} is not a DICOM keyword of the data "
                                   "dictionary (PS3.6)", text)
        else:
            tag = int(m["g"] + m["e"], 16)
        private = bool((tag >> 16) & 1)
        if private:
            if creator is None:
                raise t.error(key, f"{_tag_str(tag)} is a private element: give its private "
                                   "creator ({ path = ..., creator = ... })", text)
            if (tag & 0xFFFF) < 0x1000:
                raise t.error(key, f"{_tag_str(tag)} is not a private data element "
                                   "(element must be xx10-xxFF block)", text)
        elif not dictionary_has_tag(tag):
            raise t.error(key, f"{_tag_str(tag)} is not in the data dictionary (PS3.6)", text)
        index_text = m["i"]
        if last:
            if index_text is not None:
                raise t.error(key, "the last step names an element, not a sequence item", text)
            if not private and dictionary_VR(tag) == "SQ":
                raise t.error(key, f"{part} is a sequence: name an element inside it", text)
            index = None
        else:
            if not private and dictionary_VR(tag) != "SQ":
                raise t.error(key, f"{part} is not a sequence (only the last step may be an "
                                   "element)", text)
            index = 0 if index_text is None else (ALL if index_text == "*" else int(index_text))
        steps.append(Step(tag, index, creator if private else None))
        suffix = "" if index is None else ("[*]" if index == ALL else f"[{index}]")
        shown.append(_tag_str(tag) + suffix + (f"@{creator}" if private else ""))
    return [TagPath(tuple(steps), ".".join(shown), unit, any(s.index == ALL for s in steps))]


def _units(t: Table, key: str, unit: str | None, item_unit: str | None) -> None:
    if unit is None or unit == item_unit:
        return
    if item_unit is None or (unit, item_unit) not in CONVERSIONS:
        known = ", ".join(f"{a}->{b}" for a, b in CONVERSIONS)
        raise t.error(key, f"no conversion from {unit} to the item's unit {item_unit} "
                           f"(known: {known})")


def _path_list(t: Table, key: str) -> list[TagPath]:
    value = t.data.get(key)
    texts = value if isinstance(value, list) else [value]
    out: list[TagPath] = []
    for text in texts:
        out += parse_path(t, key, text)
    return out


def _alternative(t: Table, key: str, raw: Any, item_unit: str | None,
                 item_type: str) -> list[Alternative]:
    if isinstance(raw, str):
        paths = parse_path(t, key, raw)
        _check_multi(t, key, paths, item_type)
        return [PathAlt(p) for p in paths]
    if not isinstance(raw, dict):
        raise t.error(key, "each alternative must be a tag path or a table", raw)
    a = Table(raw, t.file, f"{t.name(key)}.")
    if "derive" not in raw:
        a.check_keys({"path", "creator", "unit"})
        unit = a.str("unit", None)
        _units(a, "unit", unit, item_unit)
        paths = parse_path(a, "path", a.str("path"), unit, a.str("creator", None))
        _check_multi(a, "path", paths, item_type)
        return [PathAlt(p) for p in paths]
    kind = a.str("derive", choices=DERIVATIONS)
    if kind == "datetime":
        a.check_keys({"derive", "date", "time"})
        if item_type != "datetime":
            raise a.error("derive", f"a datetime derivation needs type = \"datetime\", "
                                    f"not {item_type!r}")
        a.str("time")
        if not isinstance(raw.get("date"), str | list) or not raw.get("date"):
            raise a.error("date", "must be a tag path or a list of tag paths")
        return [DateTimeAlt(tuple(_path_list(a, "date")), _path_list(a, "time")[0])]
    if kind == "fov":
        a.check_keys({"derive", "diameter", "rows", "columns", "spacing"})
        diameter = a.str("diameter", None)
        return [FovAlt(parse_path(a, "diameter", diameter)[0] if diameter else None,
                       a.str("rows"), a.str("columns"), a.str("spacing"))]
    a.check_keys({"derive", "parts", "separator"})
    parts: list[TagPath] = []
    for text in a.str_list("parts"):
        parts += parse_path(a, "parts", text)
    if not parts:
        raise a.error("parts", "must list at least one tag path")
    return [JoinAlt(tuple(parts), a.str("separator", " "))]


def _check_multi(t: Table, key: str, paths: list[TagPath], item_type: str) -> None:
    if any(p.multi for p in paths) and item_type not in LIST_TYPES:
        raise t.error(key, f"a [*] path gives a list: the item's type must be one of "
                           f"{', '.join(LIST_TYPES)}, not {item_type!r}")


def _obligation(t: Table, key: str, allowed: tuple[str, ...]) -> Obligation:
    raw = t.data.get(key)
    if isinstance(raw, str):
        return Obligation(t.str(key, choices=allowed))
    if isinstance(raw, dict):
        o = t.table(key)
        by: list[tuple[str, str]] = []
        for modality, _value in o.items():
            if modality == "default":
                continue
            if not re.fullmatch(r"[A-Z0-9]{1,16}", modality):
                raise o.error(modality, "must be a modality (CS, e.g. PT) or default")
            by.append((modality, o.str(modality, choices=OBLIGATIONS)))
        return Obligation(o.str("default", choices=OBLIGATIONS), tuple(by))
    raise t.error(key, f"must be one of {', '.join(allowed)}, or a table "
                       "{ MODALITY = ..., default = ... }")


def _labels(t: Table, key: str, languages: tuple[str, ...]) -> dict[str, str]:
    lt = t.table(key)
    lt.check_keys(languages)
    return {lang: lt.str(lang) for lang in languages}


def parse_definition(t: Table, variant: str = "en") -> MdsDefinition:
    t.check_keys({"name", "version", "languages", "variants", "group", "item"})
    languages = tuple(t.str_list("languages"))
    variants = tuple(t.str_list("variants"))
    if not languages:
        raise t.error("languages", "must list at least one language")
    if not variants:
        raise t.error("variants", "must list at least one variant")
    if variant not in variants:
        raise UsageError(f"{t.file}: no MDS variant {variant!r} (variants: "
                         f"{', '.join(variants)})")

    groups: dict[str, Group] = {}
    requires: list[tuple[Table, Group]] = []
    for g in t.tables("group"):
        g.check_keys({"level", "number", "entity", "label", "modalities", "requires"})
        level = g.str("level", pattern=r"[a-z][a-z0-9_]*")
        if level in groups:
            raise g.error("level", "duplicate level")
        mods = g.str_list("modalities", None)
        group = Group(level, g.str("number"), g.str("entity", choices=ENTITIES),
                      _labels(g, "label", languages),
                      frozenset(mods) if mods is not None else None, g.str("requires", None))
        groups[level] = group
        if group.requires:
            requires.append((g, group))

    items: list[Item] = []
    by_key: dict[str, Item] = {}
    fov_refs: list[tuple[Table, FovAlt]] = []
    item_keys = {"key", "number", "label", "level", "type", "obligation", "tags", "compute",
                 "aggregate", "unit", "round", "distinct", "zero_is_missing", "note"}
    item_keys |= {f"obligation_{v}" for v in variants}
    for it in t.tables("item"):
        it.check_keys(item_keys)
        key = it.str("key", pattern=r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
        if key in by_key:
            raise it.error("key", "duplicate item key")
        level = it.str("level", choices=groups)
        group = groups[level]
        numbers_t = it.table("number")
        numbers_t.check_keys(variants)
        numbers = {v: numbers_t.str(v, None, pattern=r"\d+(\.\d+)*") for v in variants}
        item_type = it.str("type", choices=TYPES)
        unit = it.str("unit", None)
        obligation = _obligation(it, "obligation", OBLIGATIONS)
        excluded = False
        override = f"obligation_{variant}"
        if override in it:
            chosen = _obligation(it, override, VARIANT_OBLIGATIONS)
            excluded = chosen.default == "excluded" and not chosen.by_modality
            if not excluded:
                obligation = chosen
        for v in variants:  # validate the other variants' overrides too
            if f"obligation_{v}" in it:
                _obligation(it, f"obligation_{v}", VARIANT_OBLIGATIONS)
        alts: list[Alternative] = []
        raw_tags = it.data.get("tags", [])
        if not isinstance(raw_tags, list):
            raise it.error("tags", "must be a list of alternatives (tag paths or tables)")
        tags_t = Table({"tags": raw_tags}, it.file, it.prefix)
        for n, raw in enumerate(raw_tags):
            sub = Table({f"tags[{n}]": raw}, it.file, it.prefix)
            alts += _alternative(sub, f"tags[{n}]", raw, unit, item_type)
        compute = it.str("compute", None, choices=COMPUTED)
        if compute is not None and COMPUTED[compute] != group.entity:
            raise it.error("compute", f"{compute} is computed for a {COMPUTED[compute]}, but "
                                      f"level {level!r} is a {group.entity} level")
        if not alts and compute is None:
            raise tags_t.error("tags", "an item needs tags or compute")
        rnd = it.int("round", None, min=0, max=9)
        if rnd is not None and item_type not in ("decimal", "decimals"):
            raise it.error("round", "only decimal items are rounded")
        item = Item(
            key=key, numbers=numbers, labels=_labels(it, "label", languages), group=group,
            type=item_type, obligation=obligation, excluded=excluded,
            alternatives=tuple(alts), compute=compute,
            aggregate=it.str("aggregate", "first", choices=AGGREGATES), unit=unit,
            round=rnd, distinct=it.bool("distinct", False),
            zero_is_missing=it.bool("zero_is_missing", False), note=it.str("note", ""),
            derived_from_items=any(isinstance(a, FovAlt) for a in alts))
        for a in alts:
            if isinstance(a, FovAlt):
                fov_refs.append((it, a))
        items.append(item)
        by_key[key] = item

    if not items:
        raise t.error("item", "the definition has no items")
    for it, fov in fov_refs:
        for what in ("rows", "columns", "spacing"):
            ref = getattr(fov, what)
            if ref not in by_key:
                raise it.error("tags", f"derive fov: {what} = {ref!r} is not an item key")
            if by_key[ref].derived_from_items:
                raise it.error("tags", f"derive fov: {what} = {ref!r} is itself derived "
                                       "from items")
    for g, group in requires:
        if group.requires not in by_key:
            raise g.error("requires", "is not an item key")
    return MdsDefinition(
        name=t.str("name"), version=t.str("version"), languages=languages, variants=variants,
        variant=variant, groups=tuple(groups.values()), items=tuple(items), source=t.file,
        by_key=by_key)


def default_path() -> Path:
    return profiles_dir() / "mds" / "mds.toml"


@cache
def _load(path: Path, mtime_ns: int, variant: str) -> MdsDefinition:
    return parse_definition(load_toml(path), variant)


def load_definition(path: Path | None = None, variant: str = "en") -> MdsDefinition:
    """Load and validate an MDS definition (default: profiles/mds/mds.toml).

    Cached per file version, so the importer can call it for every instance.
    """
    path = (path or default_path()).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(path, "", NO_VALUE, f"cannot read: {exc.strerror}") from exc
    return _load(path, mtime, variant)
