"""Media import (File-set Reader role, PS3.10 section 7.1): medium -> local store.

For each instance the File-set Reader lists (through the DICOMDIR, or by scanning the medium
when there is none or it is unusable), the file is read once into memory, parsed, checked
against the store (deduplication by SOP Instance UID), optionally coerced to the local patient
identity (reconcile.py), its minimum data set extracted, and written content-addressed
(files.py); rows are committed in batches after their files are durable (index.py).

Outcome per instance: imported, duplicate (same bytes already stored, skipped), conflict
(same SOP Instance UID, other content: kept as a second copy, flagged), rejected (read but not
usable, with the reason); per reference: missing, refused (unsafe path), unreadable (read
error: a damaged disc). The import is *complete* only when every referenced file was read.

Large media are read by worker processes (header parse, checks, SHA-256, MDS and the copy to
its content address are CPU-bound Python), a few files per task; the main process decides
duplicate/conflict, applies reconciliation and commits, in the medium's order.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import logging
import multiprocessing
import os
import signal
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mediasvc.errors import FileSetError, InputError, StoreError
from mediasvc.fileset.reader import DirRecord, read_fileset, walk_regular_files
from mediasvc.store import files, isoread
from mediasvc.store.index import INDEX, NewInstance, Store
from mediasvc.store.mds import extract_instance
from mediasvc.store.mds_def import load_definition
from mediasvc.store.reconcile import Reconciler
from mediasvc.store.valuecache import ValueCache, element

log = logging.getLogger(__name__)

# Media Storage Directory Storage (PS3.6 Annex A): a DICOMDIR (Basic Directory IOD, PS3.3 F)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
BATCH = 256                # files per durable batch and transaction
BATCH_BYTES = 128 << 20    # ... or this many bytes
BATCH_SECONDS = 1.0        # ... or at least once a second, so that a kill loses little work
PARALLEL_MIN = 64          # fewer files than this: examined in-process (no worker start-up)
CHUNK = 8                  # files per worker task: fewer round trips between processes
IN_FLIGHT = 6              # tasks read ahead by the workers (a bounded window: flat memory)
EARLY = 512                # files read while the DICOMDIR is still being parsed (see _Examiner)
EARLY_MAX_FILE = 32 << 20  # ... none larger (a big file nobody references: a long read
EARLY_MAX_BYTES = 256 << 20  # from a slow disc), and not more than this in all

IMPORTED, DUPLICATE, CONFLICT, REJECTED = "imported", "duplicate", "conflict", "rejected"
MISSING, REFUSED, UNREADABLE = "missing", "refused", "unreadable"
NOT_READ = (MISSING, REFUSED, UNREADABLE)

Progress = Callable[[int, int], None]


@dataclass
class Outcome:
    source: str            # File ID / path on the medium
    status: str
    reason: str = ""
    sop_instance_uid: str = ""
    instance_id: int | None = None   # store row (imported, conflict, or the duplicate's row)


@dataclass
class ImportReport:
    media: str
    store: str
    medium_label: str = ""
    fileset_id: str = ""
    method: str = ""
    import_id: int | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (IMPORTED, DUPLICATE, CONFLICT, REJECTED, *NOT_READ)}
        for o in self.outcomes:
            out[o.status] += 1
        return out

    @property
    def complete(self) -> bool:
        """Every referenced file was read (rejections do not make it incomplete)."""
        return not any(o.status in NOT_READ for o in self.outcomes)

    @property
    def clean(self) -> bool:
        """Complete, nothing rejected or in conflict, and the medium held something at all."""
        return bool(self.outcomes) and self.complete and not any(
            o.status in (REJECTED, CONFLICT) for o in self.outcomes)

    def instance_ids(self) -> list[int]:
        """Store rows of every instance the medium holds (imported, conflict, duplicate)."""
        return [o.instance_id for o in self.outcomes if o.instance_id is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"media": self.media, "store": self.store, "medium_label": self.medium_label,
                "fileset_id": self.fileset_id, "method": self.method,
                "import_id": self.import_id, "complete": self.complete,
                "counts": self.counts(), "problems": self.problems,
                "instances": [asdict(o) for o in self.outcomes]}


# -- the File-set Reader -------------------------------------------------------------------

@dataclass
class Listing:
    method: str
    fileset_id: str
    problems: list[str]
    leaves: list[DirRecord]


def read_listing(root: Path) -> Listing:
    """The files the medium references, via the File-set Reader (DICOMDIR, else a scan)."""
    try:
        listing = read_fileset(root, scan_fallback=True)
    except FileSetError as exc:
        raise InputError(root, str(exc)) from exc
    return Listing(method=listing.method, fileset_id=listing.fileset_id or "",
                   problems=list(listing.problems), leaves=list(listing.leaves()))


def _show(file_id: Any, path: Path | None, root: Path) -> str:
    if isinstance(file_id, (tuple, list)) and file_id:
        return "/".join(str(c) for c in file_id)
    if file_id:
        return str(file_id)
    if path is not None:
        with contextlib.suppress(ValueError):
            return path.relative_to(root).as_posix()
    return str(path)


def _not_read_status(problem: str) -> str:
    """Classify the reader's DirRecord.problem (fileset/reader.py wording)."""
    text = problem.lower()
    if any(w in text for w in ("outside", "leave", "not opened", "unsafe", "symlink")):
        return REFUSED
    if any(w in text for w in ("cannot be reached", "i/o", "input/output", "permission")):
        return UNREADABLE
    return MISSING


