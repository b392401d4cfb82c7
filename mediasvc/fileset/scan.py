"""Read the headers of source files and decide, per file, what a profile makes of it.

One function per file (inspect_file) so that a process pool can run it: it reads the header
with pydicom (large values deferred, never the pixel data unless an icon is needed), checks
the profile (SOP class, transfer syntax, value rules, required keys) and returns either a
SourceInstance, with the directory keys the writer needs, or a Rejection with a reason a
user understands.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import config, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import validate_value

from mediasvc.fileset.dicomdir import unvalidated
from mediasvc.fileset.header import Header, read_bare, read_header
from mediasvc.fileset.leaf import LeafRecord, encode_head, encode_keys, encode_refs
from mediasvc.fileset.records import (
    BASELINE_KEYS,
    INVENTABLE,
    MEDIA_STORAGE_DIRECTORY,
    SINGLE_LEVEL_RECORD_TYPES,
    concept_modifiers,
    record_type_for,
)
from mediasvc.profiles import MediaProfile

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Uncompressed encodings that only need re-encoding, not pixel decoding (PS3.5 10.1, A.2-A.5).
NO_META = "(no file meta)"  # stands for the transfer syntax of a bare data set
REENCODABLE = {NO_META, "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
               EXPLICIT_LE}
_NEEDS_CHECK = ("DA", "TM")
KeyElement = DataElement | RawDataElement


@dataclass(frozen=True)
class Rejection:
    path: Path
    reason: str


@dataclass
class SourceInstance:
    """One accepted source file, with everything the writer needs to place it."""

    path: Path
    size: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    target_transfer_syntax: str | None  # None: copied byte for byte
    patient_id: str
    study_uid: str
    series_uid: str
    modality: str
    record_type: str
    # Directory keys per level ("PATIENT", "STUDY", "SERIES", "LEAF"): DataElements as read.
    keys: dict[str, dict[str, KeyElement]] = field(default_factory=dict)
    charset: tuple[str, ...] = ()  # Specific Character Set of the instance
    icon: Dataset | None = None
    notes: list[str] = field(default_factory=list)
    # The leaf record, encoded by the scan (keys["LEAF"] is then dropped), and the Instance
    # Number it sorts by.
    leaf: LeafRecord | None = None
    instance_number: int = 0
    packed: bytes = b""  # the keys in transit from a scan worker (pack_keys)

    @property
    def single_level(self) -> bool:
        return self.record_type in SINGLE_LEVEL_RECORD_TYPES.values()


def iter_source_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files of the given paths, folders walked recursively in a stable (sorted) order.
    DICOMDIR files of existing file-sets are skipped: they describe, they are not content."""
    for path in paths:
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.upper() != "DICOMDIR" and not name.startswith("."):
                        yield Path(dirpath) / name
        else:
            yield path


_STRING_VRS = ("UI", "CS", "LO", "SH", "IS", "DS")


def _text(ds: Dataset, keyword: str) -> str:
    """A string attribute as text. Read from the raw bytes where it was not decoded yet:
    decoding through pydicom costs more than the rest of the look-up (UIDs, codes and IDs
    are ASCII or Latin-1 in practice; the value serves for grouping and checks only)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return ""
    elem = ds._dict.get(Tag(tag))
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement) and dictionary_VR(tag) in _STRING_VRS:
        raw = elem.value
        return "" if raw is None else raw.decode("latin-1").strip(" \x00")
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _element(ds: Dataset, keyword: str, keep_raw: bool = False) -> KeyElement | None:
    """The element as a DataElement, or, with keep_raw, as read (a RawDataElement): copying
    the bytes as read is several times faster than decoding and re-encoding every key of
    every file, and exact. Only Explicit VR Little Endian raw elements are kept so, since
    they are written into a DICOMDIR of that encoding as they are."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in ds._dict:
        return None
    elem = ds.get_item(tag) if keep_raw else ds[tag]
    if isinstance(elem, RawDataElement) and elem.VR in _NEEDS_CHECK and elem.value and (
            b"." in elem.value if elem.VR == "DA" else b":" in elem.value):
        elem = ds[tag]  # an ACR-NEMA date or time: decoded, then normalised
    return elem


