"""File-set Reader (FSR, PS3.10 section 7.1): the hierarchy of a medium, read tolerantly.

``read_fileset(media)`` reads the DICOMDIR at the root of a medium (a folder, or the DICOMDIR
file itself) and returns its directory records as a tree (PS3.3 Annex F). It reads what can be
read and says how (``FileSetListing.method``):

- "dicomdir": the hierarchy followed through the record offsets (PS3.3 F.3.2.1:
  Offset of the Next Directory Record (0004,1400), Offset of Referenced Lower-Level Directory
  Entity (0004,1420), root first/last offsets (0004,1200)/(0004,1202)).
- "dicomdir (hierarchy rebuilt from the record sequence)": offsets missing, dangling, looping or
  leaving records out; the tree is rebuilt from the order and level of the records in the
  Directory Record Sequence (writers emit it depth-first), tolerating missing levels (e.g. no
  PATIENT record).
- "scan (no DICOMDIR)" / "scan (DICOMDIR unusable: <why>)": the media is walked and every DICOM
  Part 10 file becomes a leaf under PATIENT/STUDY/SERIES records built from its header.

Byte order and VR encoding (big endian, implicit VR), undefined-length items and PRIVATE records
are pydicom's business; inactive records (Record In-use Flag 0000H, PS3.10 8.5) are skipped with
their subtrees. Philips-style multi-file directories (PATIENT/STUDY/SERIES records whose
Referenced File ID names a further directory file, "DIRFILE") are followed.

Safety: a Referenced File ID that is absolute, has ``..`` or resolves through a symlink outside the
media root is refused for its record (``DirRecord.problem``) and the target is never opened
(pydicom CVE-2026-32711, Weasis#911); neither is anything that is not a regular file (a FIFO
would block a reader forever).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from mediasvc.errors import FileSetError, UnsafePathError
from mediasvc.fileset.fileid import resolve_file_id, split_file_id

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

METHOD_DICOMDIR = "dicomdir"
METHOD_REBUILT = "dicomdir (hierarchy rebuilt from the record sequence)"
METHOD_SCAN = "scan (no DICOMDIR)"

# Directory record tags (PS3.3 F.3.2.2).
_ROOT_FIRST = Tag(0x0004, 0x1200)
_ROOT_LAST = Tag(0x0004, 0x1202)
_CONSISTENCY = Tag(0x0004, 0x1212)
_RECORD_SEQ = Tag(0x0004, 0x1220)
_NEXT = Tag(0x0004, 0x1400)
_IN_USE = Tag(0x0004, 0x1410)
_LOWER = Tag(0x0004, 0x1420)
_TYPE = Tag(0x0004, 0x1430)
_FILE_ID = Tag(0x0004, 0x1500)

# Levels for rebuilding the tree from the record order (PS3.3 F.4, Table F.4-1): which record
# types may sit under which. Types not named here are leaves under a SERIES (level 4); PRIVATE
# records may appear at any level (see _link_by_levels).
_LEVELS: dict[str, int] = {
    "PATIENT": 1, "HANGING PROTOCOL": 1, "PALETTE": 1, "IMPLANT": 1, "IMPLANT GROUP": 1,
    "IMPLANT ASSY": 1, "TOPIC": 1,
    "STUDY": 2, "HL7 STRUC DOC": 2,
    "SERIES": 3, "VISIT": 3, "RESULTS": 3, "STUDY COMPONENT": 3, "FILM SESSION": 3,
}
_LEAF_LEVEL = 4
# Record types that hold other records; in a Philips multi-file directory they reference the
# directory file holding their children instead of an instance.
_CONTAINER_TYPES = ("PATIENT", "STUDY", "SERIES")
_MAX_DIRECTORY_FILES = 10_000  # a guard against a directory file that references itself


@dataclass
class DirRecord:
    """One directory record of a DICOMDIR (or one entity built by scanning the media)."""

    record_type: str
    offset: int | None
    in_use: bool
    dataset: Dataset
    file_id: tuple[str, ...] | None
    path: Path | None
    problem: str | None
    children: list[DirRecord] = field(default_factory=list)
    # True when the Referenced File ID names a further directory file (Philips DIRFILE), whose
    # records were read as this record's children; such a record is not a leaf.
    directory_file: bool = False

    def walk(self, depth: int = 0) -> Iterator[tuple[int, DirRecord]]:
        """This record and every record below it, depth-first, with their depth."""
        stack: list[tuple[int, DirRecord]] = [(depth, self)]
        while stack:
            d, rec = stack.pop()
            yield d, rec
            stack.extend((d + 1, c) for c in reversed(rec.children))

    def get(self, keyword: str) -> str:
        """A key of this record as text ('' when absent or empty)."""
        try:
            with quiet_pydicom():  # values are decoded on first access, and may be odd
                value = self.dataset.get(keyword)
        except Exception:  # an undecodable value in a third-party DICOMDIR
            return ""
        if value is None:
            return ""
        if isinstance(value, (list, tuple, MultiValue)):
            return "\\".join(str(v) for v in value)
        return str(value).strip()


@dataclass
class FileSetListing:
    """What a Reader found on a medium."""

    root: Path
    dicomdir: Path | None
    fileset_id: str
    method: str
    problems: list[str]
    roots: list[DirRecord]
    directory_files: list[Path] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[int, DirRecord]]:
        for rec in self.roots:
            yield from rec.walk()

    def records(self) -> Iterator[DirRecord]:
        for _, rec in self.walk():
            yield rec

    def leaves(self) -> Iterator[DirRecord]:
        """Every in-use record that references a file (an instance), depth-first."""
        for rec in self.records():
            if rec.in_use and rec.file_id is not None and not rec.directory_file:
                yield rec

    def leaves_with_ancestors(self) -> Iterator[tuple[DirRecord, tuple[DirRecord, ...]]]:
        """Like leaves(), with the records above each leaf (root first): the PATIENT, STUDY
        and SERIES it belongs to, or fewer where the DICOMDIR lacks a level."""
        stack: list[tuple[DirRecord, tuple[DirRecord, ...]]] = [
            (r, ()) for r in reversed(self.roots)]
        while stack:
            rec, above = stack.pop()
            if rec.in_use and rec.file_id is not None and not rec.directory_file:
                yield rec, above
            stack.extend((c, (*above, rec)) for c in reversed(rec.children))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in self.records():
            out[rec.record_type] = out.get(rec.record_type, 0) + 1
        return out


def read_fileset(media: Path, *, scan_fallback: bool = True,
                 include_inactive: bool = False) -> FileSetListing:
    """Read the file-set on ``media``: a folder with a DICOMDIR at its root, or a DICOMDIR file.

    Without a usable DICOMDIR the media is scanned (when ``scan_fallback``), else FileSetError.
    ``include_inactive`` keeps records whose Record In-use Flag is 0000H (for an Updater).
    Raises FileSetError when ``media`` does not exist or is a file that is not a DICOMDIR.
    """
    with quiet_pydicom():
        return _read_fileset(Path(media), scan_fallback, include_inactive)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved_level = logging.NOTSET
_quiet_filter: Any = None


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's per-value warnings while reading third-party media: a disc from
    elsewhere has plenty of odd values, which pydicom logs at WARNING with the value itself
    (patient names included: no patient data above DEBUG), and the reader reports what matters.

    Safe across threads (an importer and a verify may run at once): the first reader in adds
    the filter and lowers the logger, the last one out restores both (catch_warnings would
    restore the global filter list out of order).
    """
    global _quiet_depth, _quiet_saved_level, _quiet_filter
    logger = logging.getLogger("pydicom")
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved_level = logger.level
            logger.setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
            _quiet_filter = warnings.filters[0]
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_quiet_saved_level)
                with contextlib.suppress(ValueError):
                    cast(list[Any], warnings.filters).remove(_quiet_filter)
                # as catch_warnings does on exit: invalidate the caches of filter decisions
                getattr(warnings, "_filters_mutated", lambda: None)()