# -- the minimum data set ---------------------------------------------------------------------

def mds_extractor() -> Callable[[Dataset], dict[str, Any]]:
    """Per-instance MDS extraction (mediasvc.store.mds), the definition loaded once."""
    definition = load_definition()

    def extract(ds: Dataset) -> dict[str, Any]:
        return dict(extract_instance(ds, definition))

    return extract


# -- import ---------------------------------------------------------------------------------

@dataclass
class _Pending:
    item: NewInstance
    outcome: Outcome
    path: Path    # the file at its content address
    owned: bool   # written for this item (not found there already)


class _Batch:
    """Files and their rows, made durable and committed batch by batch, in order.

    Per batch: the files are already at their content addresses (written by whoever read
    them, files.write_object); one flush to disk of contents and names - done by a thread, so
    that the disk works while the next batch is read and parsed - and only when that has
    finished, one transaction for the batch's rows (on the calling thread, which owns the
    SQLite connection). A kill at any moment leaves files without rows, which recovery
    removes (index.py).
    """

    def __init__(self, store: Store, import_id: int, label: str, fileset_id: str,
                 volume: str) -> None:
        self.store, self.import_id = store, import_id
        self.label, self.fileset_id, self.volume = label, fileset_id, volume
        self.pending: list[_Pending] = []
        self.inflight: tuple[list[_Pending], Future[None]] | None = None
        self.by_sop: dict[str, list[tuple[str, str, _Pending]]] = {}
        self.disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-sync")
        self.bytes = 0
        self.since = time.monotonic()
        self.checksums: set[str] = set()   # the files this import's rows name

    def put(self, path: Path, owned: bool, item: NewInstance, outcome: Outcome) -> None:
        p = _Pending(item, outcome, path, owned)
        self.pending.append(p)
        self.bytes += item.size
        self.by_sop.setdefault(item.sop_uid, []).append((item.checksum, item.source_checksum, p))
        self.checksums.add(item.checksum)
        if (len(self.pending) >= BATCH or self.bytes >= BATCH_BYTES
                or time.monotonic() - self.since > BATCH_SECONDS):
            self._rotate()

    def _durable(self, batch: list[_Pending]) -> None:
        files.make_durable(self.store.root, [p.path for p in batch])

    def _commit_inflight(self) -> None:
        if self.inflight is None:
            return
        batch, fut = self.inflight
        self.inflight = None
        fut.result()   # every file of the batch is durable under its final name
        ids = self.store.add([p.item for p in batch], import_id=self.import_id,
                             medium_label=self.label, fileset_id=self.fileset_id,
                             volume=self.volume)
        for p, row_id in zip(batch, ids, strict=True):
            p.outcome.instance_id = row_id
        done = {id(p) for p in batch}
        for sop in list(self.by_sop):
            left = [e for e in self.by_sop[sop] if id(e[2]) not in done]
            if left:
                self.by_sop[sop] = left
            else:
                del self.by_sop[sop]

    def _rotate(self) -> None:
        self._commit_inflight()
        if self.pending:
            batch, self.pending = self.pending, []
            self.inflight = (batch, self.disk.submit(self._durable, batch))
        self.bytes = 0
        self.since = time.monotonic()

    def flush(self) -> None:
        """Everything put so far durable and committed."""
        self._rotate()
        self._commit_inflight()

    def close(self) -> None:
        """Stop; what is not committed stays for recovery (orphans under objects/)."""
        if self.inflight is not None:
            with contextlib.suppress(Exception):
                self.inflight[1].result()
        self.disk.shutdown(wait=True)
        for p in self.pending:
            if p.owned:   # no row has it: written for this item alone
                with contextlib.suppress(OSError):
                    p.path.unlink()
        self.pending.clear()