_CHECKED_VRS = ("CS", "DA", "TM", "UI", "IS", "DS", "AS")


def _valid(elem: KeyElement) -> bool:
    """Whether a string value fits its VR's character repertoire and length (PS3.5 6.2),
    checked with pydicom's own validator."""
    vr = elem.VR
    if vr not in _CHECKED_VRS:
        return True
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1").rstrip(" \x00")
    if value is None:
        return True
    values: list[Any]
    if isinstance(value, str):
        values = value.split("\\")
    elif isinstance(value, (int, float)):  # one decoded number (DSfloat, IS)
        values = [value]
    else:  # MultiValue
        values = list(value)
    try:
        for v in values:
            validate_value(vr, str(v).strip() if vr != "UI" else str(v), config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


_BINARY_VRS = frozenset({"AT", "FD", "FL", "OB", "OD", "OF", "OL", "OV", "OW", "SL", "SS", "SV",
                         "UL", "UN", "US", "UV", "US or SS", "OB or OW", "US or OW",
                         "US or SS or OW"})


def _vr_of(elem: RawDataElement) -> str:
    """The VR of a raw element: its own in explicit VR, else the dictionary's."""
    if elem.VR:
        return str(elem.VR)
    try:
        return str(dictionary_VR(elem.tag))
    except KeyError:
        return "UN"


def has_value(elem: KeyElement | None) -> bool:
    """Whether a key element carries a value (raw or decoded)."""
    if elem is None:
        return False
    if isinstance(elem, RawDataElement):
        if elem.length == 0 or elem.value is None:
            return elem.length != 0
        # Padding (space, NUL: PS3.5 6.2) is stripped from character strings only: a binary
        # value such as Rows = 32 is b"\x20\x00" and is not empty.
        if _vr_of(elem) in _BINARY_VRS:
            return True
        return bool(elem.value.strip(b" \x00"))
    return elem.VM > 0 and elem.value not in ("", None, b"")


def _truncation(header: Header, path: Path, size: int) -> str | None:
    """Deferred (large) values must end inside the file: a truncated copy is the classic
    damage of an interrupted transfer, and pydicom does not notice it with deferred reads.
    (A header read from its first block ends inside the file by construction.)"""
    if header.deferred is not None:
        for elem in header.deferred._dict.values():
            tell = getattr(elem, "value_tell", None)
            length = getattr(elem, "length", 0)
            if (getattr(elem, "value", 1) is None and tell is not None
                    and length != 0xFFFFFFFF and tell + length > size):
                name = keyword_for_tag(elem.tag) or str(elem.tag)
                return f"truncated: {name} needs {tell + length} bytes, the file has {size}"
    pixels = header.pixels
    if pixels is not None and pixels.tag == 0x7FE00010 and pixels.length == 0xFFFFFFFF:
        with path.open("rb") as fh:
            fh.seek(max(0, size - 256))
            tail = fh.read()
        if b"\xfe\xff\xdd\xe0" not in tail:
            return "truncated: the encapsulated pixel data has no sequence delimiter"
    return None


def _as_stored(ds: Dataset, ts: str, target: str | None) -> Dataset:
    """The attributes as the file will be stored: decoding a compressed colour image gives
    RGB (pydicom converts YBR_FULL_422, YBR_ICT and YBR_RCT on decompression), so value rules
    must judge RGB, not the source's YBR (PS3.5 8.2)."""
    if (target is None or ts == NO_META or not UID(ts).is_compressed
            or UID(target).is_compressed):
        return ds
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if not photometric.startswith("YBR"):
        return ds
    judged = ds.copy()
    judged.PhotometricInterpretation = "RGB"
    return judged


def target_syntax(ts: str, profile: MediaProfile, compress_to: str | None) -> tuple[str | None,
                                                                                    str | None]:
    """(target transfer syntax or None to keep, rejection reason or None)."""
    if compress_to and ts in REENCODABLE:
        return compress_to, None
    if ts in profile.transfer_syntaxes:
        return None, None
    if profile.default_transfer_syntax in profile.transfer_syntaxes:
        # Re-encoding (implicit VR, big endian, deflate) or decompression to the profile's
        # uncompressed syntax (PS3.11: the FSC may convert to a syntax the profile allows).
        return profile.default_transfer_syntax, None
    return None, (f"transfer syntax {ts_name(ts)} is not allowed by {profile.id} "
                  "and cannot be converted to one it allows")


def ts_name(uid: str) -> str:
    if uid == NO_META:
        return "a data set without file meta"
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def inspect_file(path: Path, profile: MediaProfile, compress_to: str | None = None
                 ) -> SourceInstance | Rejection:
    """Read one source file's header and judge it against the profile."""
    try:
        size = path.stat().st_size
        try:
            header = read_header(path, size, needed_tags(profile))
        except InvalidDicomError:
            # No preamble and file meta (PS3.10 7.1): a bare data set as some PACS export it.
            # Accepted only when it parses into a composite instance; it is then written
            # with a proper file meta (a transcode), since media files must be Part 10.
            header = read_bare(path)
            if not (_text(header.ds, "SOPClassUID") and _text(header.ds, "SOPInstanceUID")):
                return Rejection(path, "not a DICOM file (no DICM preamble, no SOP UIDs)")
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError,
            NotImplementedError) as exc:
        return Rejection(path, f"not readable as DICOM: {exc}")
    ds, meta = header.ds, header.meta
    sop_class = _text(ds, "SOPClassUID") or str(meta.get("MediaStorageSOPClassUID", ""))
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return Rejection(path, "a DICOMDIR, not an instance")
    for kw, label in (("SOPClassUID", "SOP Class UID (0008,0016)"),
                      ("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
                      ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
                      ("SeriesInstanceUID", "Series Instance UID (0020,000E)"),
                      ("Modality", "Modality (0008,0060)")):
        if not _text(ds, kw):
            return Rejection(path, f"missing type 1 attribute {label}")
    ts = str(meta.get("TransferSyntaxUID", "")) or NO_META
    try:
        trunc = _truncation(header, path, size)
    except OSError as exc:
        return Rejection(path, f"not readable: {exc.strerror}")
    if trunc:
        return Rejection(path, trunc)
    if not profile.allows_sop_class(sop_class):
        return Rejection(path, f"SOP class {ts_name(sop_class)} is not allowed by {profile.id}")
    has_pixels = header.pixels is not None
    target, reason = target_syntax(ts, profile, compress_to if has_pixels else None)
    if reason:
        return Rejection(path, reason)
    judged = _as_stored(ds, ts, target)
    for rule in profile.rules:
        problem = rule.violation(judged, sop_class, has_pixels, target or ts)
        if problem:
            return Rejection(path, f"{problem} ({profile.id})")
    rtype = SINGLE_LEVEL_RECORD_TYPES.get(sop_class) or record_type_for(sop_class, has_pixels)
    inst = SourceInstance(
        path=path, size=size, sop_class_uid=sop_class,
        sop_instance_uid=_text(ds, "SOPInstanceUID"), transfer_syntax_uid=ts,
        target_transfer_syntax=target, patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"), series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"), record_type=rtype,
    )
    problem = _collect_keys(ds, inst, profile)
    if problem:
        return Rejection(path, problem)
    if has_pixels and _wants_icon(profile, rtype):
        from mediasvc.fileset.icons import make_icon  # pixel decoding only when needed

        try:
            inst.icon = make_icon(dcmread(path, force=True), profile.icon_size)
        except Exception as exc:  # any decoder failure: the icon is what is lost, say so
            if profile.icon_image == "required":
                return Rejection(path, f"cannot render the icon image {profile.id} requires: "
                                       f"{exc}")
    inst.instance_number = _number(inst.keys["LEAF"].get("InstanceNumber"))
    inst.leaf = leaf_record(inst, profile)
    del inst.keys["LEAF"]  # in the encoded leaf now
    return inst