def _read_fileset(media: Path, scan_fallback: bool, include_inactive: bool) -> FileSetListing:
    if media.is_dir():
        root = media
        try:
            dicomdir: Path | None = resolve_file_id(root, ("DICOMDIR",))
        except UnsafePathError:
            return _fallback(root, None, "a symlink leading outside the media root; not opened",
                             scan_fallback)
        except FileNotFoundError:
            dicomdir = None
        if dicomdir is None:
            if not scan_fallback:
                raise FileSetError(f"{root}: no DICOMDIR")
            return scan_media(root)
    elif media.is_file():
        root, dicomdir = media.parent, media
    else:
        raise FileSetError(f"{media}: no such file or folder")

    try:
        ds = _read_directory_file(dicomdir)
    except _DirectoryFileError as exc:
        if media.is_file():  # the user named this file: say what is wrong with it
            raise
        return _fallback(root, dicomdir, exc.reason, scan_fallback)

    problems: list[str] = []
    reader = _TreeReader(root, include_inactive, problems)
    roots, method = reader.records_of(ds, dicomdir)
    flag = _offset(ds, _CONSISTENCY)
    if flag:
        # PS3.3 F.3.2.1: 0000H, or FFFFH when the writer knows of inconsistencies
        problems.append(f"{_relative(dicomdir, root)}: File-set Consistency Flag is "
                        f"{flag:04X}H (the writer left known inconsistencies)")
    fileset_id = str(ds.get("FileSetID", "") or "").strip()
    return FileSetListing(root=root, dicomdir=dicomdir, fileset_id=fileset_id, method=method,
                          problems=problems, roots=roots, directory_files=reader.expanded)


