"""Received instances on disk: durable before the C-STORE response says Success.

Layout under ROOT/ingress/ (the spool's filesystem, so that a study becomes a job by rename)::

    journal/<n>.jnl                           write-ahead journals, one per open association
    tmp/<association>/N.part                  an instance being written (per association)
    studies/<route>/<Study UID>/<SOP UID>.dcm   acknowledged, waiting for the quiet period
    held/<SOP UID>.dcm                        acknowledged, kept for Media Creation requests

**What Success promises.** An instance is acknowledged once its bytes are in a journal record
that fdatasync has flushed; then it is written to its final name (temp file + rename, not yet
flushed). Why a journal: a journal is a file whose blocks were written (zeros) when it was
made, so overwriting them changes no metadata and fdatasync flushes data only, without an
ext4 journal commit. Measured on the build machine for a 131 KB instance: journal record
0.42-0.48 ms; new file + fdatasync + rename + folder fsync (the previous way) 1.05-1.39 ms.

**Checkpoints.** The final files become durable in batches: a syncer thread runs syncfs(2)
(errors are reported since Linux 5.8) whenever a journal half fills, and before a study folder
is claimed or held instances are linked into an MCM job (``sync_all``). A journal has two
halves used in turn; a half is reused only once a syncfs that began after its last final file
was written has completed, and its header then gets a new generation, so its old records are
dead. A writer waits only when the syncer is slower than a half fills (a half: ~60 instances
of 131 KB), so the syncfs runs while the other half takes records.

**Recovery.** At start, before listening, every live record (header generation, checksum) of
every journal is written again to its final name; then one syncfs and all halves are reset.
An instance may so reappear in a study folder whose study was already claimed: the claim
drops instances already handed to a job (assembler.py). A kill at any point leaves either
nothing (the sender did not get Success and sends again) or the instance in a journal.

Instances larger than a journal half take the direct way: temp file + fdatasync, rename into
the folder, folder fsync. Temp files left by a killed process are removed at the next start.
The folder names are UIDs, never patient data; journal records hold only route, Study and
SOP Instance UIDs next to the instance's bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mediasvc.durable import fsync_dir, syncfs

log = logging.getLogger("mediasvc.ingress")

_UID = re.compile(r"[0-9]{1,64}(\.[0-9]{1,64}){0,63}")
_ROUTE = re.compile(r"[A-Za-z0-9_-]{1,32}")

HALF_BYTES = 8 << 20           # one journal half; a journal file holds two
JOURNALS_AT_START = 2          # made (zero-filled) at start: the first senders never wait
_BLOCK = 4096                  # a half's header block
_HEAD = struct.Struct("<8sQI")                 # magic, generation, crc32 of the first 16 bytes
_REC = struct.Struct("<4sQIII")                # magic, generation, meta length, data length, crc
_HEAD_MAGIC, _REC_MAGIC = b"MSVCJNL1", b"MSJR"


def valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, at most 64 characters (also keeps paths safe)."""
    return len(uid) <= 64 and _UID.fullmatch(uid) is not None


@dataclass
class Layout:
    base: Path                   # ROOT/ingress

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def journal(self) -> Path:
        return self.base / "journal"

    @property
    def studies(self) -> Path:
        return self.base / "studies"

    @property
    def held(self) -> Path:
        return self.base / "held"

    def study_dir(self, route: str, study_uid: str) -> Path:
        return self.studies / route / study_uid

    def prepare(self) -> None:
        for d in (self.tmp, self.journal, self.studies, self.held):
            d.mkdir(parents=True, exist_ok=True)
        # What a killed process was writing was never acknowledged unless a journal holds it
        # (Spooler.recover writes those again).
        for left in self.tmp.iterdir():
            shutil.rmtree(left, ignore_errors=True)


@dataclass(frozen=True)
class Target:
    """Where an instance goes: a route's study folder, or held/ (route ``""``)."""

    route: str
    study_uid: str
    sop_uid: str

    def folder(self, layout: Layout) -> Path:
        return layout.study_dir(self.route, self.study_uid) if self.route else layout.held

    @property
    def name(self) -> str:
        return f"{self.sop_uid}.dcm"

    def meta(self) -> bytes:
        return json.dumps([self.route, self.study_uid, self.sop_uid]).encode()

    @classmethod
    def from_meta(cls, raw: bytes) -> Target | None:
        try:
            route, study, sop = json.loads(raw)
        except (ValueError, TypeError):
            return None
        if not isinstance(route, str) or not isinstance(study, str) or not isinstance(sop, str):
            return None
        if not valid_uid(sop) or (route and (not _ROUTE.fullmatch(route)
                                             or not valid_uid(study))):
            return None
        return cls(route, study, sop)