def _number(elem: KeyElement | None) -> int:
    """Instance Number as an int for sorting (0 when absent or not a number)."""
    try:
        if elem is None:
            return 0
        value = elem.value
        if isinstance(value, bytes):
            value = value.decode("latin-1").strip(" \x00")
        return int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def leaf_record(inst: SourceInstance, profile: MediaProfile) -> LeafRecord:
    """The instance's leaf record (PS3.3 F.5), encoded but for its Referenced File ID."""
    keys = inst.keys["LEAF"]
    rec: dict[int, KeyElement] = {}
    for elem in keys.values():
        if isinstance(elem, RawDataElement) and elem.VR == "UN":
            # pydicom would give it its dictionary VR when decoding: the record says it too.
            elem = convert_raw_data_element(elem, encoding=list(inst.charset) or None)
        rec[elem.tag] = elem
    spec = key_spec(profile, inst.record_type)
    for keyword, ktype in spec:
        if ktype == "2" and keyword not in keys:
            tag = tag_for_keyword(keyword)
            assert tag is not None
            vr = dictionary_VR(tag)
            rec[tag] = DataElement(tag, vr, DicomSequence() if vr == "SQ" else None)
    invent = ("InstanceNumber", "1") in spec and not has_value(keys.get("InstanceNumber"))
    if invent:
        rec.pop(0x00200013, None)
    if inst.icon is not None and profile.icon_image != "none":
        rec[0x00880200] = DataElement(0x00880200, "SQ", DicomSequence([inst.icon]))
    drop_unneeded_charset(rec)
    with unvalidated():
        encoded, number_at = encode_keys(rec, _record_charset(rec), invent_number=invent)
        head = encode_head(inst.record_type,
                           inst.sop_class_uid if inst.record_type == "PRIVATE" else None)
        refs = encode_refs(inst.sop_class_uid, inst.sop_instance_uid,
                           inst.target_transfer_syntax or inst.transfer_syntax_uid)
    return LeafRecord(head, refs, encoded, number_at)