class _DirectoryFileError(FileSetError):
    def __init__(self, path: Path, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _fallback(root: Path, dicomdir: Path | None, why: str, scan: bool) -> FileSetListing:
    if not scan:
        raise FileSetError(f"{dicomdir or root}: DICOMDIR unusable: {why}")
    log.warning("%s: DICOMDIR unusable (%s); scanning the media", root, why)
    listing = scan_media(root, skip=dicomdir)
    listing.method = f"scan (DICOMDIR unusable: {why})"
    listing.dicomdir = dicomdir
    return listing


def _read_directory_file(path: Path) -> Dataset:
    """A DICOMDIR (or a Philips DIRFILE) as a pydicom Dataset, or _DirectoryFileError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _DirectoryFileError(path, f"cannot read ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise _DirectoryFileError(path, "not a regular file")
    if st.st_size == 0:
        raise _DirectoryFileError(path, "empty file")
    try:
        # force: DICOMDIRs in the wild lack the preamble or the Media Storage SOP Class UID;
        # whether it is a directory is decided by the Directory Record Sequence below.
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many kinds on broken input; none may escape
        raise _DirectoryFileError(path, f"not readable as DICOM ({exc})") from exc
    if _RECORD_SEQ not in ds:
        sop_class = ds.file_meta.get("MediaStorageSOPClassUID") if ds.file_meta else None
        what = f" ({sop_class.name})" if sop_class is not None else ""
        raise _DirectoryFileError(path, f"not a DICOMDIR: no Directory Record Sequence{what}")
    return ds


class _TreeReader:
    """Builds DirRecord trees from directory files, following Philips DIRFILE references."""

    def __init__(self, root: Path, include_inactive: bool, problems: list[str]) -> None:
        self.root = root
        self.include_inactive = include_inactive
        self.problems = problems
        self.listings: dict[str, dict[str, str]] = {}
        self.seen: set[str] = set()
        self.expanded: list[Path] = []

    def records_of(self, ds: Dataset, path: Path,
                   sub: bool = False) -> tuple[list[DirRecord], str]:
        """The record trees of one directory file; ``sub``: a file referenced by a record."""
        self.seen.add(os.path.realpath(path))
        label = _relative(path, self.root)
        try:
            items = list(ds[_RECORD_SEQ].value or [])
        except Exception as exc:  # pydicom raises many kinds on broken input; none may escape
            self.problems.append(f"{label}: Directory Record Sequence unreadable ({exc})")
            return [], METHOD_REBUILT
        records = [self._record(item) for item in items]
        why = None
        roots: list[DirRecord] = []
        if records:
            notes: list[str] = []
            roots, why = _link_by_offsets(ds, records, notes)
            self.problems.extend(f"{label}: {note}" for note in notes)
        method = METHOD_DICOMDIR
        if why is not None:
            # Philips DIRFILEs carry no offsets at all, by design: not worth a note each.
            if not (sub and why == _NO_ROOT_OFFSET):
                self.problems.append(f"{label}: directory offsets unusable ({why}); "
                                     "hierarchy rebuilt from the record sequence")
            roots = _link_by_levels(records)
            method = METHOD_REBUILT
        if not self.include_inactive:
            roots = _prune_inactive(roots)
        for rec in [r for root in roots for _, r in root.walk()]:
            if rec.record_type in _CONTAINER_TYPES and rec.file_id and rec.path is not None:
                self._expand(rec)
        if not sub and self.expanded:
            self.problems.append(
                f"{label}: non-standard multi-file directory: {len(self.expanded)} further "
                "directory files referenced by PATIENT/STUDY/SERIES records (read as well)")
        return roots, method

    def _record(self, item: Dataset) -> DirRecord:
        rtype = str(_value(item, _TYPE) or "").strip().upper()
        in_use = _value(item, _IN_USE)
        rec = DirRecord(record_type=rtype or "UNKNOWN", offset=getattr(item, "seq_item_tell", None),
                        in_use=in_use in (None, "") or in_use != 0, dataset=item, file_id=None,
                        path=None, problem=None)
        if _FILE_ID in item:
            rec.file_id = split_file_id(_value(item, _FILE_ID))
            rec.path, rec.problem = self.resolve(rec.file_id)
        return rec

    def resolve(self, comps: tuple[str, ...]) -> tuple[Path | None, str | None]:
        try:
            path = resolve_file_id(self.root, comps, self.listings)
        except UnsafePathError as exc:
            return None, str(exc)
        except FileNotFoundError:
            return None, "missing"
        except OSError as exc:
            return None, f"cannot be reached ({exc.strerror})"
        try:
            st = os.stat(path)  # the target is inside the root (checked): stat, never open
        except OSError as exc:
            return None, f"cannot be reached ({exc.strerror})"
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file; not opened"
        return path, None

    def _expand(self, rec: DirRecord) -> None:
        """A container record referencing a file: a Philips DIRFILE holding its children."""
        assert rec.path is not None
        real = os.path.realpath(rec.path)
        if real in self.seen:
            self.problems.append(f"{_show(rec.file_id)}: directory file referenced twice "
                                 "(loop); not followed")
            return
        if len(self.expanded) >= _MAX_DIRECTORY_FILES:
            return
        self.seen.add(real)
        try:
            sub = _read_directory_file(rec.path)
        except FileSetError as exc:
            self.problems.append(f"{rec.record_type} record references {_show(rec.file_id)}, "
                                 f"which is not a directory file: {exc}")
            return
        self.expanded.append(rec.path)
        children, _ = self.records_of(sub, rec.path, sub=True)
        rec.children.extend(children)
        rec.directory_file = True


_NO_ROOT_OFFSET = "no offset of the first root record"


def _relative(path: Path, root: Path) -> str:
    try:
        return "/".join(path.relative_to(root).parts)
    except ValueError:
        return str(path)


def _show(file_id: tuple[str, ...] | None) -> str:
    return "\\".join(file_id or ())


def _value(item: Dataset, tag: int) -> Any:
    """An element's value, or None when absent or undecodable (pydicom converts values when
    first accessed, so a damaged element raises only here)."""
    try:
        elem = item.get(tag)
        return None if elem is None else elem.value
    except Exception:  # pydicom raises many kinds on broken input; none may escape
        return None


def _offset(item: Dataset, tag: int) -> int:
    value = _value(item, tag)
    try:
        return int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def _link_by_offsets(ds: Dataset, records: list[DirRecord],
                     notes: list[str]) -> tuple[list[DirRecord], str | None]:
    """Follow the offsets (PS3.3 F.3.2.1). Returns (roots, None) or ([], why they are unusable)."""
    by_offset = {r.offset: r for r in records if r.offset is not None}
    first = _offset(ds, _ROOT_FIRST)
    if not first:
        return [], _NO_ROOT_OFFSET
    roots: list[DirRecord] = []
    visited: set[int] = set()
    # Work list of (offset of the first record of a chain, parent or None for the root).
    chains: list[tuple[int, DirRecord | None]] = [(first, None)]
    last_root = 0
    while chains:
        offset, parent = chains.pop()
        while offset:
            rec = by_offset.get(offset)
            if rec is None:
                return [], f"offset {offset} points at no record"
            if offset in visited:
                return [], f"record at offset {offset} reached twice (loop)"
            visited.add(offset)
            (roots if parent is None else parent.children).append(rec)
            if parent is None:
                last_root = offset
            lower = _offset(rec.dataset, _LOWER)
            if lower:
                chains.append((lower, rec))
            offset = _offset(rec.dataset, _NEXT)
    lost = [r for r in records if r.offset not in visited and r.in_use]
    if lost:
        return [], f"{len(lost)} records not reachable through the offsets"
    declared_last = _offset(ds, _ROOT_LAST)
    if declared_last and declared_last != last_root:
        # Harmless for reading (the chain is complete), but a verify reports it.
        notes.append(f"Offset of the Last Directory Record of the Root Directory Entity is "
                     f"{declared_last}, the root chain ends at {last_root}")
    return roots, None


def _link_by_levels(records: list[DirRecord]) -> list[DirRecord]:
    """Rebuild the tree from the record order and the level of each record type."""
    for rec in records:
        rec.children = []
    roots: list[DirRecord] = []
    stack: list[tuple[int, DirRecord]] = []
    for rec in records:
        if rec.record_type == "PRIVATE":
            # No level of its own: under a container record just before it, else a sibling
            # of the record before it (a private leaf among the images of a series).
            if not stack:
                level = 1
            elif stack[-1][1].record_type == "PRIVATE" or stack[-1][0] >= _LEAF_LEVEL:
                level = stack[-1][0]
            else:
                level = stack[-1][0] + 1
        else:
            level = _LEVELS.get(rec.record_type, _LEAF_LEVEL)
            while stack and stack[-1][1].record_type == "PRIVATE":
                stack.pop()  # a PRIVATE record is never the parent of a standard one
        while stack and stack[-1][0] >= level:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(rec)
        stack.append((level, rec))
    return roots


def _prune_inactive(records: list[DirRecord]) -> list[DirRecord]:
    """Drop inactive records (PS3.10 8.5: Record In-use Flag 0000H) and what hangs below them."""
    kept = [r for r in records if r.in_use]
    for rec in kept:
        rec.children = _prune_inactive(rec.children)
    return kept


# --- scanning the media when there is no usable DICOMDIR -------------------------------------

_SCAN_TAGS: list[BaseTag | int] = [Tag(k) for k in (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID",
    "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyDescription", "AccessionNumber", "StudyID", "Modality", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "InstanceNumber", "Rows")]
_LAST_SCAN_TAG = max(_SCAN_TAGS)


def _after_scan_tags(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag > _LAST_SCAN_TAG)  # the header beyond Rows is not needed: stop reading


_PATIENT_KEYS = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                 "PatientSex")
_STUDY_KEYS = ("SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber",
               "StudyDescription", "StudyInstanceUID", "StudyID")
_SERIES_KEYS = ("SpecificCharacterSet", "Modality", "SeriesInstanceUID", "SeriesNumber",
                "SeriesDescription")


def walk_regular_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file under ``root`` as (path, None), or (path, why it is not opened).

    Symlinks are followed only when they stay inside the root; directory symlinks are not
    descended into; FIFOs, sockets and devices are never opened.
    """
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                if os.path.islink(path):
                    real = os.path.realpath(path)
                    if not (real == real_root or real.startswith(inside)):
                        yield path, "symlink resolving outside the media root; not opened"
                        continue
                st = os.stat(path)
            except OSError as exc:
                yield path, f"cannot be reached ({exc.strerror})"
                continue
            if stat.S_ISREG(st.st_mode):
                yield path, None


