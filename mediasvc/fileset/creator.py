"""File-set Creator (FSC, PS3.10 section 7.1 / PS3.11): scan sources, write a file-set.

    scan = scan_sources(paths, profile, compress=None)      # -> ScanResult
        scan.instances: list[SourceInstance]  accepted, one per SOP Instance UID
        scan.verdicts:  list[Verdict]          rejected files and identical duplicates
    result = write_fileset(scan.instances, out, profile, fileset_id="ID", link="copy")
        writes out/DICOM/... then out/DICOMDIR (last, atomically); returns FileSetResult
Capacity and spanning are media production's (media/production.py: produce).

``link``: "copy" (default), "hardlink" (no byte written twice: the tree shares the source's
inodes; transcoded files are always new files), "reflink" (FICLONE where the filesystem
can, else a copy) or "map" (nothing placed: ``result.mapped`` records File ID -> source, for
an ISO writer that reads the sources under their File IDs, media/oneshot.py; transcoded files
are still written under OUT).

The directory keys of PATIENT, STUDY and SERIES records are merged over every instance below
the record: a key is taken from the first instance that has a value for it, not only from the
first instance (DCMTK's dcmmkdir copies from the first file only).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import filecmp
import logging
import multiprocessing
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from mediasvc.durable import fsync_dir, syncfs
from mediasvc.errors import FileSetError, UsageError
from mediasvc.fileset.dicomdir import Node, unvalidated, write_dicomdir
from mediasvc.fileset.fileid import FileIdAllocator
from mediasvc.fileset.leaf import encode_refs
from mediasvc.fileset.scan import (
    KeyElement,
    KeyTable,
    Rejection,
    SourceInstance,
    drop_unneeded_charset,
    has_value,
    inspect_file,
    iter_source_files,
    key_spec,
    pack_keys,
    ts_name,
)
from mediasvc.fileset.transcode import COMPRESS_CHOICES, ENCODABLE, TranscodeError, transcode
from mediasvc.profiles import MediaProfile

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".mediasvc-partial"
FILESET_ID_RE = re.compile(r"[A-Z0-9_ ]{1,16}")
_POOL_MIN_FILES = 256  # below this a process pool costs more than it saves
# The record of every Node whose body is already encoded (never read or changed): one
# Dataset for all, since making one costs as much as the rest of a leaf in this process.
_ENCODED = Dataset()


@dataclass
class Verdict:
    """What happened to one input file."""

    path: str
    status: str  # placed | transcoded | duplicate | rejected
    reason: str = ""
    file_id: str = ""
    sop_instance_uid: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"path": self.path, "status": self.status}
        for key in ("reason", "file_id", "sop_instance_uid"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass
class ScanResult:
    instances: list[SourceInstance] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class FileSetResult:
    root: Path
    fileset_id: str
    profile: str
    verdicts: list[Verdict] = field(default_factory=list)
    bytes_written: int = 0
    notes: list[str] = field(default_factory=list)  # values invented for the DICOMDIR
    # link="map": File ID components -> the source file that holds its bytes (not placed).
    mapped: dict[tuple[str, ...], Path] = field(default_factory=dict)

    @property
    def rejected(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == "rejected"]

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "fileset_id": self.fileset_id, "profile": self.profile,
            "counts": {s: self.count(s) for s in ("placed", "transcoded", "duplicate",
                                                  "rejected")},
            "bytes": self.bytes_written,
            "notes": self.notes,
            "files": [v.to_json() for v in self.verdicts],
        }


# -- scanning ---------------------------------------------------------------------------------

def _pool(n_items: int, workers: int | None, *, processes: bool,
          min_items: int = _POOL_MIN_FILES) -> Executor | None:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1 or n_items < min_items:
        return None
    return ProcessPoolExecutor(count) if processes else ThreadPoolExecutor(count * 2)


def _map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None,
         processes: bool = True, min_items: int = _POOL_MIN_FILES) -> list[Any]:
    pool = _pool(len(items), workers, processes=processes, min_items=min_items)
    if pool is None:
        return [fn(item) for item in items]
    with pool:
        chunk = max(1, min(64, len(items) // ((workers or os.cpu_count() or 1) * 8)))
        return list(pool.map(fn, items, chunksize=chunk))


def _start_method() -> str:
    """fork is the cheapest start (no interpreter start, no re-import), but a fork taken while
    another thread holds a lock leaves that lock held in the child forever: with threads
    running (mediasvc serve), workers come from a forkserver."""
    return "forkserver" if threading.active_count() > 1 else "fork"


_SCAN_ARGS: tuple[MediaProfile, str | None] | None = None


def _scan_init(profile: MediaProfile, target: str | None) -> None:
    global _SCAN_ARGS
    _SCAN_ARGS = (profile, target)


def _scan_one(path: str) -> SourceInstance | Rejection:
    """inspect_file in a worker; the keys travel packed (scan.pack_keys)."""
    assert _SCAN_ARGS is not None
    item = inspect_file(Path(path), _SCAN_ARGS[0], _SCAN_ARGS[1])
    if isinstance(item, SourceInstance):
        pack_keys(item)
    return item


def _scan_all(files: Sequence[Path], profile: MediaProfile, target: str | None,
              workers: int | None, method: str) -> Iterator[SourceInstance | Rejection]:
    """Judged files in input order, from a process pool sized to the machine (chunked imap:
    results arrive while workers go on) or, for few files, in this process."""
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1 or len(files) < _POOL_MIN_FILES:
        yield from (inspect_file(f, profile, target) for f in files)
        return
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["mediasvc.fileset.scan"])
    chunk = max(1, min(64, len(files) // (count * 8)))
    with ctx.Pool(count, initializer=_scan_init, initargs=(profile, target)) as pool:
        yield from pool.imap(_scan_one, [str(f) for f in files], chunksize=chunk)


def compress_target(compress: str | None, profile: MediaProfile) -> str | None:
    """Validate --compress against the profile and the encoders we have."""
    if not compress:
        return None
    uid = COMPRESS_CHOICES.get(compress)
    if uid is None:
        raise UsageError(f"--compress {compress!r}: choose one of {', '.join(COMPRESS_CHOICES)}")
    if uid not in profile.compress_to:
        allowed = [k for k, v in COMPRESS_CHOICES.items() if v in profile.compress_to]
        raise UsageError(f"--compress {compress}: {profile.id} does not allow "
                         f"{UID(uid).name} (allowed: {', '.join(allowed) or 'none'})")
    if uid not in ENCODABLE:
        raise UsageError(f"--compress {compress}: no {UID(uid).name} encoder is installed "
                         "(pydicom encodes JPEG 2000 and RLE, Pillow JPEG Baseline)")
    return uid


def _prefetch(files: Sequence[Path]) -> None:
    """Ask the kernel to read every source ahead (posix_fadvise WILLNEED, asynchronous):
    from a cold cache, header reads are one disk round trip per file, one after the other;
    with the whole list queued the disk works at its pace, and the copy or ISO mastering that
    follows reads from memory. Only the headers (first 64 KiB) when the whole would not fit
    in a quarter of the memory: no point in reading what would be evicted before use.
    Best effort: errors are the parser's to report."""
    try:
        total = sum(p.stat().st_size for p in files)
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    length = 0 if total < memory // 4 else 65536
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, length, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def scan_sources(paths: Iterable[Path], profile: MediaProfile, *, compress: str | None = None,
                 workers: int | None = None) -> ScanResult:
    """Judge every source file against the profile; one accepted instance per SOP UID."""
    target = compress_target(compress, profile)
    result = ScanResult()
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            result.verdicts.append(Verdict(str(path), "rejected", "no such file or folder"))
        else:
            files.extend(iter_source_files([path]))
    method = _start_method()  # before our own prefetch thread starts
    threading.Thread(target=_prefetch, args=(files,), daemon=True).start()
    table = KeyTable()
    by_uid: dict[str, SourceInstance] = {}
    study_patient: dict[str, str] = {}
    series_study: dict[str, str] = {}
    def refuse(item: SourceInstance, status: str, reason: str) -> None:
        result.verdicts.append(Verdict(str(item.path), status, reason,
                                       sop_instance_uid=item.sop_instance_uid))

    for item in _scan_all(files, profile, target, workers, method):
        if isinstance(item, Rejection):
            result.verdicts.append(Verdict(str(item.path), "rejected", item.reason))
            continue
        table.unpack(item)
        first = by_uid.get(item.sop_instance_uid)
        if first is not None:
            if filecmp.cmp(first.path, item.path, shallow=False):
                refuse(item, "duplicate", f"identical to {first.path}, placed once")
            else:
                refuse(item, "rejected",
                       f"duplicate SOP Instance UID with other content than {first.path}")
            continue
        if study_patient.setdefault(item.study_uid, item.patient_id) != item.patient_id:
            refuse(item, "rejected", "Patient ID differs from other instances of the same study")
            continue
        if series_study.setdefault(item.series_uid, item.study_uid) != item.study_uid:
            refuse(item, "rejected", "series belongs to another study in other instances")
            continue
        by_uid[item.sop_instance_uid] = item
        result.instances.append(item)
    return result