def _record_charset(rec: dict[int, KeyElement]) -> tuple[str, ...]:
    """The record's Specific Character Set values (the encoding of its text keys)."""
    elem = rec.get(0x00080005)
    if elem is None:
        return ()
    value = elem.value
    if isinstance(value, bytes):
        return tuple(v.strip() for v in value.decode("ascii", "replace").split("\\"))
    if value is None:
        return ()
    return tuple([value] if isinstance(value, str) else list(value))


_CHARSET_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "UC", "SQ")


def drop_unneeded_charset(rec: dict[int, KeyElement] | Dataset) -> None:
    """Specific Character Set (0008,0005) is type 1C on records: required only when a key
    of a character-set-dependent VR is there (PS3.3 F.3.2.2); dcmmkdir reads it so too."""
    elems = rec.values() if isinstance(rec, dict) else list(rec)
    if 0x00080005 in rec and not any(
            elem.VR in _CHARSET_VRS for elem in elems if elem.tag != 0x00080005):
        del rec[0x00080005]


def _wants_icon(profile: MediaProfile, rtype: str) -> bool:
    return rtype == "IMAGE" and (profile.icon_image == "required"
                                 or profile.icon_series == "required")


_CHARSET_TYPO = re.compile(r"^ISO[-_ ]IR[-_ ]?(\d+)$")