def scan_media(root: Path, skip: Path | None = None) -> FileSetListing:
    """Build PATIENT/STUDY/SERIES/leaf records from the headers of the DICOM files under root
    (``skip``: an unusable DICOMDIR, which is no instance even when it is some DICOM file)."""
    from mediasvc.fileset.records import record_type_for

    problems: list[str] = []
    patients: dict[str, DirRecord] = {}
    studies: dict[tuple[str, str], DirRecord] = {}
    series: dict[tuple[str, str, str], DirRecord] = {}
    for path, refused in walk_regular_files(root):
        if refused:
            problems.append(f"{_relative(path, root)}: {refused}")
            continue
        if skip is not None and path == skip:
            continue
        try:
            with open(path, "rb") as fp:
                ds = read_partial(fp, stop_when=_after_scan_tags, specific_tags=_SCAN_TAGS)
        except InvalidDicomError:
            continue  # not a DICOM Part 10 file: README.TXT, INDEX.HTM, viewers
        except Exception as exc:  # pydicom raises many kinds on broken input; none may escape
            problems.append(f"{_relative(path, root)}: unreadable DICOM file ({exc})")
            continue
        meta = ds.file_meta
        sop_class = str(meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        if sop_class == MEDIA_STORAGE_DIRECTORY:
            continue  # a (broken) directory file, not an instance
        pid = str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "")
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        patient = patients.get(pid)
        if patient is None:
            patient = patients[pid] = _entity("PATIENT", ds, _PATIENT_KEYS)
        study = studies.get((pid, study_uid))
        if study is None:
            study = studies[(pid, study_uid)] = _entity("STUDY", ds, _STUDY_KEYS)
            patient.children.append(study)
        ser = series.get((pid, study_uid, series_uid))
        if ser is None:
            ser = series[(pid, study_uid, series_uid)] = _entity("SERIES", ds, _SERIES_KEYS)
            study.children.append(ser)
        comps = path.relative_to(root).parts
        leaf = _entity(record_type_for(sop_class, "Rows" in ds), ds,
                       ("SpecificCharacterSet", "InstanceNumber"))
        sop_instance = str(meta.get("MediaStorageSOPInstanceUID", "")
                           or ds.get("SOPInstanceUID", ""))
        # The file's real path, even when it is no conformant File ID: no validation warning.
        for tag, vr, value in ((_FILE_ID, "CS", list(comps)),
                               (0x00041510, "UI", sop_class),
                               (0x00041511, "UI", sop_instance),
                               (0x00041512, "UI", str(meta.get("TransferSyntaxUID", "")))):
            leaf.dataset[tag] = DataElement(tag, vr, value,
                                            validation_mode=pydicom_config.IGNORE)
        leaf.file_id, leaf.path = tuple(comps), path
        ser.children.append(leaf)
    if not patients:
        problems.append("no DICOM files found")
    return FileSetListing(root=root, dicomdir=None, fileset_id="", method=METHOD_SCAN,
                          problems=problems, roots=list(patients.values()))


def _entity(rtype: str, ds: Dataset, keys: tuple[str, ...]) -> DirRecord:
    rec_ds = Dataset()
    rec_ds.DirectoryRecordType = rtype
    for key in keys:
        if key in ds:
            rec_ds[key] = ds[key]
    return DirRecord(record_type=rtype, offset=None, in_use=True, dataset=rec_ds, file_id=None,
                     path=None, problem=None)