def import_media(store: Store, media: Path, *, reconciler: Reconciler | None = None,
                 label: str | None = None, progress: Progress | None = None) -> ImportReport:
    """Import every instance of ``media`` (folder, ISO image or block device) into ``store``."""
    media = Path(media)
    if not media.exists():
        raise InputError(media, "no such folder, image or device")
    if media.is_file() and media.name.upper() == "DICOMDIR":
        media = media.parent   # the DICOMDIR of a mounted medium: read the medium
    report = ImportReport(media=str(media.absolute()), store=str(store.root))
    with store.writing():
        if isoread.is_image(media):
            with isoread.extracted(media, store.root / files.TMP) as ex:
                report.problems += [f"reading the image: {p}" for p in ex.problems]
                _import_tree(store, ex.root, report, label or ex.volume_id or media.name,
                             str(media.absolute()), reconciler, progress, extracted=True)
        elif media.is_dir():
            _import_tree(store, media, report, label or media.absolute().name,
                         str(media.absolute()), reconciler, progress)
        else:
            raise InputError(media, "not a folder, an ISO image file or a block device")
    return report


def _import_tree(store: Store, root: Path, report: ImportReport, label: str, volume: str,
                 reconciler: Reconciler | None, progress: Progress | None,
                 extracted: bool = False) -> None:
    """``extracted``: ``root`` is an image extracted under the store's tmp/, whose files are
    ours to link into place rather than copy."""
    examiner = _Examiner(store.root, lock_fd=store.lock_fd, link=extracted)
    batch: _Batch | None = None
    try:
        examiner.start_early(_early_candidates(root, EARLY))
        listing = read_listing(root)
        report.method, report.fileset_id = listing.method, listing.fileset_id
        report.medium_label = label
        report.problems += listing.problems
        import_id = store.begin_import(report.media, label, listing.fileset_id,
                                       listing.method)
        report.import_id = import_id
        examined = examiner.examine_all(
            [str(leaf.path) for leaf in listing.leaves if leaf.path is not None])
        batch = _Batch(store, import_id, label, listing.fileset_id, volume)
        total = len(listing.leaves)
        for n, leaf in enumerate(listing.leaves, start=1):
            source = _show(leaf.file_id, leaf.path, root)
            outcome = Outcome(source, IMPORTED)
            report.outcomes.append(outcome)
            if leaf.path is None:
                outcome.reason = str(leaf.problem or "referenced file not found")
                outcome.status = _not_read_status(outcome.reason)
            else:
                _import_one(store, next(examined), outcome, batch, reconciler)
            if progress is not None:
                progress(n, total)
        batch.flush()
        store.finish_import(import_id, report.complete, report.counts())
    finally:
        examiner.drop_unused(batch.checksums if batch is not None else set())
        examiner.close()
        if batch is not None:
            batch.close()


# -- reading and examining files (in worker processes for large media) ------------------------

@dataclass
class Examined:
    """One file read and parsed: its bytes, index values, MDS; or why it is not usable."""

    path: str
    status: str = ""            # "": usable; else REJECTED or UNREADABLE
    reason: str = ""
    stored: str = ""            # its bytes at their content address ("": the store had them)
    wrote: bool = False         # ... put there by this examination (not found there already)
    size: int = 0
    source_sum: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    mds: dict[str, Any] = field(default_factory=dict)


_EXTRACT: Callable[[Dataset], dict[str, Any]] | None = None
_VALUES = ValueCache()   # per process: conversions shared by the instances of a series


def _extract_mds(ds: Dataset, path: str) -> dict[str, Any]:
    global _EXTRACT
    if _EXTRACT is None:
        _EXTRACT = mds_extractor()
    try:
        return _EXTRACT(ds)
    except Exception as exc:  # one odd file must not stop the import; its MDS stays empty
        log.warning("%s: minimum data set not extracted: %s", path, exc)
        return {}