# -- writing ----------------------------------------------------------------------------------

def default_fileset_id(now: dt.datetime | None = None) -> str:
    """MS + YYMMDDHHMMSS: unique enough per burner, and a valid ISO 9660 volume id."""
    return (now or dt.datetime.now()).strftime("MS%y%m%d%H%M%S")


def check_fileset_id(value: str) -> str:
    # PS3.3 F.3.2.1: File-set ID is CS, max 16 characters; PS3.12 wants it usable as the
    # ISO 9660 volume identifier too (d-characters).
    if not FILESET_ID_RE.fullmatch(value):
        raise UsageError(f"--fileset-id {value!r}: at most 16 characters of A-Z, 0-9, _ "
                         "and space")
    return value


def _prepare_out(out: Path) -> None:
    if (out / PARTIAL_MARKER).exists():
        # A previous export was interrupted (before its DICOMDIR, or before what a caller
        # adds after it, such as README.TXT): its files are ours to redo.
        shutil.rmtree(out / "DICOM", ignore_errors=True)
        (out / "DICOMDIR").unlink(missing_ok=True)
    elif (out / "DICOMDIR").exists():
        raise FileSetError(f"{out} already holds a file-set (DICOMDIR); use "
                           "`mediasvc fileset add` to add to it")
    elif out.exists() and any(out.iterdir()):
        raise FileSetError(f"{out} is not empty; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL_MARKER).touch()


def place_file(src: Path, dst: Path, link: str) -> bool:
    """Copy (or link) one file; True when it was hard-linked (no data written). The caller
    makes the tree durable before writing the DICOMDIR."""
    if link == "hardlink":
        try:
            os.link(src, dst)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    elif link == "reflink":
        try:
            with src.open("rb") as s, dst.open("wb") as d:
                fcntl.ioctl(d.fileno(), 0x40049409, s.fileno())  # FICLONE
            return False
        except OSError:
            dst.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    return False


def _do_transcode(job: tuple[Path, Path, str]) -> tuple[str | None, str]:
    """(failure reason or None, SOP Instance UID of the written file)."""
    src, dst, target = job
    try:
        return None, transcode(src, dst, target)
    except TranscodeError as exc:
        dst.unlink(missing_ok=True)
        return str(exc), ""


def _key_has_value(ds: Dataset, keyword: str) -> bool:
    tag = tag_for_keyword(keyword)
    return tag is not None and tag in ds and has_value(ds[tag])


_TEXT_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "UC")


