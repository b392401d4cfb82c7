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
    """An attribute value rule on instances, e.g. PhotometricInterpretation in [MONOCHROME2]."""

    keyword: str
    values: tuple[str, ...]
    only_with_pixels: bool
    sop_classes: tuple[str, ...]  # empty: every SOP class

    def applies(self, sop_class: str, has_pixels: bool) -> bool:
        if self.only_with_pixels and not has_pixels:
            return False
        return not self.sop_classes or sop_class in self.sop_classes


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
    for rtype in records.keys():
        if rtype not in RECORD_TYPES:
            raise records.error(rtype, f"unknown record type (known: {', '.join(RECORD_TYPES)})")
        rt = records.table(rtype)
        rt.check_keys({"required", "required_empty", "if_present", "optional"})
        keys[rtype] = RecordKeys(
            required=_keywords(rt, "required"),
            required_empty=_keywords(rt, "required_empty"),
            if_present=_keywords(rt, "if_present"),
            optional=_keywords(rt, "optional"),
        )
    rules = []
    for r in t.tables("rules", []):
        r.check_keys({"keyword", "values", "only_with_pixels", "sop_classes"})
        kw = r.str("keyword")
        if tag_for_keyword(kw) is None:
            raise r.error("keyword", "not a DICOM keyword of the data dictionary (PS3.6)")
        rules.append(ValueRule(kw, tuple(r.str_list("values")), r.bool("only_with_pixels", True),
                               _uid_list(r, "sop_classes")))
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
        icon_size=icons.int("size", 64, min=16, max=128),
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