def _known_sums(root: Path, sop_uid: str) -> set[str]:
    """Checksums already stored under ``sop_uid`` (a read-only look, so that a duplicate is
    not even copied; the importer decides again with its own connection)."""
    global _DB
    if _DB is None or _DB[0] != str(root):
        if _DB is not None:
            _DB[1].close()
        _DB = (str(root), sqlite3.connect(f"file:{root / INDEX}?mode=ro", uri=True,
                                          timeout=30.0))
    rows = _DB[1].execute("SELECT checksum, source_checksum FROM instances WHERE sop_uid=?",
                       (sop_uid,)).fetchall()
    return {str(v) for row in rows for v in row}


_DB: tuple[str, sqlite3.Connection] | None = None   # (store root, read-only connection)


def examine(path: str, root: Path, link: bool = False) -> Examined:
    """Read ``path`` once: parse its header, check it, hash it, extract its MDS, and put it at
    its content address under ``root`` unless the store holds these bytes already (``link``:
    by a hard link to ``path``, a file of an extracted image, instead of a copy)."""
    ex = Examined(path)
    try:
        data = _READ.read(path)
    except OSError as exc:
        ex.status, ex.reason = UNREADABLE, f"read error: {exc.strerror or exc}"
        return ex
    try:
        ds, header_end = _parse_header(data)
    except InvalidDicomError as exc:
        ex.status, ex.reason = REJECTED, f"not a DICOM file: {exc}"
        return ex
    except Exception as exc:  # pydicom raises many kinds on damaged input
        ex.status, ex.reason = REJECTED, f"cannot be parsed: {type(exc).__name__}: {exc}"
        return ex
    misses = _VALUES.seed(ds)
    ex.reason = _unusable(ds) or _truncated(ds, len(data) - header_end)
    if ex.reason:
        ex.status = REJECTED
        return ex
    ex.source_sum = hashlib.sha256(data).hexdigest()
    ex.size = len(data)
    ex.header = _header(ds)
    if ex.source_sum not in _known_sums(root, ex.header["sop_uid"]):
        ex.wrote = files.write_object(root, data, ex.source_sum,
                                      link_from=Path(path) if link else None)
        ex.stored = str(root / files.object_relpath(ex.source_sum))
        ex.mds = _extract_mds(ds, path)
    _VALUES.learn(ds, misses)
    return ex


_READ = files.ReadBuffer()   # per process: every file is read into it (files.write_object)
HEAD = 64 << 10              # bytes parsed first: the header of most images ends well before


def _parse_header(data: memoryview) -> tuple[Dataset, int]:
    """The header only (up to the Pixel Data element), and where it ends. Parsing the pixel
    data would copy it for nothing (pydicom does not check its length either, _truncated()
    does); so is handing pydicom the whole file: it is parsed from a copy of its first HEAD
    bytes, and again from the whole file only when the header may go on past them (no pixel
    data before HEAD: a long header, or no pixel data at all) or the cut made it fail."""
    if len(data) > HEAD:
        buf = io.BytesIO(bytes(data[:HEAD]))
        with contextlib.suppress(Exception):
            ds = pydicom.dcmread(buf, stop_before_pixels=True)
            if buf.tell() < HEAD:   # stopped at the Pixel Data element, inside the head
                return ds, buf.tell()
    buf = io.BytesIO(bytes(data))
    return pydicom.dcmread(buf, stop_before_pixels=True), buf.tell()


def examine_many(paths: list[str], root: Path, link: bool = False) -> list[Examined]:
    """One worker task: a few files, one round trip."""
    return [examine(p, root, link) for p in paths]


def _worker_init(lock_fd: int | None) -> None:
    """In a worker: let go of the store's writer lock when forked from the importer (an flock
    is shared by every copy of its descriptor: a worker outliving a killed import would keep
    the store locked; ``lock_fd`` is None from a fork server, which has none of our
    descriptors), and die with the parent (PR_SET_PDEATHSIG, Linux) rather than linger after
    a SIGKILL (the fork server's parent is the importer: it exits when the importer dies)."""
    global _DB
    _DB = None   # a SQLite connection must not cross a fork: the worker opens its own
    if lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(lock_fd)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:   # the parent died before prctl took effect
            os._exit(1)