def _fixed_charset(elem: KeyElement) -> KeyElement:
    """Specific Character Set with the common typos of defined terms corrected ('ISO-IR 100'
    -> 'ISO_IR 100', PS3.3 C.12.1.1.2): pydicom decodes them so, and a DICOMDIR must carry
    valid CS values for validators (dciodvfy) to accept it."""
    if isinstance(elem, RawDataElement):
        return elem
    values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
    fixed = []
    for v in values:
        m = _CHARSET_TYPO.match(str(v).strip())
        fixed.append(f"ISO_IR {m.group(1)}" if m and not str(v).startswith("ISO 2022") else v)
    if fixed == values:
        return elem
    return DataElement(elem.tag, "CS", fixed if len(fixed) > 1 else fixed[0])


def _normalised(elem: KeyElement | None) -> KeyElement | None:
    """DA and TM in the ACR-NEMA forms that old files still carry ("1994.06.13",
    "15:32:26") rewritten in the DICOM form (PS3.5 6.2, Table 6.2-1 notes) for the record:
    validators reject the old forms in a DICOMDIR. The instance itself is not changed."""
    if (elem is None or isinstance(elem, RawDataElement) or elem.VR not in ("DA", "TM")
            or not isinstance(elem.value, str)):
        return elem
    value = elem.value
    fixed = value.replace(".", "") if elem.VR == "DA" else value.replace(":", "")
    if fixed == value:
        return elem
    return DataElement(elem.tag, elem.VR, fixed)


_SPECS: dict[tuple[int, str], tuple[MediaProfile, list[tuple[str, str]]]] = {}


# Enhanced multi-frame images keep these in functional group macros (PS3.3 C.7.6.16): Plane
# Position, Plane Orientation, Pixel Measures, Frame VOI LUT, the modality's Frame Type macro.
# They are attributes of the Image IE, which PS3.3 F.5 (Image Keys: "any other attribute of
# the Image IE modules", type 3) lets an IMAGE record hold; the DVD/BD/USB profiles (PS3.11
# Table H.3-2) want some of them when present, and dcmmkdir looks in the groups too.
# keyword of the record key -> (functional group sequences that may hold it, keyword there).
FUNCTIONAL_GROUP_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "ImagePositionPatient": (("PlanePositionSequence",), "ImagePositionPatient"),
    "ImageOrientationPatient": (("PlaneOrientationSequence",), "ImageOrientationPatient"),
    "PixelSpacing": (("PixelMeasuresSequence",), "PixelSpacing"),
    "SliceThickness": (("PixelMeasuresSequence",), "SliceThickness"),
    "WindowCenter": (("FrameVOILUTSequence",), "WindowCenter"),
    "WindowWidth": (("FrameVOILUTSequence",), "WindowWidth"),
    # Frame Type (PS3.3 C.8.13.5.1 and its siblings in the other enhanced IODs) is the
    # per-frame Image Type.
    "ImageType": (("CTImageFrameTypeSequence", "MRImageFrameTypeSequence",
                   "MRSpectroscopyFrameTypeSequence", "PETFrameTypeSequence",
                   "XRay3DFrameTypeSequence", "PhotoacousticImageFrameTypeSequence",
                   "WholeSlideMicroscopyImageFrameTypeSequence",
                   "ParametricMapFrameTypeSequence", "ConfocalMicroscopyImageFrameTypeSequence",
                   "IntravascularOCTFrameTypeSequence"),
                  "FrameType"),
}


def _group_value(item: Dataset, macros: tuple[str, ...], keyword: str) -> DataElement | None:
    """The value of ``keyword`` in the first of ``macros`` that one functional groups item
    (shared, or one frame's) holds."""
    for macro in macros:
        sequence = item.get(macro)
        if sequence and keyword in sequence[0]:
            elem = sequence[0][keyword]
            return elem if has_value(elem) else None
    return None


def _comparable(elem: DataElement) -> object:
    value = elem.value
    return tuple(value) if not isinstance(value, (str, bytes)) and hasattr(
        value, "__iter__") else value