def _merge_keys(insts: Sequence[SourceInstance], level: str, spec: list[tuple[str, str]]
                ) -> tuple[Dataset, list[str]]:
    """A record's keys from every instance below it; returns (record, keywords missing).
    Each key comes from the first instance that has a value for it ("if present in any
    object"); a text value taken from an instance in another character set than the record's
    is decoded, and re-encoded in the record's (PS3.3 C.12.1.1.2)."""
    rec = Dataset()
    missing: list[str] = []
    charset: tuple[str, ...] = ()
    # Instances with the same keys object (scan.KeyTable) decide alike: the first of each is
    # enough, in order.
    insts = list({id(inst.keys[level]): inst for inst in reversed(insts)}.values())[::-1]
    for inst in insts:
        elem = inst.keys[level].get("SpecificCharacterSet")
        if elem is not None:
            rec[elem.tag] = elem
            charset = inst.charset
            break
    for keyword, ktype in spec:
        chosen: KeyElement | None = None
        present: KeyElement | None = None
        source: SourceInstance | None = None
        for inst in insts:
            elem = inst.keys[level].get(keyword)
            if has_value(elem):
                chosen, source = elem, inst
                break
            if elem is not None and present is None:
                present = elem
        if chosen is not None:
            assert source is not None
            if (isinstance(chosen, RawDataElement) and source.charset != charset
                    and chosen.VR in _TEXT_VRS):
                chosen = convert_raw_data_element(chosen, encoding=list(source.charset) or None)
            rec[chosen.tag] = chosen
        elif ktype == "2":
            tag = tag_for_keyword(keyword)
            assert tag is not None
            vr = dictionary_VR(tag)
            rec[tag] = present if present is not None else DataElement(
                tag, vr, DicomSequence() if vr == "SQ" else None)
        elif ktype == "1":
            missing.append(keyword)
    drop_unneeded_charset(rec)
    return rec, missing