def start_method() -> str:
    """How the examiner's workers start: ``fork`` when this process runs one thread only (a
    forked child gets a copy of every lock, held or not, but no other thread to release
    them), ``forkserver`` otherwise."""
    return "fork" if threading.active_count() == 1 else "forkserver"


DEATH_WAIT = 5.0  # seconds, at most, for the exit codes of dead workers


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _early_candidates(root: Path, limit: int) -> list[str]:
    """Files the DICOMDIR will most likely reference, for reading while it is parsed: the
    reader's safe walk (fileset/reader.walk_regular_files: regular files only, no FIFO or
    device opened, no folder link descended), less symbolic links, files whose name has a dot
    (PS3.10 8.2: a File ID component is upper-case letters, digits and underscores, so
    README.TXT, a viewer's .EXE and .DLL files and INDEX.HTM are left alone), the DICOMDIR
    itself and files over EARLY_MAX_FILE; in walk order, at most ``limit`` files and
    EARLY_MAX_BYTES."""
    found: list[str] = []
    total = 0
    for path, refused in walk_regular_files(root):
        if len(found) >= limit:
            break
        if refused or "." in path.name or path.name.upper() == "DICOMDIR":
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (stat.S_ISREG(st.st_mode) and st.st_size <= EARLY_MAX_FILE
                and total + st.st_size <= EARLY_MAX_BYTES):
            found.append(str(path))
            total += st.st_size
    return found