def _from_functional_groups(ds: Dataset, keyword: str) -> DataElement | None:
    """The value of an IMAGE record key from the functional groups (PS3.3 C.7.6.16): from
    the Shared Functional Groups, which hold for every frame; else from the Per-Frame
    Functional Groups when every frame has the same value. A value that differs between
    frames (each frame's position) describes no single image, and a record describes the
    whole instance: it is then left out (dcmmkdir takes only the shared one).
    Works on a header read with stop_before_pixels: both sequences come before (7FE0,0010)."""
    macros, inner = FUNCTIONAL_GROUP_KEYS[keyword]
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        shared = ds.get("SharedFunctionalGroupsSequence")
        found = _group_value(shared[0], macros, inner) if shared else None
        if found is None:
            frames = ds.get("PerFrameFunctionalGroupsSequence")
            if not frames:
                return None
            values = [_group_value(item, macros, inner) for item in frames]
            first = values[0]
            if first is None or any(v is None or _comparable(v) != _comparable(first)
                                    for v in values[1:]):
                return None
            found = first
        # Under the record's own tag and VR (Frame Type CS -> Image Type CS).
        return DataElement(tag, dictionary_VR(tag), found.value)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, OSError):
        return None


_NEEDED: dict[int, tuple[MediaProfile, frozenset[int]]] = {}
# Read for every file whatever the profile: identity, grouping, judging, record content.
_ALWAYS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
           "PatientID", "PatientName", "SpecificCharacterSet", "PhotometricInterpretation",
           "ContentSequence", "SharedFunctionalGroupsSequence",
           "PerFrameFunctionalGroupsSequence", *FUNCTIONAL_GROUP_KEYS)


def needed_tags(profile: MediaProfile) -> frozenset[int]:
    """Every attribute the scan looks at for this profile (directory keys of every record
    type, value rules and their conditions): the header parse keeps only these (pydicom's
    specific_tags), which spares building an element for each of the others."""
    cached = _NEEDED.get(id(profile))
    if cached is None:
        keywords = set(_ALWAYS)
        for rtype in {*BASELINE_KEYS, *profile.keys}:
            keywords.update(k for k, _ in key_spec(profile, rtype))
        for rule in profile.rules:
            keywords.add(rule.keyword)
            keywords.update(k for k, _ in rule.when)
        tags = frozenset(t for t in (tag_for_keyword(k) for k in keywords) if t is not None)
        cached = _NEEDED[id(profile)] = (profile, tags)
    return cached[1]


def key_spec(profile: MediaProfile, record_type: str) -> list[tuple[str, str]]:
    """(keyword, type) of every directory key of a record type: baseline + profile.
    Cached per profile object (kept alive by the cache, so its id is not reused)."""
    cached = _SPECS.get((id(profile), record_type))
    if cached is None:
        cached = _SPECS[(id(profile), record_type)] = (profile,
                                                        _key_spec(profile, record_type))
    return cached[1]


def _key_spec(profile: MediaProfile, record_type: str) -> list[tuple[str, str]]:
    wanted: list[tuple[str, str]] = list(BASELINE_KEYS.get(record_type, ()))
    extra = profile.record_keys(record_type)
    have = {k for k, _ in wanted}
    for keys, ktype in ((extra.required, "1"), (extra.required_empty, "2"),
                        (extra.if_present, "1C"), (extra.optional, "3")):
        wanted += [(k, ktype) for k in keys if k not in have]
    return wanted


