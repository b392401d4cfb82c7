"""Durable writes: the one place that knows how to make data survive a crash.

Every file mediasvc writes that a user or a later run relies on (DICOMDIR, README.TXT,
reports, claims, status) goes through atomic_write: a temp file in the same folder, fsync,
rename over the target, fsync of the folder. A crash at any moment leaves the old content or
the new one, never a part. A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make new, renamed or removed entries of the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: temp file + fsync + rename + fsync of the folder.
    ``mode``: the file's permissions; by default those of a newly created file (0666 less
    the umask: the service runs with UMask=0027), not mkstemp's 0600."""
    if mode is None:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not on Linux
        return None


_LIBC = _load_libc()


def syncfs(path: Path) -> bool:
    """Flush the file system holding ``path`` (Linux syncfs(2)): far cheaper than one fsync
    per file for many new files. False where syncfs is not available (caller falls back)."""
    if _LIBC is None or not hasattr(_LIBC, "syncfs"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(_LIBC.syncfs(fd)) == 0
    finally:
        os.close(fd)


SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, no wait


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of a large file being written to the disk now (Linux
    sync_file_range(2) SYNC_FILE_RANGE_WRITE), so that the fsync at its end finds little
    left to write. Not a durability guarantee by itself (the fsync is); best effort."""
    if _LIBC is None or not hasattr(_LIBC, "sync_file_range"):
        return
    _LIBC.sync_file_range(ctypes.c_int(fd), ctypes.c_int64(offset), ctypes.c_int64(length),
                          ctypes.c_uint(SYNC_FILE_RANGE_WRITE))
