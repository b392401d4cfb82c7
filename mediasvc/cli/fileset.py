"""`mediasvc fileset list|verify|add|remove|compact MEDIA ...`: File-set Reader and Updater.

    list MEDIA [--patient-id X] [--study-uid X] [--modality X] [--json]
        the hierarchy from the DICOMDIR alone (records and their keys); filters keep ancestors
    verify MEDIA [--json]
        referenced files exist and match their records, no DICOM file is unreferenced, File IDs
        are conformant; exit status 1 when anything is wrong, each problem listed
    add MEDIA FILES... [--profile ID] [--json]        append (fileset/updater.py)
    remove MEDIA (--sop-instance UID | --series UID | --study UID | --patient ID)
    compact MEDIA
    add, remove and compact then refresh README.TXT, INDEX.HTM and IHE_PDI/ of the volume
    where mediasvc wrote them (media/pdi_refresh.py); a foreign README is left alone, and said.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from mediasvc.fileset.reader import DirRecord, FileSetListing, quiet_pydicom, read_fileset

EXIT_OK, EXIT_PROBLEMS = 0, 1

# Structural record elements (PS3.3 F.3.2.2) that are not keys worth showing.
_STRUCTURAL = {0x00041400, 0x00041410, 0x00041420, 0x00041430, 0x00041500}


def register(sub: Any) -> None:
    parser = sub.add_parser("fileset", help="read, verify and update DICOM file-sets (DICOMDIR)",
                            description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fs = parser.add_subparsers(dest="fileset_command", metavar="ACTION", required=True)

    p = fs.add_parser("list", help="the DICOMDIR hierarchy with its keys")
    p.add_argument("media", type=Path, help="media folder (with DICOMDIR) or a DICOMDIR file")
    p.add_argument("--patient-id", help="only this Patient ID")
    p.add_argument("--study-uid", help="only this Study Instance UID")
    p.add_argument("--modality", help="only series of this modality")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)

    p = fs.add_parser("verify", help="check the DICOMDIR against the files on the media")
    p.add_argument("media", type=Path, help="media folder (with DICOMDIR) or a DICOMDIR file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_verify)

    p = fs.add_parser("add", help="append files to a file-set (existing files stay)")
    p.add_argument("media", type=Path)
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--profile", help="media application profile ID (default: the file-set's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_add)

    p = fs.add_parser("remove", help="make records inactive and delete their files")
    p.add_argument("media", type=Path)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sop-instance", metavar="UID")
    which.add_argument("--series", metavar="UID")
    which.add_argument("--study", metavar="UID")
    which.add_argument("--patient", metavar="ID")
    p.set_defaults(func=run_remove)

    p = fs.add_parser("compact", help="rewrite the DICOMDIR without inactive records")
    p.add_argument("media", type=Path)
    p.set_defaults(func=run_compact)


# --- list -------------------------------------------------------------------------------------

def run_list(args: argparse.Namespace) -> int:
    listing = read_fileset(args.media)
    with quiet_pydicom():
        roots = filter_records(listing.roots, patient_id=args.patient_id,
                               study_uid=args.study_uid, modality=args.modality)
        if args.json:
            print(json.dumps(listing_json(listing, roots), indent=1, ensure_ascii=False))
        else:
            _print_tree(listing, roots)
    return EXIT_OK


def filter_records(roots: list[DirRecord], *, patient_id: str | None = None,
                   study_uid: str | None = None, modality: str | None = None,
                   ) -> list[DirRecord]:
    """Copies of the trees with only the records that match, and their ancestors.

    A record's keys are seen together with its ancestors' (Patient ID from the PATIENT record,
    and from the record itself where a level is missing). A record without children matches
    when every filter does; a record with children is kept when any child is.
    """
    wanted = {k: v for k, v in (("PatientID", patient_id), ("StudyInstanceUID", study_uid),
                                ("Modality", modality)) if v}
    if not wanted:
        return roots

    def keep(rec: DirRecord, inherited: dict[str, str]) -> DirRecord | None:
        keys = dict(inherited)
        for k in ("PatientID", "StudyInstanceUID", "Modality", "ModalitiesInStudy"):
            if rec.get(k):
                keys[k] = rec.get(k)
        if rec.children:
            kept = [c for c in (keep(child, keys) for child in rec.children) if c is not None]
            return dataclasses.replace(rec, children=kept) if kept else None
        return rec if _matches(keys, wanted) else None

    return [r for r in (keep(root, {}) for root in roots) if r is not None]


def _matches(keys: dict[str, str], wanted: dict[str, str]) -> bool:
    for key, value in wanted.items():
        if key == "Modality":
            have = keys.get("Modality") or keys.get("ModalitiesInStudy", "")
            if value.upper() not in have.upper().split("\\"):
                return False
        elif keys.get(key, "") != value.strip():
            return False
    return True


def record_keys(ds: Dataset) -> dict[str, Any]:
    """A record's keys as JSON-friendly values (keyword -> text, list or number)."""
    out: dict[str, Any] = {}
    for tag in list(ds.keys()):
        if tag in _STRUCTURAL or tag.group == 0x0004 and tag.element < 0x1500:
            continue
        try:
            elem = ds[tag]
            value = elem.value
        except Exception:  # an undecodable value in a third-party DICOMDIR
            continue
        name = elem.keyword or str(elem.tag)
        if isinstance(value, DicomSequence):
            out[name] = f"<{len(value)} item{'s' if len(value) != 1 else ''}>"
        elif isinstance(value, (bytes, bytearray)):
            out[name] = f"<{len(value)} bytes>"
        elif isinstance(value, MultiValue):
            out[name] = [_scalar(v) for v in value]
        else:
            out[name] = _scalar(value)
    return out