class _Examiner:
    """``examine`` the files of a medium, in worker processes for large media (parsing and
    MDS extraction are CPU-bound Python: threads would share one core), CHUNK files per task.

    Reading starts before the DICOMDIR is parsed (:meth:`start_early`): parsing a 2,000-record
    DICOMDIR takes a quarter of a second or more on one core, while the other core would
    wait. Files that look like File IDs are read meanwhile; :meth:`examine_all` then takes
    the results of those the DICOMDIR does reference, and :meth:`drop_unused` removes what
    the others put into the store. The worker processes start once, at the first submit
    (:func:`start_method`): forked when the caller is single-threaded (the CLI: no second
    interpreter start, the parsed modules shared), from a fork server otherwise (``mediasvc
    serve`` runs threads: a fork copies locks that another thread may hold - logging's, an
    allocator's, SQLite's - and a worker would wait on them for ever). A worker that dies
    (killed, out of memory) ends the import with a StoreError that says so.
    """

    def __init__(self, root: Path, *, lock_fd: int | None = None, link: bool = False,
                 workers: int | None = None) -> None:
        self.root, self.lock_fd, self.link = root, lock_fd, link
        # One more worker than CPUs: a worker writing by direct I/O waits for the device
        # (measured, 2 CPUs: 3 workers 2.33-2.46 s for 1 GB, 2 workers 2.53-2.75 s).
        self.workers = workers if workers is not None else int(
            os.environ.get("MEDIASVC_IMPORT_WORKERS", (os.cpu_count() or 1) + 1))
        self.pool: ProcessPoolExecutor | None = None
        self.early: dict[str, tuple[Future[list[Examined]], int]] = {}   # path -> task, index
        self.procs: dict[int, Any] = {}   # pid -> multiprocessing Process of the pool

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            method = start_method()
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                # The server imports this module (pydicom with it) once; every worker it
                # forks has it. Takes effect when the process's fork server starts.
                ctx.set_forkserver_preload([__name__])
            # A fork-server worker has none of our descriptors: closing lock_fd's number
            # there would close one of its own.
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_worker_init,
                initargs=(self.lock_fd if method == "fork" else None,))
        return self.pool

    def _submit(self, chunk: list[str]) -> Future[list[Examined]]:
        try:
            fut = self._pool().submit(examine_many, chunk, self.root, self.link)
        except BrokenProcessPool as exc:
            raise self._died(exc) from exc
        # Kept to say how a worker died: a broken pool forgets its processes.
        self.procs.update(getattr(self.pool, "_processes", None) or {})
        return fut

    def _result(self, fut: Future[list[Examined]], k: int) -> Examined:
        try:
            return fut.result()[k]
        except BrokenProcessPool as exc:
            raise self._died(exc) from exc

    def _died(self, exc: BaseException) -> StoreError:
        """What to tell the user when a worker process ended abruptly (the pool is broken:
        every file still queued is lost, so the import stops; what was committed stays)."""
        # The pool reports itself broken as soon as a worker's pipe closes, which can be
        # before the dead process is reaped (its exit code still None): wait for the exit
        # codes a moment (the broken pool ends the other workers itself).
        deadline = time.monotonic() + DEATH_WAIT
        for proc in self.procs.values():
            if proc.exitcode is None:
                proc.join(max(0.0, deadline - time.monotonic()))
        codes = sorted({code for p in self.procs.values()
                        if (code := p.exitcode) not in (None, 0)})
        if any(c != -signal.SIGTERM for c in codes):  # SIGTERM: the broken pool's own doing
            codes = [c for c in codes if c != -signal.SIGTERM]
        how = ", ".join(_exit_text(c) for c in codes) or "ended abruptly"
        return StoreError(
            f"{self.root}: an import worker process died ({how}) while reading the medium; "
            f"the import stopped, instances committed so far stay in the store (is memory "
            f"short? see the system log) - run the import again to complete it")

    def start_early(self, paths: list[str]) -> None:
        if self.workers <= 1 or len(paths) < PARALLEL_MIN:
            return
        for i in range(0, len(paths), CHUNK):
            chunk = paths[i:i + CHUNK]
            fut = self._submit(chunk)
            for k, p in enumerate(chunk):
                self.early[p] = (fut, k)

    def examine_all(self, paths: list[str]) -> Generator[Examined, None, None]:
        """``examine`` every path, in order; a bounded window of tasks in flight (besides
        the early ones) keeps memory flat."""
        wanted = set(paths)
        needed = {id(fut) for p, (fut, _) in self.early.items() if p in wanted}
        for fut, _ in self.early.values():
            if id(fut) not in needed:
                fut.cancel()   # none of its files wanted, not started: never read
        if self.pool is None and (self.workers <= 1 or len(paths) < PARALLEL_MIN):
            for p in paths:
                yield examine(p, self.root, self.link)
            return
        todo = [p for p in paths if p not in self.early]
        chunks = (todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK))
        late: dict[str, tuple[Future[list[Examined]], int]] = {}
        window: deque[Future[list[Examined]]] = deque()

        def top_up() -> None:
            while len(window) < IN_FLIGHT:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                fut = self._submit(chunk)
                window.append(fut)
                for k, p in enumerate(chunk):
                    late[p] = (fut, k)

        top_up()
        for p in paths:
            # Taken out as used, so that results do not pile up in memory; a path listed
            # twice (a broken DICOMDIR) is found in neither the second time: read here.
            entry = self.early.pop(p, None) or late.pop(p, None)
            result = examine(p, self.root, self.link) if entry is None else (
                self._result(*entry))
            while window and window[0].done():
                window.popleft()
            top_up()
            yield result

    def drop_unused(self, used: set[str]) -> None:
        """Files read early and not asked for (waiting for the tasks that had started): what
        they put into the store goes, unless a row of this import names it (``used``, the
        checksums its rows name). No other row can: before write_object created a file, no
        row named it (rows imply their files), and the store has one writer at a time."""
        for fut, k in self.early.values():
            if fut.cancel():
                continue
            with contextlib.suppress(Exception):
                ex = fut.result()[k]
                if ex.wrote and ex.source_sum not in used:
                    os.unlink(ex.stored)
        self.early.clear()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _import_one(store: Store, ex: Examined, outcome: Outcome, batch: _Batch,
                reconciler: Reconciler | None) -> None:
    if ex.status:
        outcome.status, outcome.reason = ex.status, ex.reason
        return
    unused = _decide(store, ex, outcome, batch, reconciler)
    if unused is not None:   # written for this file, then not needed (a duplicate after all)
        with contextlib.suppress(OSError):
            unused.unlink()