@dataclass
class Tree:
    """The records of a file-set being written or updated, indexed by entity.

    A Creator starts from an empty tree; an Updater from the records of the existing DICOMDIR,
    so that new instances join their existing patient, study and series records and their
    files go into the existing folders (nothing already on the medium moves).
    """

    roots: list[Node] = field(default_factory=list)
    patients: dict[str, Node] = field(default_factory=dict)  # by Patient ID
    studies: dict[str, Node] = field(default_factory=dict)  # by Study Instance UID
    series: dict[str, Node] = field(default_factory=dict)  # by Series Instance UID
    dirs: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    used_file_ids: list[tuple[str, ...]] = field(default_factory=list)
    # What finish() must make durable before the DICOMDIR: folders that got new entries, and
    # whether file data was written (copies) rather than only linked.
    new_dirs: set[tuple[str, ...]] = field(default_factory=set)
    wrote_data: bool = False


@dataclass
class _Group:
    """New instances of one entity, in input order, with their sub-entities."""

    key: str
    insts: list[SourceInstance] = field(default_factory=list)
    children: dict[str, _Group] = field(default_factory=dict)


def _instance_order(inst: SourceInstance) -> tuple[int, str]:
    return (inst.instance_number, str(inst.path))


def _invent(rec: Dataset, keyword: str, value: str, notes: list[str], entity: str) -> None:
    setattr(rec, keyword, value)
    notes.append(f"{entity}: {keyword} absent in every file; {value!r} written in the DICOMDIR")


def _patient_key(inst: SourceInstance) -> str:
    if inst.patient_id:
        return inst.patient_id
    name = inst.keys["PATIENT"].get("PatientName")
    return f"\\noid\\{name.value!r}" if name is not None else "\\noid\\"


def _entity_node(index: dict[str, Node], key: str, siblings: list[Node], rec: Dataset) -> Node:
    """The existing record of an entity (its missing keys filled in), or a new one."""
    node = index.get(key)
    if node is None:
        node = Node(rec)
        index[key] = node
        siblings.append(node)
    else:
        for elem in rec:
            if elem.tag not in node.record:
                node.record.add(elem)
    return node


