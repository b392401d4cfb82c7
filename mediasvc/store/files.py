"""Where the store keeps its files: content-addressed, written atomically.

Layout under the store root::

    objects/ab/abcdef...64 hex....dcm   one file per distinct content (SHA-256 of its bytes)
    objects/ab/<name>.<pid>.part         a file being written, beside its final name
    tmp/                                 an ISO image being extracted; garbage at start

Why content-addressed rather than study/series/instance folders: the name *is* the checksum,
so (1) two different files under the same SOP Instance UID (a conflict) can never overwrite each
other, (2) the same bytes imported twice land on the same name (a duplicate is recognised
without trusting the UID), (3) a consistency check needs no extra bookkeeping (re-hash and
compare to the name), and (4) writing a content again after a crash is idempotent. Browsing
by patient/study is the index's job (`mediasvc store list`), not the directory tree's.

Crash safety (a SIGKILL or power cut at any moment): bytes go to a part file beside their
final name, which gets the final name by link(2) once complete (:func:`write_object`); a batch
of such files is made durable, contents and names, by one syncfs; only then are the batch's
index rows committed (see index.py). So a row never points to a missing or partial file; a
file without a row (a part file, or a complete one killed before its commit) is an orphan that
the index's recovery finds (:func:`all_objects`) and removes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mediasvc.durable import syncfs

OBJECTS = "objects"
TMP = "tmp"
SUFFIX = ".dcm"
_CHUNK = 1 << 20


def object_relpath(checksum: str) -> str:
    """The path of a content, relative to the store root: objects/ab/<checksum>.dcm."""
    return f"{OBJECTS}/{checksum[:2]}/{checksum}{SUFFIX}"


def checksum_of_name(path: Path) -> str | None:
    """The checksum an object file's name claims, or None if the name is not one of ours."""
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    stem = name[: -len(SUFFIX)]
    if len(stem) != 64 or any(c not in "0123456789abcdef" for c in stem):
        return None
    return stem


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(root: Path) -> None:
    (root / OBJECTS).mkdir(parents=True, exist_ok=True)
    (root / TMP).mkdir(parents=True, exist_ok=True)


def write_object(root: Path, data: bytes | memoryview, checksum: str,
                 link_from: Path | None = None) -> bool:
    """Put ``data`` at its content address, not yet durable (:func:`make_durable` per batch).
    True if this call created it; False if the address already held these bytes.

    The bytes go to a part file beside the final name, which then gets its name with link(2):
    the final name appears complete or not at all, and never replaces a file (an importer
    that finds the name taken knows another file of the medium has the same content). One
    folder, no rename across folders, no second flush for the renames: the batch's one
    syncfs covers contents and names. A part file or a final name left without a row by a
    kill is an orphan that recovery removes (index.py).

    ``link_from``: a complete file holding ``data`` on the store's file system that nobody else
    uses (an ISO image extracted under tmp/): it gets the final name as a second link, and
    nothing is written; where linking fails, the bytes are written as usual.
    """
    final = root / object_relpath(checksum)
    if link_from is not None:
        try:
            try:
                os.link(link_from, final)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.link(link_from, final)
            return True
        except FileExistsError:
            if final.stat().st_size == len(data):
                return False
        except OSError as exc:   # another file system, or links not supported: write
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                                 errno.EMLINK):
                raise
    part = final.with_name(f"{final.name}.{os.getpid()}.part")
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        try:
            os.link(part, final)
            return True
        except FileExistsError:
            if final.stat().st_size == len(data):
                return False   # the same name is the same SHA-256: the same bytes
        except OSError as exc:   # a file system without hard links: rename instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if final.exists() and final.stat().st_size == len(data):
                return False
        # No such name yet on a file system without links, or a part file a crash left
        # under the final name (no row has it: its size is not the content's): replace it.
        os.replace(part, final)
        part = final
        return True
    finally:
        if part != final:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)


def make_durable(root: Path, paths: Iterable[Path]) -> None:
    """Flush file contents and their names (new or renamed entries) under ``root`` to disk.

    One syncfs(2) of the store's file system per batch: measured here faster than an fsync
    per file (each fsync is its own journal commit; 500 files of 512 KB: 2.3 s one by one,
    0.7 s in 8 threads, 0.5 s with syncfs per 64), and it covers the entries in every
    objects/ sub-directory too. Where syncfs is unavailable: fsync each path and its folder,
    in threads.
    """
    if syncfs(root):
        return
    paths = list(paths)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync_path, paths))
        list(pool.map(_fsync_path, {p.parent for p in paths}))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clear_tmp(root: Path) -> int:
    """Remove leftovers of killed writes under tmp/ (never referenced by a row). Count them."""
    n = 0
    tmp = root / TMP
    if not tmp.is_dir():
        return 0
    for entry in os.scandir(tmp):
        if entry.is_dir(follow_symlinks=False):
            _rmtree(Path(entry.path))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        n += 1
    return n


def all_objects(root: Path) -> Iterator[Path]:
    """Every file under objects/ (whatever its name)."""
    base = root / OBJECTS
    if not base.is_dir():
        return
    for sub in os.scandir(base):
        if sub.is_dir(follow_symlinks=False):
            for entry in os.scandir(sub.path):
                yield Path(entry.path)
        else:
            yield Path(sub.path)


def remove(root: Path, rel: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(root / rel)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