def _scalar(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if type(value) in (int, float) else str(value)
    return str(value)


def record_json(rec: DirRecord) -> dict[str, Any]:
    return {
        "type": rec.record_type,
        "offset": rec.offset,
        "in_use": rec.in_use,
        "file_id": "\\".join(rec.file_id) if rec.file_id is not None else None,
        "path": str(rec.path) if rec.path is not None else None,
        "problem": rec.problem,
        "directory_file": rec.directory_file,
        "keys": record_keys(rec.dataset),
        "children": [record_json(c) for c in rec.children],
    }


def listing_json(listing: FileSetListing, roots: Iterable[DirRecord]) -> dict[str, Any]:
    roots = list(roots)
    counts: dict[str, int] = {}
    for root in roots:
        for _, rec in root.walk():
            counts[rec.record_type] = counts.get(rec.record_type, 0) + 1
    return {
        "root": str(listing.root),
        "dicomdir": str(listing.dicomdir) if listing.dicomdir else None,
        "fileset_id": listing.fileset_id,
        "method": listing.method,
        "problems": listing.problems,
        "counts": counts,
        "records": [record_json(r) for r in roots],
    }


def _print_tree(listing: FileSetListing, roots: list[DirRecord]) -> None:
    fsid = f" {listing.fileset_id!r}" if listing.fileset_id else ""
    print(f"File-set{fsid} at {listing.root} (read from: {listing.method})")
    for problem in listing.problems:
        print(f"! {problem}")
    counts: dict[str, int] = {}
    for root in roots:
        for depth, rec in root.walk():
            counts[rec.record_type] = counts.get(rec.record_type, 0) + 1
            print("  " * (depth + 1) + _record_line(rec))
    print(", ".join(f"{n} {t}" for t, n in counts.items()) or "no records")


def _record_line(rec: DirRecord) -> str:
    keys = record_keys(rec.dataset)
    shown = " ".join(f"{k}={_text(v)}" for k, v in keys.items() if v not in ("", []))
    line = rec.record_type
    if rec.file_id is not None:
        line += f" [{chr(92).join(rec.file_id)}]"
        if rec.problem:
            line += f" ({rec.problem})"
    if not rec.in_use:
        line += " (inactive)"
    return f"{line}  {shown}" if shown else line


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    text = str(value)
    return repr(text) if " " in text else text


# --- verify -----------------------------------------------------------------------------------

def run_verify(args: argparse.Namespace) -> int:
    from mediasvc.fileset.verify import verify_fileset

    report = verify_fileset(args.media)
    listing = report.listing
    if args.json:
        print(json.dumps({
            "root": str(listing.root),
            "dicomdir": str(listing.dicomdir) if listing.dicomdir else None,
            "method": listing.method,
            "records": sum(1 for _ in listing.records()),
            "instances": sum(1 for _ in listing.leaves()),
            "checked": report.checked,
            "ok": report.ok,
            "problems": [{"where": p.where, "what": p.what} for p in report.problems],
        }, indent=1, ensure_ascii=False))
    else:
        instances = sum(1 for _ in listing.leaves())
        print(f"{listing.root}: {instances} instances referenced, {report.checked} files "
              f"checked (read from: {listing.method})")
        for problem in report.problems:
            print(f"  {problem}")
        print(f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}"
              if report.problems else "OK: no problems")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


# --- updater (fileset/updater.py) -------------------------------------------------------------

def _updater() -> Any:
    # Imported when used, so that list/verify work whatever the state of the updater.
    return importlib.import_module("mediasvc.fileset.updater")


def _refresh_pdi(media: Path) -> list[str]:
    """README.TXT, INDEX.HTM and IHE_PDI/ after an update: what was refreshed, what was
    left alone (media/pdi_refresh.py). The file-set layer below cannot do it: imports run
    cli -> media -> fileset."""
    from mediasvc.media.pdi_refresh import refresh_volume

    return refresh_volume(media).lines()


def run_add(args: argparse.Namespace) -> int:
    from mediasvc.cli.export import print_report

    profile = None
    if args.profile:
        from mediasvc.profiles import media_profile

        profile = media_profile(args.profile)
    result = _updater().add_files(args.media, list(args.files), profile)
    changed = result.count("placed") + result.count("transcoded")
    refreshed = _refresh_pdi(args.media) if changed else []
    result.notes += refreshed
    print_report(result, as_json=args.json)
    if not args.json:
        for line in refreshed:
            print(line)
    return EXIT_PROBLEMS if result.rejected else EXIT_OK


def run_remove(args: argparse.Namespace) -> int:
    n = _updater().remove(args.media, sop_instance=args.sop_instance, series=args.series,
                          study=args.study, patient=args.patient)
    print(f"{n} record{'s' if n != 1 else ''} made inactive")
    if not n:
        print("mediasvc: nothing matched", file=sys.stderr)
        return EXIT_PROBLEMS
    for line in _refresh_pdi(args.media):
        print(line)
    return EXIT_OK


def run_compact(args: argparse.Namespace) -> int:
    n = _updater().compact(args.media)
    print(f"{n} inactive record{'s' if n != 1 else ''} dropped")
    if n:
        # The content is unchanged, but a remove killed before its refresh is caught up.
        for line in _refresh_pdi(args.media):
            print(line)
    return EXIT_OK