class Journal:
    """One association's write-ahead file (two halves of ``half`` bytes, used in turn)."""

    def __init__(self, path: Path, fd: int, half: int, gens: list[int]) -> None:
        self.path = path
        self.fd = fd
        self.half = half
        self.gens = gens                  # generation of each half
        self.active = 0
        self.pos = _BLOCK                 # write offset within the active half
        self.last_seq = [0, 0]            # syncer sequence of the last final file per half

    @classmethod
    def create(cls, path: Path, half: int | None = None) -> Journal:
        half = half or HALF_BYTES
        tmp = path.with_suffix(".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            zeros = bytes(1 << 20)
            for off in range(0, 2 * half, len(zeros)):   # written blocks, not a sparse file
                os.pwrite(fd, zeros[:min(len(zeros), 2 * half - off)], off)
            j = cls(path, fd, half, [1, 1])
            for h in (0, 1):
                j._write_header(h)
            os.fsync(fd)
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return j

    @classmethod
    def open(cls, path: Path) -> Journal | None:
        fd = os.open(path, os.O_RDWR)
        half = os.fstat(fd).st_size // 2
        gens = []
        for h in (0, 1):
            raw = os.pread(fd, _HEAD.size, h * half)
            if half < 2 * _BLOCK or len(raw) < _HEAD.size:
                break
            magic, gen, crc = _HEAD.unpack(raw)
            if magic != _HEAD_MAGIC or crc != zlib.crc32(raw[:16]):
                break
            gens.append(gen)
        if len(gens) != 2:
            os.close(fd)
            return None
        return cls(path, fd, half, gens)

    def _write_header(self, h: int) -> None:
        head = _HEAD_MAGIC + struct.pack("<Q", self.gens[h])
        os.pwrite(self.fd, head + struct.pack("<I", zlib.crc32(head)), h * self.half)

    def fits(self, size: int) -> bool:
        return _REC.size + size <= self.half - _BLOCK

    def room(self, size: int) -> bool:
        return self.pos + _REC.size + size <= self.half

    def switch(self) -> None:
        """Start the other half (its old records dead: a new generation, flushed first)."""
        other = 1 - self.active
        self.gens[other] = max(self.gens) + 1
        self._write_header(other)
        os.fdatasync(self.fd)
        self.active, self.pos = other, _BLOCK

    def append(self, meta: bytes, parts: list[bytes]) -> None:
        """Write one record and flush it: after this, the instance survives a crash."""
        data_len = sum(len(p) for p in parts)
        crc = zlib.crc32(meta)
        for p in parts:
            crc = zlib.crc32(p, crc)
        head = _REC.pack(_REC_MAGIC, self.gens[self.active], len(meta), data_len, crc)
        off = self.active * self.half + self.pos
        total = len(head) + len(meta) + data_len
        written = os.pwritev(self.fd, [head, meta, *parts], off)
        if written != total:   # a short write (rare): finish it the simple way
            rest = b"".join([head, meta, *parts])[written:]
            while rest:
                n = os.pwrite(self.fd, rest, off + total - len(rest))
                rest = rest[n:]
        os.fdatasync(self.fd)
        self.pos += total

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(meta, data) of every live record, half by half, oldest generation first."""
        for h in sorted((0, 1), key=lambda x: self.gens[x]):
            pos = _BLOCK
            while pos + _REC.size <= self.half:
                off = h * self.half + pos
                magic, gen, mlen, dlen, crc = _REC.unpack(os.pread(self.fd, _REC.size, off))
                if magic != _REC_MAGIC or gen != self.gens[h] \
                        or pos + _REC.size + mlen + dlen > self.half:
                    break
                body = os.pread(self.fd, mlen + dlen, off + _REC.size)
                if len(body) != mlen + dlen or zlib.crc32(body) != crc:
                    break   # a record cut by the crash: it was never acknowledged
                yield body[:mlen], body[mlen:]
                pos += _REC.size + mlen + dlen

    def reset(self) -> None:
        """Every record is durable in its final file: both halves start anew."""
        top = max(self.gens)
        self.gens = [top + 1, top + 2]
        for h in (0, 1):
            self._write_header(h)
        os.fdatasync(self.fd)
        self.active, self.pos, self.last_seq = 0, _BLOCK, [0, 0]

    def close(self) -> None:
        os.close(self.fd)


class Spooler:
    """Writes acknowledged instances; shared by every association thread.

    ``lock`` is held only around the name-level decisions (is this SOP instance new? which
    folder?) and the rename; journal flushes run outside it, so concurrent associations
    overlap their disk waits."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lock = threading.Lock()
        self._dirs_made: set[Path] = set()
        self._journals: list[Journal] = []
        self._free: list[Journal] = []
        self._next = 0                   # number of the next journal file
        # The syncer: ``_seq`` counts final files written; ``_durable`` is the highest count
        # a completed syncfs covers.
        self._cv = threading.Condition()
        self._seq = 0
        self._durable = 0
        self._wanted = 0
        self._pending: list[Path] = []   # final files since the last syncfs (the fallback)
        self._stop = False
        self._error: OSError | None = None
        self._syncer: threading.Thread | None = None

    # -- start and stop ----------------------------------------------------------------------
    def recover(self) -> int:
        """Write every live journal record to its final name again, make it all durable, and
        reset the journals. Returns the number of instances written. Before listening."""
        written: list[Path] = []
        replay = self.layout.tmp / "replay"
        replay.mkdir(exist_ok=True)
        for path in sorted(self.layout.journal.glob("*.jnl")):
            with contextlib.suppress(ValueError):
                self._next = max(self._next, int(path.stem) + 1)
            j = Journal.open(path)
            if j is None:
                log.warning("journal %s unreadable: removed", path.name)
                path.unlink()
                continue
            for meta, data in j.records():
                target = Target.from_meta(meta)
                if target is None:
                    continue
                tmp = _write(replay / f"{len(written)}.part", [data], flush=False)
                folder = target.folder(self.layout)
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, folder / target.name)
                written.append(folder / target.name)
            self._journals.append(j)
        for left in self.layout.journal.glob("*.new"):
            left.unlink()
        self._flush_all(written)
        for j in self._journals:
            j.reset()
        self._free = list(self._journals)
        while len(self._journals) < JOURNALS_AT_START:
            self._free.append(self._new_journal())
        self._syncer = threading.Thread(target=self._sync_loop, name="ingress-syncer",
                                        daemon=True)
        self._syncer.start()
        return len(written)

    def close(self) -> None:
        """A clean stop: everything durable, journals reset (the next start replays none)."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._syncer is not None:
            self._syncer.join(timeout=60)
        with self.lock:
            pending, self._pending = self._pending, []
            free = list(self._free)
        self._flush_all(pending)
        for j in free:   # a journal still in use stays as it is: the next start replays it
            j.reset()
            j.close()

    def _new_journal(self) -> Journal:
        with self.lock:
            n, self._next = self._next, self._next + 1
        j = Journal.create(self.layout.journal / f"{n}.jnl")   # zero-filling: not under lock
        with self.lock:
            self._journals.append(j)
        return j

    # -- journals per association ------------------------------------------------------------
    def acquire(self) -> Journal:
        with self.lock:
            if self._free:
                return self._free.pop()
        return self._new_journal()

    def release(self, j: Journal) -> None:
        with self.lock:
            self._free.append(j)

    # -- the syncer ------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and self._wanted <= self._durable:
                    self._cv.wait()
                if self._stop:
                    return
            with self.lock:
                mark = self._seq
                pending, self._pending = self._pending, []
            try:
                self._flush_all(pending)
            except OSError as exc:
                log.error("ingress: cannot flush received instances: %s", exc)
                with self._cv:
                    self._error = exc
                    self._cv.notify_all()
                return
            with self._cv:
                self._durable = max(self._durable, mark)
                self._cv.notify_all()

    def _flush_all(self, pending: list[Path]) -> None:
        if syncfs(self.layout.base):
            return
        # No syncfs(2) here, or it failed: one fsync per file and folder reports errors;
        # sync(2) then covers files a claim moved meanwhile.
        for p in pending:
            with contextlib.suppress(FileNotFoundError):
                _fsync_path(p)
        for folder in {d for p in pending for d in (p.parent, p.parent.parent)}:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(folder)
        os.sync()

    def wait_durable(self, seq: int) -> None:
        """Block until every final file numbered up to ``seq`` is durable."""
        with self._cv:
            self._wanted = max(self._wanted, seq)
            self._cv.notify_all()
            while self._durable < seq:
                if self._error is not None or self._syncer is None \
                        or not self._syncer.is_alive():
                    raise OSError(f"the ingress syncer stopped: {self._error or 'not running'}")
                self._cv.wait(1.0)

    def sync_all(self) -> None:
        """Every instance received so far durable under its final name (claims, MCM)."""
        with self.lock:
            seq = self._seq
        self.wait_durable(seq)

    # -- writing ---------------------------------------------------------------------------
    def temp_dir(self, assoc_id: str) -> Path:
        d = self.layout.tmp / assoc_id
        d.mkdir(exist_ok=True)
        return d

    def drop_temp(self, assoc_id: str) -> None:
        shutil.rmtree(self.layout.tmp / assoc_id, ignore_errors=True)

    def store(self, journal: Journal | None, tmp_dir: Path, n: int, target: Target,
              parts: list[bytes], is_duplicate: Callable[[], bool] | None = None) -> bool:
        """Make the instance durable and put it under its final name. False (nothing written)
        when it is already there or ``is_duplicate()`` says it was already taken."""
        folder, name = target.folder(self.layout), target.name
        with self.lock:
            if (folder / name).exists() or (is_duplicate is not None and is_duplicate()):
                return False
        size = sum(len(p) for p in parts)
        meta = target.meta()
        if journal is None or not journal.fits(len(meta) + size):
            tmp = _write(tmp_dir / f"{n}.part", parts, flush=True)
            return self._place(tmp, folder, name, is_duplicate, direct=True)
        if not journal.room(len(meta) + size):
            # The other half is reused once a syncfs covered its final files; ask for one
            # covering this half now, so that it is done when this half fills in turn.
            self.wait_durable(journal.last_seq[1 - journal.active])
            with self._cv:
                self._wanted = max(self._wanted, journal.last_seq[journal.active])
                self._cv.notify_all()
            journal.switch()
        journal.append(meta, parts)
        tmp = _write(tmp_dir / f"{n}.part", parts, flush=False)
        placed = self._place(tmp, folder, name, is_duplicate, direct=False)
        with self.lock:
            journal.last_seq[journal.active] = self._seq
        return placed

    def _place(self, tmp: Path, folder: Path, name: str,
               is_duplicate: Callable[[], bool] | None, *, direct: bool) -> bool:
        """Rename ``tmp`` to ``folder/name``; ``direct``: and make that durable now."""
        new_dirs: list[Path] = []
        with self.lock:
            if (folder / name).exists() or (is_duplicate is not None and is_duplicate()):
                tmp.unlink(missing_ok=True)   # another association was first: stored once
                return False
            if folder not in self._dirs_made and not folder.is_dir():
                for d in (folder.parent, folder):
                    if not d.is_dir():
                        d.mkdir()
                        new_dirs.append(d)
            self._dirs_made.add(folder)
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.rename(tmp, name, dst_dir_fd=dfd)
            except BaseException:
                os.close(dfd)
                raise
            self._seq += 1
            if not direct:
                self._pending.append(folder / name)
        try:
            if direct:
                # The fd follows the folder even if a claim renames it meanwhile: the entry
                # is durable wherever the folder now is; the claim makes its rename durable.
                os.fsync(dfd)
        finally:
            os.close(dfd)
        if direct:
            for d in new_dirs:
                fsync_dir(d.parent)
        return True

    def forget_dir(self, folder: Path) -> None:
        """A claim moved ``folder`` away: the next instance of that study makes it anew."""
        with contextlib.suppress(KeyError):
            self._dirs_made.remove(folder)


def _write(path: Path, parts: list[bytes], *, flush: bool) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        total = sum(len(p) for p in parts)
        written = os.writev(fd, parts)
        if written != total:   # a short write (rare): finish it the simple way
            rest = b"".join(parts)[written:]
            while rest:
                rest = rest[os.write(fd, rest):]
        if flush:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return path


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