def _collect_keys(ds: Dataset, inst: SourceInstance, profile: MediaProfile) -> str | None:
    """Copy the directory keys of every level; reject when a leaf type 1 key is missing."""
    charset = _element(ds, "SpecificCharacterSet")
    if isinstance(charset, DataElement) and has_value(charset):
        value = charset.value
        inst.charset = tuple([value] if isinstance(value, str) else list(value))
    raw = inst.transfer_syntax_uid == EXPLICIT_LE
    levels: Sequence[tuple[str, str]] = [("PATIENT", "PATIENT"), ("STUDY", "STUDY"),
                                         ("SERIES", "SERIES"), ("LEAF", inst.record_type)]
    for level, rtype in levels:
        wanted = key_spec(profile, rtype)
        found: dict[str, KeyElement] = {}
        if charset is not None and has_value(charset):
            found["SpecificCharacterSet"] = _fixed_charset(charset)
        for keyword, ktype in wanted:
            elem = _normalised(_element(ds, keyword, keep_raw=raw))
            if elem is None and level == "LEAF" and keyword in FUNCTIONAL_GROUP_KEYS:
                elem = _from_functional_groups(ds, keyword)
            if ktype != "1" and elem is not None and has_value(elem) and not _valid(elem):
                # A value the file got wrong (Patient's Sex "?") would make the DICOMDIR
                # fail validation: an optional key is left out, a type 2 key written empty.
                # (Type 1 keys are kept: without them the record could not exist.)
                inst.notes.append(f"{keyword} has a value invalid for its VR; left out of "
                                  "the DICOMDIR")
                tag = tag_for_keyword(keyword)
                assert tag is not None
                elem = DataElement(tag, dictionary_VR(tag), None) if ktype == "2" else None
            if has_value(elem):
                assert elem is not None
                found[keyword] = elem
            elif ktype == "2" and elem is not None:
                found[keyword] = elem
            elif ktype == "1" and level == "LEAF" and keyword not in INVENTABLE:
                tag = tag_for_keyword(keyword) or 0
                return (f"missing type 1 attribute {keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
                        f" required for the {rtype} record")
        if level == "LEAF" and rtype in ("SR DOCUMENT", "KEY OBJECT DOC"):
            mods = concept_modifiers(ds)
            if mods is not None:
                found["ContentSequence"] = DataElement(0x0040A730, "SQ", mods)
        inst.keys[level] = found
    return None


_PACKED: dict[object, bytes] = {}  # per worker process


def pack_keys(inst: SourceInstance) -> None:
    """Replace the instance's PATIENT/STUDY/SERIES keys (and charset) by one pickled blob,
    for the trip from a scan worker to the parent: the instances of a series carry the same
    keys, and KeyTable turns equal blobs into one shared object (memory and unpickling
    per distinct series, not per instance). File positions are zeroed so that equal values
    give equal bytes; a worker pickles each distinct set of keys once (raw elements are
    compared by their fields; decoded ones are pickled each time)."""
    try:
        key: object = (inst.charset, tuple(
            (level, tuple((kw, e.tag, e.VR, e.value) for kw, e in keys.items()
                          if _raw_or_fail(e)))
            for level, keys in inst.keys.items()))
        blob = _PACKED.get(key)
    except TypeError:
        key, blob = None, None
    if blob is None:
        levels: dict[str, dict[str, KeyElement]] = {}
        for level, keys in inst.keys.items():
            norm: dict[str, KeyElement] = {}
            for keyword, elem in keys.items():
                if isinstance(elem, RawDataElement):
                    elem = elem._replace(value_tell=0)
                else:
                    elem.file_tell = 0
                norm[keyword] = elem
            levels[level] = norm
        blob = pickle.dumps((inst.charset, levels), protocol=pickle.HIGHEST_PROTOCOL)
        if key is not None:
            if len(_PACKED) > 1024:
                _PACKED.clear()
            _PACKED[key] = blob
    inst.packed = blob
    inst.keys = {}
    inst.charset = ()


def _raw_or_fail(elem: KeyElement) -> bool:
    if not isinstance(elem, RawDataElement):
        raise TypeError("a decoded element: no cheap key")
    return True


class KeyTable:
    """The parent's side of pack_keys: one keys object per distinct blob."""

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[tuple[str, ...], dict[str, dict[str, KeyElement]]]] = {}

    def unpack(self, inst: SourceInstance) -> None:
        if not inst.packed:
            return
        entry = self._seen.get(inst.packed)
        if entry is None:
            entry = self._seen[inst.packed] = pickle.loads(inst.packed)
        inst.charset, inst.keys = entry
        inst.packed = b""
