"""Media application profiles (PS3.11) as data: profiles/media/*.toml, validated at load.

A profile says which SOP classes and transfer syntaxes a medium may hold, its nominal capacity,
the DICOMDIR keys it requires beyond the baseline of PS3.3 Annex F (per record type), whether
icon images are required, and value rules on the instances (e.g. STD-CTMR: MONOCHROME2).
A site can add or adapt profiles by dropping a TOML file into its profiles directory.

Film layouts (printing/layouts.py) and the MDS definition (store/mds_def.py) are loaded by their
own packages with the same validating reader (config.Table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from mediasvc.config import Table, load_toml
from mediasvc.errors import ConfigError, UsageError

RECORD_TYPES = (
    "PATIENT", "STUDY", "SERIES", "IMAGE", "SR DOCUMENT", "KEY OBJECT DOC", "PRESENTATION",
    "RT DOSE", "RT STRUCTURE SET", "RT PLAN", "RT TREAT RECORD", "WAVEFORM", "ENCAP DOC",
    "SPECTROSCOPY", "REGISTRATION", "FIDUCIAL", "RAW DATA", "MEASUREMENT", "SURFACE",
    "SURFACE SCAN", "TRACT", "ASSESSMENT", "RADIOTHERAPY", "ANNOTATION", "PLAN", "STEREOMETRIC",
    "HANGING PROTOCOL", "VALUE MAP", "PALETTE", "IMPLANT", "IMPLANT GROUP", "IMPLANT ASSY",
    "PRIVATE",
)
ICON_RULES = ("none", "optional", "required")
ICON_SIZES = (64, 128)


def profiles_dir() -> Path:
    """Where the capability TOML files live: $MEDIASVC_PROFILES, else the repository's."""
    env = os.environ.get("MEDIASVC_PROFILES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True)
class RecordKeys:
    """Additional DICOMDIR keys of a profile for one record type (PS3.11 annex tables).

    required:      type 1, the instance must carry a value, else it is rejected
    required_empty: type 2, written empty when no instance has it
    if_present:    type 1C "required if present in any object below this record": taken from
                   any object below the record that has it, not only the first
    optional:      type 3, copied when present
    """

    required: tuple[str, ...] = ()
    required_empty: tuple[str, ...] = ()
    if_present: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def all(self) -> tuple[str, ...]:
        return self.required + self.required_empty + self.if_present + self.optional


@dataclass(frozen=True)
class ValueRule:
    """An attribute value rule on instances (PS3.11 "Image Attribute Values" tables).

    A plain rule says "keyword must have one of values" (e.g. STD-CTMR: PhotometricInterpretation
    MONOCHROME2). Richer rules narrow where they apply and what they check:

    when:              other attributes' values that make the rule apply, e.g. STD-DEN-CD
                       BitsAllocated 8 *when* BitsStored is 8 (Table K.3-3); the rule does not
                       apply when such an attribute is absent
    transfer_syntaxes: the rule applies only to files stored (after any transcoding) in one of
                       these, e.g. STD-US: YBR_FULL_422 only uncompressed or JPEG baseline
    minimum, maximum:  numeric bounds, e.g. STD-XABC-CD Rows 1..512
    values empty:      any value will do, the attribute must just be there: with a value, or,
                       when may_be_empty, possibly empty (a type 2 specialization, Table K.3-4)
    """

    keyword: str
    values: tuple[str, ...]
    only_with_pixels: bool
    sop_classes: tuple[str, ...]  # empty: every SOP class
    when: tuple[tuple[str, tuple[str, ...]], ...] = ()
    transfer_syntaxes: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    may_be_empty: bool = False
    cite: str = ""  # where the rule comes from, shown in the rejection reason

    @property
    def plain(self) -> bool:
        """A rule that needs nothing but the value of its own attribute and a values list."""
        return (bool(self.values) and not self.when and not self.transfer_syntaxes
                and self.minimum is None and self.maximum is None)

    def applies(self, sop_class: str, has_pixels: bool, ds: Dataset | None = None,
                transfer_syntax: str | None = None) -> bool:
        """Whether the rule concerns this instance. Without the data set (ds) only plain rules
        can be judged: the others then answer False, so that a caller that only compares
        ``values`` never rejects on a condition it did not evaluate; use violation()."""
        if self.only_with_pixels and not has_pixels:
            return False
        if self.sop_classes and sop_class not in self.sop_classes:
            return False
        if ds is None:
            return self.plain
        if self.transfer_syntaxes and transfer_syntax not in self.transfer_syntaxes:
            return False
        return all(_text(ds, kw) in allowed for kw, allowed in self.when)

    def violation(self, ds: Dataset, sop_class: str, has_pixels: bool,
                  transfer_syntax: str) -> str | None:
        """None when the instance satisfies the rule (or the rule does not apply), else the
        reason, naming attribute, value and what is allowed."""
        if not self.applies(sop_class, has_pixels, ds, transfer_syntax):
            return None
        tag = tag_for_keyword(self.keyword)
        elem = ds.get(tag) if tag is not None else None
        where = self._where()
        if elem is None:
            return f"{self.keyword} is missing{where}"
        value = _text(ds, self.keyword)
        if not value:
            if self.may_be_empty and not self.values:
                return None
            return f"{self.keyword} is empty{where}"
        if self.values and value not in self.values:
            allowed = ", ".join(self.values)
            return f"{self.keyword} {value!r} is not allowed{where} (allowed: {allowed})"
        if self.minimum is not None or self.maximum is not None:
            try:
                number = float(value)
            except ValueError:
                return f"{self.keyword} {value!r} is not a number{where}"
            if self.minimum is not None and number < self.minimum:
                return f"{self.keyword} {value} is below {_num(self.minimum)}{where}"
            if self.maximum is not None and number > self.maximum:
                return f"{self.keyword} {value} is above {_num(self.maximum)}{where}"
        return None

    def _where(self) -> str:
        parts = [f"{kw} is {'/'.join(vals)}" for kw, vals in self.when]
        if self.transfer_syntaxes:
            parts.append(f"stored as {'/'.join(self.transfer_syntaxes)}")
        text = f" when {' and '.join(parts)}" if parts else ""
        return f"{text} ({self.cite})" if self.cite else text


def _text(ds: Dataset, keyword: str) -> str:
    """An attribute's value as text ("" when absent or empty); multi-values joined by '\\'."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


@dataclass(frozen=True)
class MediaProfile:
    id: str
    title: str
    reference: str
    medium: str
    capacity: int
    sop_classes: frozenset[str]  # empty with any_sop_class: every storage SOP class
    any_sop_class: bool
    transfer_syntaxes: tuple[str, ...]
    default_transfer_syntax: str  # target of a transcode to uncompressed
    compress_to: tuple[str, ...]  # transfer syntaxes --compress may produce for this profile
    icon_image: str  # none | optional | required (IMAGE records)
    icon_series: str  # none | optional | required (SERIES records)
    icon_size: int
    keys: dict[str, RecordKeys] = field(default_factory=dict)
    rules: tuple[ValueRule, ...] = ()
    source: Path | None = None

    def allows_sop_class(self, uid: str) -> bool:
        return self.any_sop_class or uid in self.sop_classes

    def record_keys(self, record_type: str) -> RecordKeys:
        return self.keys.get(record_type, RecordKeys())


def _keywords(t: Table, key: str) -> tuple[str, ...]:
    words = t.str_list(key, [])
    for word in words:
        if tag_for_keyword(word) is None:
            raise t.error(key, f"{word!r} is not a DICOM keyword of the data dictionary (PS3.6)")
    return tuple(words)


def _uid_list(t: Table, key: str) -> tuple[str, ...]:
    uids = t.str_list(key, [])
    for uid in uids:
        if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid):
            raise t.error(key, f"{uid!r} is not a UID")
    return tuple(uids)


def _rule(r: Table) -> ValueRule:
    r.check_keys({"keyword", "values", "only_with_pixels", "sop_classes", "when",
                  "transfer_syntaxes", "min", "max", "may_be_empty", "cite"})
    kw = r.str("keyword")
    if tag_for_keyword(kw) is None:
        raise r.error("keyword", "not a DICOM keyword of the data dictionary (PS3.6)")
    when: list[tuple[str, tuple[str, ...]]] = []
    cond = r.table("when", {})
    for other in cond.data:
        if tag_for_keyword(other) is None:
            raise cond.error(other, "not a DICOM keyword of the data dictionary (PS3.6)")
        allowed = cond.str_list(other)
        if not allowed:
            raise cond.error(other, "must list at least one value")
        when.append((other, tuple(allowed)))
    minimum = r.float("min", None)
    maximum = r.float("max", None)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise r.error("max", f"must be >= min ({_num(minimum)})")
    values = tuple(r.str_list("values", []))
    may_be_empty = r.bool("may_be_empty", False)
    if may_be_empty and (values or minimum is not None or maximum is not None):
        raise r.error("may_be_empty", "cannot be combined with values, min or max")
    return ValueRule(kw, values, r.bool("only_with_pixels", True), _uid_list(r, "sop_classes"),
                     when=tuple(when), transfer_syntaxes=_uid_list(r, "transfer_syntaxes"),
                     minimum=minimum, maximum=maximum, may_be_empty=may_be_empty,
                     cite=r.str("cite", ""))


def _icon_size(icons: Table) -> int:
    # PS3.3 F.7: icon images are 64 x 64 or 128 x 128 pixels (128 for STD-XABC-CD, A.3.4).
    size: int = icons.int("size", 64)
    if size not in ICON_SIZES:
        raise icons.error("size", "must be 64 or 128 (PS3.3 F.7)")
    return size


def parse_media_profile(t: Table) -> MediaProfile:
    t.check_keys({"id", "title", "reference", "medium", "capacity", "sop_classes",
                  "transfer_syntaxes", "default_transfer_syntax", "compress_to", "icons",
                  "records", "rules"})
    sop = t.data.get("sop_classes")
    any_sop = sop == "*" or sop == ["*"]
    sop_classes = frozenset() if any_sop else frozenset(_uid_list(t, "sop_classes"))
    if not any_sop and not sop_classes:
        raise t.error("sop_classes", "must list SOP Class UIDs, or be \"*\" for every class")
    tss = _uid_list(t, "transfer_syntaxes")
    if not tss:
        raise t.error("transfer_syntaxes", "must list at least one transfer syntax UID")
    default_ts = t.str("default_transfer_syntax", "1.2.840.10008.1.2.1")
    if default_ts not in tss:
        raise t.error("default_transfer_syntax", "must be one of transfer_syntaxes")
    compress = _uid_list(t, "compress_to")
    for uid in compress:
        if uid not in tss:
            raise t.error("compress_to", f"{uid} is not one of transfer_syntaxes")
    icons = t.table("icons")
    icons.check_keys({"image", "series", "size"})
    records = t.table("records")
    keys: dict[str, RecordKeys] = {}
    for rtype in records.data:
        if rtype not in RECORD_TYPES:
            raise records.error(rtype, f"unknown record type (known: {', '.join(RECORD_TYPES)})")
        rt = records.table(rtype)
        rt.check_keys({"required", "required_empty", "if_present", "optional"})
        lists = {name: _keywords(rt, name)
                 for name in ("required", "required_empty", "if_present", "optional")}
        seen: dict[str, str] = {}
        for name, words in lists.items():
            for word in words:
                if word in seen:
                    raise rt.error(name, f"{word} is listed twice (also in {seen[word]})")
                seen[word] = name
        keys[rtype] = RecordKeys(**lists)
    rules = [_rule(r) for r in t.tables("rules", [])]
    return MediaProfile(
        id=t.str("id", pattern=r"[A-Z0-9][A-Z0-9-]*"),
        title=t.str("title"),
        reference=t.str("reference", ""),
        medium=t.str("medium"),
        capacity=t.size("capacity"),
        sop_classes=sop_classes,
        any_sop_class=any_sop,
        transfer_syntaxes=tss,
        default_transfer_syntax=default_ts,
        compress_to=compress,
        icon_image=icons.str("image", "optional", choices=ICON_RULES),
        icon_series=icons.str("series", "none", choices=ICON_RULES),
        icon_size=_icon_size(icons),
        keys=keys,
        rules=tuple(rules),
        source=t.file,
    )


@cache
def _load_all(directory: Path) -> dict[str, MediaProfile]:
    profiles: dict[str, MediaProfile] = {}
    for path in sorted((directory / "media").glob("*.toml")):
        profile = parse_media_profile(load_toml(path))
        if profile.id != path.stem:
            raise ConfigError(path, "id", profile.id, f"must equal the file name ({path.stem})")
        profiles[profile.id] = profile
    return profiles


def media_profiles(directory: Path | None = None) -> dict[str, MediaProfile]:
    """Every media profile, validated; a bad file raises ConfigError naming file/key/value."""
    return _load_all((directory or profiles_dir()).resolve())


def media_profile(profile_id: str, directory: Path | None = None) -> MediaProfile:
    profiles = media_profiles(directory)
    try:
        return profiles[profile_id]
    except KeyError:
        raise UsageError(
            f"unknown media profile {profile_id!r}; known: {', '.join(sorted(profiles))}"
        ) from None