def _decide(store: Store, ex: Examined, outcome: Outcome, batch: _Batch,
            reconciler: Reconciler | None) -> Path | None:
    """Classify one examined file and hand its stored copy to the batch; returns a file that
    was written for it and is not used."""
    sop = str(ex.header["sop_uid"])
    outcome.sop_instance_uid = sop
    own = Path(ex.stored) if ex.wrote else None
    known = store.known(sop)
    in_batch = batch.by_sop.get(sop, [])
    # A duplicate's copy is not needed, unless it is the very file the row it duplicates
    # has (same bytes, same address: another file of this medium found it already written).
    for rid, c, s in known:
        if ex.source_sum in (c, s):
            outcome.status, outcome.instance_id = DUPLICATE, rid
            return own if c != ex.source_sum else None
    for c, s, p in in_batch:
        if ex.source_sum in (c, s):
            outcome.status = DUPLICATE
            batch.flush()   # so that the duplicate can name the row it duplicates
            outcome.instance_id = p.outcome.instance_id
            return own if c != ex.source_sum else None
    if not ex.stored:   # the worker saw these bytes stored; the store no longer has them
        examined = examine(ex.path, store.root)
        if examined.status or not examined.stored:
            outcome.status, outcome.reason = REJECTED, examined.reason or "changed while read"
            return None
        ex = examined
        own = Path(ex.stored) if ex.wrote else None
    path, owned = Path(ex.stored), ex.wrote
    checksum, header, mds, size = ex.source_sum, ex.header, ex.mds, ex.size
    if reconciler is not None and reconciler.active:
        # Re-encode the whole file: the coerced header, the pixel data as it was.
        full = pydicom.dcmread(path)
        if reconciler.apply(full, source=str(full.get("InstitutionName", "") or "")):
            out = io.BytesIO()
            pydicom.dcmwrite(out, full, enforce_file_format=True)
            data = out.getvalue()
            checksum, size = hashlib.sha256(data).hexdigest(), len(data)
            header, mds = _header(full), _extract_mds(full, ex.path)
            owned = files.write_object(store.root, data, checksum)
            path = store.root / files.object_relpath(checksum)
            if own is not None:   # the bytes as read are not kept: the coerced ones are
                own.unlink()
                own = None
    if known or in_batch:
        outcome.status = CONFLICT
        outcome.reason = (f"SOP Instance UID already stored with other content; both kept "
                          f"(this copy {checksum[:12]})")
    item = NewInstance(**header, relpath=files.object_relpath(checksum), checksum=checksum,
                       source_checksum=ex.source_sum, size=size,
                       source_path=outcome.source, mds=mds)
    batch.put(path, owned, item, outcome)
    return None


def _unusable(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds, "SOPClassUID") or (str(meta.get("MediaStorageSOPClassUID", ""))
                                             if meta is not None else "")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return "a DICOMDIR (directory file), not an instance"
    missing = [kw for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
               if not _text(ds, kw)]
    if missing:
        return f"no {', '.join(missing)}"
    return ""


def _truncated(ds: Dataset, tail: int) -> str:
    """Native (uncompressed) pixel data shorter than Rows x Columns x Samples x Frames x
    Bits Allocated / 8 (PS3.5 8.1.1, PS3.3 C.7.6.3) means a truncated file: a damaged copy."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if tail <= 0 or ts not in _NATIVE:
        return ""
    try:
        rows = _get(ds, "Rows")
        if rows is None:
            return ""
        frames = int(_get(ds, "NumberOfFrames") or 1)
        expected = (int(rows) * int(_get(ds, "Columns")) * int(_get(ds, "SamplesPerPixel") or 1)
                    * frames * int(_get(ds, "BitsAllocated") or 16) + 7) // 8
    except (TypeError, ValueError, AttributeError):
        return ""
    if tail < expected + 8:   # + the element header (8 or 12 bytes)
        return f"truncated: pixel data has at most {max(tail - 8, 0)} of {expected} bytes"
    return ""


_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _get(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, through the value cache's fast path (valuecache.element)."""
    elem = element(ds, int(tag_for_keyword(keyword) or 0))
    return None if elem is None else elem.value


def _text(ds: Dataset, keyword: str) -> str:
    value = _get(ds, keyword)
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(_get(ds, keyword))
    except (TypeError, ValueError):
        return None


def _header(ds: Dataset) -> dict[str, Any]:
    """The index values of an instance (NewInstance fields that come from the header)."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    sop_class = _text(ds, "SOPClassUID") or (
        str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else "")
    return dict(
        patient_id=_text(ds, "PatientID"), issuer=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"), birth_date=_text(ds, "PatientBirthDate"),
        sex=_text(ds, "PatientSex"), study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"), study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"), study_id=_text(ds, "StudyID"),
        study_description=_text(ds, "StudyDescription"),
        series_uid=_text(ds, "SeriesInstanceUID"), modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined"), sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class, instance_number=_int(ds, "InstanceNumber"),
        transfer_syntax=ts)