def write_instances(tree: Tree, instances: Sequence[SourceInstance], out: Path,
                    profile: MediaProfile, result: FileSetResult, *, link: str = "copy",
                    workers: int | None = None,
                    before_copy: Callable[[list[tuple[str, ...]]], None] | None = None
                    ) -> None:
    """Place new instances under out/DICOM/ and add their records to ``tree``.
    ``before_copy`` is told the File IDs about to be written (an Updater journals them)."""
    patients: dict[str, _Group] = {}
    singles: list[SourceInstance] = []
    for inst in instances:
        if inst.single_level:
            singles.append(inst)
            continue
        pkey = _patient_key(inst)
        pg = patients.setdefault(pkey, _Group(pkey))
        sg = pg.children.setdefault(inst.study_uid, _Group(inst.study_uid))
        sg.children.setdefault(inst.series_uid, _Group(inst.series_uid)).insts.append(inst)
        for g in (pg, sg):
            g.insts.append(inst)

    alloc = FileIdAllocator(tree.used_file_ids)
    jobs: list[tuple[SourceInstance, tuple[str, ...]]] = []
    for pkey, pg in patients.items():
        pdir = alloc.directory(("P", pkey), ("DICOM",), "PA", tree.dirs.get(("P", pkey)))
        for suid, sg in pg.children.items():
            sdir = alloc.directory(("S", suid), pdir, "ST", tree.dirs.get(("S", suid)))
            for ruid, rg in sg.children.items():
                # Readers show instances in record order: sort by Instance Number.
                rg.insts.sort(key=_instance_order)
                rdir = alloc.directory(("R", ruid), sdir, "SE", tree.dirs.get(("R", ruid)))
                jobs += [(inst, alloc.file(rdir)) for inst in rg.insts]
    jobs += [(inst, alloc.file(("DICOM", "OTHER"))) for inst in singles]
    if before_copy is not None:
        before_copy([comps for _, comps in jobs])
    mapping = link == "map"
    # With "map" only transcoded files are written here: only their folders are made.
    for folder in {comps[:-1] for i, comps in jobs
                   if not mapping or i.target_transfer_syntax}:
        out.joinpath(*folder).mkdir(parents=True, exist_ok=True)
        tree.new_dirs.update(folder[:n] for n in range(1, len(folder) + 1))

    if mapping:
        result.mapped.update((c, i.path) for i, c in jobs if not i.target_transfer_syntax)
    # Copy (threads: the kernel does the work) and transcode (processes: pydicom does).
    copies = [] if mapping else [(i.path, out.joinpath(*c), link) for i, c in jobs
                                 if not i.target_transfer_syntax]
    converts = [(i.path, out.joinpath(*c), str(i.target_transfer_syntax))
                for i, c in jobs if i.target_transfer_syntax]
    # Small files copy fastest one after the other (sendfile does the work; threads only
    # contend for the GIL); large ones gain from overlapping I/O.
    big = copies and sum(src.stat().st_size for src, _, _ in copies[:50]) > 50 * 256_000
    try:
        linked = _map(lambda job: place_file(*job), copies, workers if big else 1,
                      processes=False)
        tree.wrote_data = tree.wrote_data or not all(linked)
    except OSError as exc:
        raise FileSetError(f"cannot write into {out}: {exc.strerror} ({exc.filename})") from exc
    failures = dict(zip([c[0] for c in converts], _map(_do_transcode, converts, workers),
                        strict=True))
    file_ids: dict[str, tuple[str, ...]] = {}
    for inst, comps in jobs:
        failure, new_uid = failures.get(inst.path, (None, ""))
        if new_uid and new_uid != inst.sop_instance_uid:
            inst.notes.append(f"lossy compression: new SOP Instance UID {new_uid} "
                              f"(was {inst.sop_instance_uid})")
            inst.sop_instance_uid = new_uid
        if failure:
            result.verdicts.append(Verdict(str(inst.path), "rejected", failure,
                                           sop_instance_uid=inst.sop_instance_uid))
        else:
            file_ids[inst.sop_instance_uid] = comps

    def placed(insts: Iterable[SourceInstance]) -> list[SourceInstance]:
        return [i for i in insts if i.sop_instance_uid in file_ids]

    leaves: list[tuple[list[Node], SourceInstance, int]] = []
    for pkey, pg in patients.items():
        p_insts = placed(pg.insts)
        if not p_insts:
            continue
        prec, _ = _merge_keys(p_insts, "PATIENT", key_spec(profile, "PATIENT"))
        prec.DirectoryRecordType = "PATIENT"
        if pkey not in tree.patients and not _key_has_value(prec, "PatientID"):
            n = 1 + sum(1 for k in tree.patients if k.startswith(("\\noid\\", "NOID")))
            _invent(prec, "PatientID", f"NOID{n:04d}", result.notes, f"patient #{n}")
        pnode = _entity_node(tree.patients, pkey, tree.roots, prec)
        for suid, sg in pg.children.items():
            st_insts = placed(sg.insts)
            if not st_insts:
                continue
            srec, missing = _merge_keys(st_insts, "STUDY", key_spec(profile, "STUDY"))
            srec.DirectoryRecordType = "STUDY"
            srec.StudyInstanceUID = suid
            if suid not in tree.studies:
                for kw in missing:
                    default = {"StudyID": str(len(pnode.children) + 1),
                               "StudyDate": dt.date.today().strftime("%Y%m%d"),
                               "StudyTime": "000000"}.get(kw)
                    if default is None:
                        _reject_all(result, st_insts, file_ids,
                                    f"no instance of the study has {kw}, which "
                                    f"{profile.id} requires")
                        break
                    _invent(srec, kw, default, result.notes, f"study {suid}")
            snode = _entity_node(tree.studies, suid, pnode.children, srec)
            for ruid, rg in sg.children.items():
                se_insts = placed(rg.insts)
                if not se_insts:
                    continue
                rrec, missing = _merge_keys(se_insts, "SERIES", key_spec(profile, "SERIES"))
                rrec.DirectoryRecordType = "SERIES"
                if ruid not in tree.series:
                    for kw in missing:
                        if kw == "SeriesNumber":
                            _invent(rrec, kw, str(len(snode.children) + 1), result.notes,
                                    f"series {ruid}")
                        else:
                            _reject_all(result, se_insts, file_ids,
                                        f"no instance of the series has {kw}, which "
                                        f"{profile.id} requires")
                            break
                se_insts = placed(se_insts)
                if not se_insts:
                    continue
                if profile.icon_series != "none":
                    icons = [i.icon for i in se_insts if i.icon is not None]
                    if icons:
                        rrec.IconImageSequence = DicomSequence([icons[len(icons) // 2]])
                rnode = _entity_node(tree.series, ruid, snode.children, rrec)
                first = len(rnode.children) + 1
                for n, inst in enumerate(se_insts, first):
                    leaves.append((rnode.children, inst, n))
    leaves += [(tree.roots, inst, 1) for inst in placed(singles)]
    # Leaf records were encoded by the scan workers: add the File ID (and what else was
    # decided here) to their bytes.
    for siblings, inst, n in leaves:
        assert inst.leaf is not None
        refs = None
        if inst.notes and inst.notes[0].startswith("lossy compression"):
            refs = encode_refs(inst.sop_class_uid, inst.sop_instance_uid,
                               inst.target_transfer_syntax or inst.transfer_syntax_uid)
        if inst.leaf.number_at >= 0:
            inst.notes.append(f"InstanceNumber absent; {n} written in the DICOMDIR")
        siblings.append(Node(_ENCODED, body=inst.leaf.body(file_ids[inst.sop_instance_uid],
                                                           n, refs)))
    # Drop records left without children (all their instances rejected).
    tree.roots[:] = [r for r in tree.roots if _prune(r)]

    for inst, comps in jobs:
        if inst.sop_instance_uid not in file_ids:
            # Files of rejected entities were written already: take them off the medium.
            out.joinpath(*comps).unlink(missing_ok=True)
            result.mapped.pop(comps, None)
            continue
        tree.used_file_ids.append(comps)
        extra = "; ".join(inst.notes)
        if inst.target_transfer_syntax:
            status = "transcoded"
            reason = (f"{ts_name(inst.transfer_syntax_uid)} -> "
                      f"{UID(inst.target_transfer_syntax).name}")
        else:
            status, reason = "placed", ""
        if extra:
            reason = f"{reason}; {extra}" if reason else extra
        result.verdicts.append(Verdict(str(inst.path), status, reason, "\\".join(comps),
                                       inst.sop_instance_uid))
        result.bytes_written += result.mapped.get(comps, out.joinpath(*comps)).stat().st_size


def _prune(node: Node) -> bool:
    """Keep a record if it references a file or still has children after pruning."""
    if node.body is not None or "ReferencedFileID" in node.record:
        return True
    node.children[:] = [c for c in node.children if _prune(c)]
    return bool(node.children)


def finish(out: Path, tree: Tree, fileset_id: str, media_uid: str | None = None) -> None:
    """Sync the files, then write the DICOMDIR that references them (atomically)."""
    if not tree.roots:
        raise FileSetError("nothing to write: every input was rejected")
    # Every file must be on disk before the DICOMDIR that references it (PS3.10 7.1: the
    # DICOMDIR is the file-set's table of contents; a crash must not leave it pointing at
    # missing data). Copied data: one syncfs of the output's file system, far cheaper than
    # an fsync per file (transcoded files were fsynced as written). Hard links write no
    # data: the folders holding them are fsynced, deepest first, and that is all.
    if tree.wrote_data and not syncfs(out):
        os.sync()
    for folder in sorted(tree.new_dirs, key=len, reverse=True):
        fsync_dir(out.joinpath(*folder))
    tree.new_dirs.clear()
    tree.wrote_data = False
    write_dicomdir(out / "DICOMDIR", tree.roots, fileset_id, media_sop_instance_uid=media_uid)


def write_fileset(instances: Sequence[SourceInstance], out: Path, profile: MediaProfile, *,
                  fileset_id: str | None = None, link: str = "copy",
                  workers: int | None = None, complete: bool = True) -> FileSetResult:
    """Place the instances under out/DICOM/ and write out/DICOMDIR (last, atomically).
    ``complete=False`` leaves the PARTIAL_MARKER for a caller that adds more to the volume
    (README.TXT, INDEX.HTM) and removes it when done: a crash before then is redone."""
    fsid = check_fileset_id(fileset_id) if fileset_id else default_fileset_id()
    result = FileSetResult(root=out, fileset_id=fsid, profile=profile.id)
    if not instances:
        raise FileSetError("nothing to write: no input file was accepted")
    _prepare_out(out)
    tree = Tree()
    with unvalidated():
        write_instances(tree, instances, out, profile, result, link=link, workers=workers)
    finish(out, tree, fsid)
    if complete:
        (out / PARTIAL_MARKER).unlink(missing_ok=True)
    log.info("file-set %s written to %s: %d instances", fsid, out,
             result.count("placed") + result.count("transcoded"))
    return result


def _reject_all(result: FileSetResult, insts: Iterable[SourceInstance],
                file_ids: dict[str, tuple[str, ...]], reason: str) -> None:
    for inst in insts:
        if inst.sop_instance_uid in file_ids:
            del file_ids[inst.sop_instance_uid]
            result.verdicts.append(Verdict(str(inst.path), "rejected", reason,
                                           sop_instance_uid=inst.sop_instance_uid))


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
