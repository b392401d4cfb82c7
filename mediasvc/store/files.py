"""Where the store keeps its files: content-addressed, written atomically.

Layout under the store root::

    objects/ab/abcdef...64 hex....dcm   one file per distinct content (SHA-256 of its bytes)
    tmp/                                 files being written; anything here at start is garbage

Why content-addressed rather than study/series/instance folders: the name *is* the checksum,
so (1) two different files under the same SOP Instance UID (a conflict) can never overwrite each
other, (2) the same bytes imported twice land on the same name (a duplicate is recognised
without trusting the UID), (3) a consistency check needs no extra bookkeeping (re-hash and
compare to the name), and (4) a rename that is repeated after a crash is idempotent. Browsing
by patient/study is the index's job (`mediasvc store list`), not the directory tree's.

Crash safety (a SIGKILL or power cut at any moment): bytes go to ``tmp/`` first and are made
durable, then renamed to their final name and the renames made durable; only then is the index
row committed (see index.py). The importer does this per batch of files, not per file. So a
row never points to a missing or partial file; a file without a row (killed between rename and
commit) is an orphan that the index's recovery finds (:func:`all_objects`) and removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
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


def write_tmp(root: Path, data: bytes | memoryview) -> Path:
    """Write ``data`` to a new file under tmp/ (not yet durable: see :func:`make_durable`)."""
    fd, tmp_name = tempfile.mkstemp(dir=root / TMP, prefix="put-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return Path(tmp_name)


def publish(root: Path, tmp: Path, checksum: str) -> str:
    """Rename a durable tmp file to its content address; return the path under root.

    rename(2) is atomic within one file system (tmp/ lives under the same root for that
    reason): the final name holds either nothing or the complete content, never a part.
    """
    rel = object_relpath(checksum)
    final = root / rel
    final.parent.mkdir(exist_ok=True)
    os.replace(tmp, final)
    return rel


def make_durable(root: Path, paths: Iterable[Path]) -> None:
    """Flush file contents (or, after renames, directory entries) under ``root`` to disk.

    One syncfs(2) of the store's file system per batch: measured here faster than an fsync
    per file (each fsync is its own journal commit; 500 files of 512 KB: 2.3 s one by one,
    0.7 s in 8 threads, 0.5 s with syncfs per 64), and it covers the renamed entries in every
    objects/ sub-directory too. Where syncfs is unavailable: fsync each path, in threads.
    """
    if syncfs(root):
        return
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync_path, paths))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def put_bytes(root: Path, data: bytes | memoryview, checksum: str) -> str:
    """Store one content durably (write tmp, fsync, rename, fsync directory)."""
    tmp = write_tmp(root, data)
    try:
        make_durable(root, [tmp])
        rel = publish(root, tmp, checksum)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    make_durable(root, [(root / rel).parent])
    return rel


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
