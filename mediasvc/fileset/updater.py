"""File-set Updater (FSU, PS3.10 section 7.1): add, remove, compact.

- add: true append. Files already on the medium are neither moved nor renamed; new instances
  join their existing patient/study/series records and folders, and the whole DICOMDIR is
  replaced atomically (dicomdir.atomic_write).
- remove: the records of the chosen entity become inactive (Record In-use Flag 0000H,
  PS3.3 F.3.2.2), parents left without active children too; then their files are deleted and
  folders left empty are removed. The DICOMDIR is written first, so a crash in between
  leaves files that nothing references (which `fileset verify` reports and `compact` clears),
  never records pointing at missing files.
- compact: rewrite the DICOMDIR without the inactive records.

An add that is killed after copying files but before its DICOMDIR leaves files nothing
references. Their File IDs were journaled first (JOURNAL, fsynced), so the next update of the
medium deletes exactly those that the DICOMDIR does not reference, and nothing else: files a
user put there are never touched.
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pydicom.uid import AllTransferSyntaxes

from mediasvc.errors import FileSetError, UsageError
from mediasvc.fileset.creator import (
    FileSetResult,
    Tree,
    Verdict,
    finish,
    scan_sources,
    write_instances,
)
from mediasvc.fileset.dicomdir import Node, unvalidated
from mediasvc.fileset.reader import DirRecord, read_fileset
from mediasvc.profiles import MediaProfile, media_profile

log = logging.getLogger(__name__)

JOURNAL = ".mediasvc-pending"


def _journal(root: Path, file_ids: list[tuple[str, ...]]) -> None:
    path = root / JOURNAL
    with path.open("w", encoding="ascii") as fh:
        fh.write("".join("\\".join(c) + "\n" for c in file_ids))
        fh.flush()
        os.fsync(fh.fileno())


def _recover(root: Path, referenced: set[tuple[str, ...]]) -> None:
    """Undo what a killed update left: unreferenced journaled files, DICOMDIR temp files."""
    for tmp in root.glob(".DICOMDIR.*.tmp"):
        tmp.unlink(missing_ok=True)
    path = root / JOURNAL
    if not path.exists():
        return
    doomed = []
    for line in path.read_text(encoding="ascii").splitlines():
        comps = tuple(line.split("\\"))
        if comps and comps not in referenced and comps[0] == "DICOM" and ".." not in comps:
            doomed.append(root.joinpath(*comps))
    _delete(doomed, root)
    path.unlink()
    log.info("removed %d files left by an interrupted update", len(doomed))


@dataclass
class _Loaded:
    root: Path
    fileset_id: str
    media_uid: str | None
    tree: Tree
    paths: dict[int, Path] = field(default_factory=dict)  # id(Node) -> file it references
    leaves_by_uid: dict[str, Node] = field(default_factory=dict)
    study_patient: dict[str, str] = field(default_factory=dict)


def _key(rec: DirRecord, keyword: str) -> str:
    return rec.get(keyword)


def _load(media: Path) -> _Loaded:
    listing = read_fileset(media, scan_fallback=False, include_inactive=True)
    if listing.dicomdir is None:
        raise FileSetError(f"{media}: no DICOMDIR to update")
    if listing.directory_files:
        raise FileSetError(f"{media}: a multi-file directory (DIRFILE) cannot be updated")
    if listing.method != "dicomdir":
        raise FileSetError(f"{media}: the DICOMDIR needs repair before an update "
                           f"({listing.method}); run `mediasvc fileset verify`")
    try:
        media_uid = str(read_file_meta_info(listing.dicomdir).get(
            "MediaStorageSOPInstanceUID", "")) or None
    except Exception:  # a DICOMDIR without meta still reads; keep a new UID then
        media_uid = None
    loaded = _Loaded(listing.root, listing.fileset_id or "", media_uid, Tree())
    tree = loaded.tree

    def convert(rec: DirRecord, ancestors: tuple[DirRecord, ...]) -> Node:
        node = Node(rec.dataset, [], rec.in_use)
        if rec.path is not None:
            loaded.paths[id(node)] = rec.path
        if rec.file_id:
            tree.used_file_ids.append(rec.file_id)
        for child in rec.children:
            node.children.append(convert(child, (*ancestors, rec)))
        if rec.in_use:
            _index(loaded, rec, node, ancestors)
        return node

    tree.roots = [convert(r, ()) for r in listing.roots]
    _recover(loaded.root, {tuple(r.file_id) for _, r in listing.walk() if r.file_id})
    # Files present but unreferenced must not be overwritten by new File IDs either.
    dicom_dir = loaded.root / "DICOM"
    if dicom_dir.is_dir():
        for dirpath, _dirs, files in os.walk(dicom_dir):
            rel = Path(dirpath).relative_to(loaded.root).parts
            tree.used_file_ids += [(*rel, f) for f in files]
    return loaded


def _index(loaded: _Loaded, rec: DirRecord, node: Node, ancestors: tuple[DirRecord, ...]
           ) -> None:
    tree = loaded.tree
    if rec.record_type == "PATIENT":
        tree.patients.setdefault(_key(rec, "PatientID"), node)
    elif rec.record_type == "STUDY":
        tree.studies.setdefault(_key(rec, "StudyInstanceUID"), node)
        parent = ancestors[-1] if ancestors else None
        if parent is not None and parent.record_type == "PATIENT":
            loaded.study_patient[_key(rec, "StudyInstanceUID")] = _key(parent, "PatientID")
    elif rec.record_type == "SERIES":
        tree.series.setdefault(_key(rec, "SeriesInstanceUID"), node)
    elif rec.file_id:
        loaded.leaves_by_uid[_key(rec, "ReferencedSOPInstanceUIDInFile")] = node
        # New files of an existing series go into its folder (DICOM/PA../ST../SE..).
        if len(ancestors) >= 3 and len(rec.file_id) >= 4:
            p, s, r = ancestors[-3:]
            folder = rec.file_id[:-1]
            tree.dirs.setdefault(("R", _key(r, "SeriesInstanceUID")), folder)
            tree.dirs.setdefault(("S", _key(s, "StudyInstanceUID")), folder[:-1])
            tree.dirs.setdefault(("P", _key(p, "PatientID")), folder[:-2])


def _permissive(profile: MediaProfile | None) -> MediaProfile:
    """Without --profile, an update keeps every file as it is (any class, any syntax)."""
    if profile is not None:
        return profile
    base = media_profile("STD-GEN-CD")
    return replace(base, id="ANY", any_sop_class=True,
                   transfer_syntaxes=tuple(str(u) for u in AllTransferSyntaxes),
                   rules=(), capacity=2**62)


def add_files(media: Path, files: Sequence[Path], profile: MediaProfile | None = None, *,
              link: str = "copy", workers: int | None = None) -> FileSetResult:
    """Append instances to an existing file-set; nothing already there moves."""
    loaded = _load(media)
    prof = _permissive(profile)
    result = FileSetResult(root=loaded.root, fileset_id=loaded.fileset_id, profile=prof.id)
    scan = scan_sources(files, prof, workers=workers)
    result.verdicts += scan.verdicts
    new = []
    for inst in scan.instances:
        node = loaded.leaves_by_uid.get(inst.sop_instance_uid)
        if node is not None:
            existing = loaded.paths.get(id(node))
            if existing is not None and filecmp.cmp(existing, inst.path, shallow=False):
                result.verdicts.append(Verdict(str(inst.path), "duplicate",
                                               "already on the medium",
                                               sop_instance_uid=inst.sop_instance_uid))
            else:
                result.verdicts.append(Verdict(
                    str(inst.path), "rejected", "a different instance with this SOP Instance "
                    "UID is already on the medium", sop_instance_uid=inst.sop_instance_uid))
            continue
        owner = loaded.study_patient.get(inst.study_uid)
        if owner is not None and owner != inst.patient_id:
            result.verdicts.append(Verdict(
                str(inst.path), "rejected", "the study is on the medium under another "
                "Patient ID", sop_instance_uid=inst.sop_instance_uid))
            continue
        new.append(inst)
    if new:
        with unvalidated():
            write_instances(loaded.tree, new, loaded.root, prof, result, link=link,
                            workers=workers,
                            before_copy=lambda ids: _journal(loaded.root, ids))
        finish(loaded.root, loaded.tree, loaded.fileset_id, loaded.media_uid)
        (loaded.root / JOURNAL).unlink(missing_ok=True)
        log.info("file-set %s: %d instances added", loaded.fileset_id,
                 result.count("placed") + result.count("transcoded"))
    return result


def _matches(node: Node, rtype: str, keyword: str, value: str) -> bool:
    if str(node.record.get("DirectoryRecordType", "")).strip() != rtype:
        return False
    return str(node.record.get(keyword, "")).strip() == value


def remove(media: Path, *, sop_instance: str | None = None, series: str | None = None,
           study: str | None = None, patient: str | None = None) -> int:
    """Make the chosen records inactive, delete their files; returns the records changed."""
    chosen = [(k, v) for k, v in (("sop", sop_instance), ("series", series), ("study", study),
                                  ("patient", patient)) if v]
    if len(chosen) != 1:
        raise UsageError("name exactly one of --sop-instance, --series, --study, --patient")
    what, value = chosen[0]
    loaded = _load(media)
    targets: list[Node] = []

    def visit(nodes: list[Node]) -> None:
        for node in nodes:
            if not node.in_use:
                continue
            hit = {
                "sop": "ReferencedSOPInstanceUIDInFile" in node.record and str(
                    node.record.ReferencedSOPInstanceUIDInFile) == value,
                "series": _matches(node, "SERIES", "SeriesInstanceUID", value),
                "study": _matches(node, "STUDY", "StudyInstanceUID", value),
                "patient": _matches(node, "PATIENT", "PatientID", value),
            }[what]
            if hit:
                targets.append(node)
            else:
                visit(node.children)

    visit(loaded.tree.roots)
    if not targets:
        return 0
    changed = 0
    doomed: list[Path] = []
    for target in targets:
        for node in target.walk():
            if node.in_use:
                node.in_use = False
                changed += 1
                path = loaded.paths.get(id(node))
                if path is not None:
                    doomed.append(path)
    changed += _deactivate_empty(loaded.tree.roots)
    finish(loaded.root, loaded.tree, loaded.fileset_id, loaded.media_uid)
    _delete(doomed, loaded.root)
    return changed


def _deactivate_empty(nodes: list[Node]) -> int:
    """Parents (PATIENT, STUDY, SERIES) whose children are all inactive become inactive."""
    changed = 0
    for node in nodes:
        if node.children:
            changed += _deactivate_empty(node.children)
            if node.in_use and not any(c.in_use for c in node.children):
                node.in_use = False
                changed += 1
    return changed


def _delete(paths: list[Path], root: Path) -> None:
    real_root = os.path.realpath(root)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while os.path.realpath(parent) != real_root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break
            parent = parent.parent


def compact(media: Path) -> int:
    """Rewrite the DICOMDIR without inactive records; returns how many were dropped."""
    loaded = _load(media)
    dropped = 0
    leftovers: list[Path] = []

    def keep(nodes: list[Node]) -> list[Node]:
        nonlocal dropped
        kept = []
        for node in nodes:
            if node.in_use:
                node.children = keep(node.children)
                kept.append(node)
            else:
                for sub in node.walk():
                    dropped += 1
                    path = loaded.paths.get(id(sub))
                    if path is not None:
                        leftovers.append(path)
        return kept

    loaded.tree.roots = keep(loaded.tree.roots)
    if dropped:
        if not loaded.tree.roots:
            raise FileSetError("every record is inactive: nothing would be left on the medium")
        finish(loaded.root, loaded.tree, loaded.fileset_id, loaded.media_uid)
        _delete([p for p in leftovers if p.exists()], loaded.root)
    return dropped
