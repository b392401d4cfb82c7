"""Verify a file-set (FSR): does the DICOMDIR tell the truth about the media?

Checks, each problem listed with where it is:
- every referenced file exists, is inside the media root and is a DICOM Part 10 file;
- it matches its record: Referenced SOP Class / SOP Instance / Transfer Syntax UID in File
  (0004,1510/1511/1512) against the file's meta information (PS3.10 7.1), and the meta against
  the data set's own SOP Class / Instance UID;
- no two records reference the same file or the same SOP Instance;
- every File ID is conformant (PS3.10 8.2: at most 8 components of 1-8 characters A-Z 0-9 _);
- no DICOM file on the media is left unreferenced (files that are not DICOM Part 10 - README,
  INDEX.HTM, viewers, IHE_PDI - are not file-set members and are ignored, as are directory
  files such as the DICOMDIR itself);
- and whatever the reader noted about the DICOMDIR (unusable offsets, a wrong last-record offset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.misc import is_dicom
from pydicom.tag import BaseTag, Tag

from mediasvc.fileset.fileid import conformance_problem
from mediasvc.fileset.reader import (
    MEDIA_STORAGE_DIRECTORY,
    DirRecord,
    FileSetListing,
    quiet_pydicom,
    read_fileset,
    walk_regular_files,
)

# (record key, file meta key, what it is) - PS3.3 F.5 leaf keys vs PS3.10 7.1 meta.
_MATCHES = (
    ("ReferencedSOPInstanceUIDInFile", "MediaStorageSOPInstanceUID", "SOP Instance UID"),
    ("ReferencedSOPClassUIDInFile", "MediaStorageSOPClassUID", "SOP Class UID"),
    ("ReferencedTransferSyntaxUIDInFile", "TransferSyntaxUID", "Transfer Syntax UID"),
)
_DATASET_TAGS: list[BaseTag | int] = [Tag("SOPClassUID"), Tag("SOPInstanceUID")]


def _after_sop_instance_uid(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag > 0x00080018)


@dataclass
class VerifyProblem:
    where: str  # a File ID, a path relative to the media root, or "DICOMDIR"
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class VerifyReport:
    listing: FileSetListing
    checked: int = 0  # referenced files opened and compared
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_fileset(media: Path) -> VerifyReport:
    """Verify the file-set on ``media`` (a folder or its DICOMDIR). Raises FileSetError only
    when ``media`` cannot be read at all; every other finding is a listed problem."""
    with quiet_pydicom():
        listing = read_fileset(Path(media))
        report = VerifyReport(listing)
        if listing.dicomdir is None or listing.method.startswith("scan"):
            why = "no DICOMDIR" if listing.dicomdir is None else listing.method
            report.problems.append(VerifyProblem("DICOMDIR", f"{why}; media read by scanning"))
        for note in listing.problems:
            where, _, what = note.partition(": ")
            report.problems.append(VerifyProblem(where, what) if what
                                   else VerifyProblem("DICOMDIR", note))
        if listing.method.startswith("scan"):
            return report
        _check_records(listing, report)
        _check_unreferenced(listing, report)
    return report


def _check_records(listing: FileSetListing, report: VerifyReport) -> None:
    by_file: dict[str, str] = {}
    by_uid: dict[str, str] = {}
    for rec in listing.records():
        if rec.file_id is None:
            continue
        where = "\\".join(rec.file_id) or "(empty File ID)"
        problem = conformance_problem(rec.file_id)
        if problem:
            report.problems.append(VerifyProblem(where, f"non-conformant File ID: {problem}"))
        if rec.path is None:
            what = "referenced file is missing" if rec.problem == "missing" else rec.problem
            report.problems.append(VerifyProblem(where, f"{rec.record_type} record: {what}"))
            continue
        real = _identity(rec.path)
        if real in by_file:
            report.problems.append(VerifyProblem(
                where, f"file also referenced as {by_file[real]}"))
        by_file[real] = where
        if rec.directory_file:
            continue
        uid = rec.get("ReferencedSOPInstanceUIDInFile")
        if uid:
            if uid in by_uid:
                report.problems.append(VerifyProblem(
                    where, f"SOP Instance UID {uid} also referenced by {by_uid[uid]}"))
            by_uid[uid] = where
        report.checked += 1
        for what in _compare(rec):
            report.problems.append(VerifyProblem(where, what))


def _compare(rec: DirRecord) -> list[str]:
    """What differs between a leaf record and the file it references."""
    assert rec.path is not None
    try:
        with open(rec.path, "rb") as fp:
            # Only the header up to SOP Instance UID (0008,0018) is needed: stop reading there
            # (10,000 files: a fraction of a full header parse each).
            ds = read_partial(fp, stop_when=_after_sop_instance_uid, specific_tags=_DATASET_TAGS)
    except InvalidDicomError:
        return ["referenced file is not a DICOM Part 10 file (no preamble/DICM prefix)"]
    except Exception as exc:  # pydicom raises many kinds on broken input; none may escape
        return [f"referenced file is unreadable ({exc})"]
    out: list[str] = []
    meta = ds.file_meta
    lacking = [_keyword_name(k) for k, _, _ in _MATCHES if not rec.get(k)]
    if lacking:
        out.append(f"{rec.record_type} record lacks {', '.join(lacking)}")
    for rec_key, meta_key, label in _MATCHES:
        in_record = rec.get(rec_key)
        in_file = str(meta.get(meta_key, "") or "").strip()
        if not in_record:
            continue
        if not in_file:
            out.append(f"file meta lacks {_keyword_name(meta_key)}")
        elif in_record != in_file:
            out.append(f"{label} differs: record {in_record}, file {in_file}")
    for meta_key, ds_key in (("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
                             ("MediaStorageSOPClassUID", "SOPClassUID")):
        in_meta = str(meta.get(meta_key, "") or "").strip()
        in_ds = str(ds.get(ds_key, "") or "").strip()
        if in_meta and in_ds and in_meta != in_ds:
            out.append(f"file's {_keyword_name(ds_key)} {in_ds} differs from its meta "
                       f"information ({in_meta})")
    return out


def _identity(path: Path) -> str:
    """Which file a path is: resolved paths and walked paths are both joined onto the root, so
    only a symlinked file needs realpath (one lstat instead of one per path component)."""
    return os.path.realpath(path) if os.path.islink(path) else os.path.normpath(path)


def _keyword_name(keyword: str) -> str:
    return str(pydicom.datadict.dictionary_description(keyword))


def _check_unreferenced(listing: FileSetListing, report: VerifyReport) -> None:
    referenced = {_identity(r.path) for r in listing.records() if r.path is not None}
    skip = {_identity(p) for p in listing.directory_files}
    if listing.dicomdir is not None:
        skip.add(_identity(listing.dicomdir))
    for path, refused in walk_regular_files(listing.root):
        rel = "/".join(path.relative_to(listing.root).parts)
        if refused:
            report.problems.append(VerifyProblem(rel, refused))
            continue
        real = _identity(path)
        if real in referenced or real in skip:
            continue
        try:
            if not is_dicom(path):
                continue  # README.TXT, INDEX.HTM, viewer and IHE_PDI content
        except OSError as exc:
            report.problems.append(VerifyProblem(rel, f"cannot be read ({exc.strerror})"))
            continue
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
        except Exception:  # unreadable meta: still a DICOM file nobody references
            meta = None
        if meta is not None and meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
            continue  # another directory file (e.g. a vendor's own DICOMDIR copy)
        report.problems.append(VerifyProblem(rel, "DICOM file not referenced by the DICOMDIR"))
