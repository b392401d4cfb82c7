"""Received instances on disk: written durably before the C-STORE response says Success.

Layout under ROOT/ingress/ (the spool's filesystem, so that a study becomes a job by rename)::

    tmp/<association>/N.part                 an instance being written (per association)
    studies/<route>/<Study UID>/<SOP UID>.dcm   acknowledged, waiting for the quiet period
    held/<SOP UID>.dcm                        acknowledged, kept for Media Creation requests

An instance is acknowledged only after: its bytes are written to the association's temp file
and flushed (fdatasync), the file is renamed into its study folder, and that folder is fsynced
(a new study folder: its parent too). A kill at any point leaves either nothing (the sender did
not get Success and sends again) or a complete file under its final name. Temp files left by a
killed process are removed at the next start. The folder names are UIDs, never patient data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

_UID = re.compile(r"[0-9]{1,64}(\.[0-9]{1,64}){0,63}")


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
    def studies(self) -> Path:
        return self.base / "studies"

    @property
    def held(self) -> Path:
        return self.base / "held"

    def study_dir(self, route: str, study_uid: str) -> Path:
        return self.studies / route / study_uid

    def prepare(self) -> None:
        for d in (self.tmp, self.studies, self.held):
            d.mkdir(parents=True, exist_ok=True)
        # What a killed process was writing was never acknowledged: the sender sends it again.
        for left in self.tmp.iterdir():
            shutil.rmtree(left, ignore_errors=True)


class Spooler:
    """Writes acknowledged instances; shared by every association thread.

    ``lock`` is held only around the name-level decisions (is this SOP instance new? which
    folder?) and the rename; the flushes run outside it, so concurrent associations overlap
    their disk waits (ext4 commits concurrent fsyncs in one journal transaction)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lock = threading.Lock()
        self._dirs_made: set[Path] = set()

    def temp_dir(self, assoc_id: str) -> Path:
        d = self.layout.tmp / assoc_id
        d.mkdir(exist_ok=True)
        return d

    def drop_temp(self, assoc_id: str) -> None:
        shutil.rmtree(self.layout.tmp / assoc_id, ignore_errors=True)

    def write_temp(self, tmp_dir: Path, n: int, parts: list[bytes]) -> Path:
        path = tmp_dir / f"{n}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view_total = sum(len(p) for p in parts)
            written = os.writev(fd, parts)
            if written != view_total:   # a short write (rare): finish it the simple way
                rest = b"".join(parts)[written:]
                while rest:
                    rest = rest[os.write(fd, rest):]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return path

    def place(self, tmp: Path, folder: Path, name: str,
              is_duplicate: object = None) -> bool:
        """Rename ``tmp`` to ``folder/name`` and make it durable. False (and ``tmp`` removed)
        when the instance is already there or ``is_duplicate()`` says it was already taken."""
        new_dirs: list[Path] = []
        with self.lock:
            if (folder / name).exists() or (callable(is_duplicate) and is_duplicate()):
                tmp.unlink(missing_ok=True)
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
        try:
            # The fd follows the folder even if a claim renames it meanwhile: the entry is
            # durable wherever the folder now is, and the claim makes its own rename durable.
            os.fsync(dfd)
        finally:
            os.close(dfd)
        for d in new_dirs:
            fsync_parent(d)
        return True

    def forget_dir(self, folder: Path) -> None:
        """A claim moved ``folder`` away: the next instance of that study makes it anew."""
        with contextlib.suppress(KeyError):
            self._dirs_made.remove(folder)


def fsync_parent(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
