"""Read-back verification: every file of the medium against the staging tree, by checksum.

* staging tree: SHA-256 of each file, keyed by its path relative to the volume root;
* ISO image or optical device: the ISO 9660 directory is read with pycdlib, each file's extent
  is read from the image/device itself (large reads, no extraction to disk);
* folder (USB stick, share): each file is read back after its page cache was dropped
  (posix_fadvise DONTNEED after fsync), so the bytes come from the medium, not from memory.

Keys are compared case-insensitively and without ISO decorations (``NAME.;1``), since a
reader sees ``DICOMDIR.;1`` where the staging tree has ``DICOMDIR``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.errors import VerifyError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    size: int
    sha256: str


@dataclass
class VerifyResult:
    files: int
    bytes: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def normalise(rel: str) -> str:
    """'DICOM/IM000001.;1' -> 'DICOM/IM000001' (ISO 9660 version and empty extension dropped)."""
    parts = []
    for part in rel.strip("/").split("/"):
        part = re.sub(r";\d+$", "", part).rstrip(".")
        parts.append(part.upper())
    return "/".join(parts)


def _hash_fd(fd: int, size: int | None = None) -> str:
    h = hashlib.sha256()
    remaining = size
    while remaining is None or remaining > 0:
        chunk = os.read(fd, CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            break
        h.update(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return h.hexdigest()


def _walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            yield normalise(path.relative_to(root).as_posix()), path


def tree_checksums(root: Path, *, drop_cache: bool = False) -> dict[str, Entry]:
    """SHA-256 per file of a directory tree. ``drop_cache``: read from the medium itself."""
    return files_checksums(_walk_files(root), drop_cache=drop_cache)


def files_checksums(files: Iterable[tuple[str, Path]], *, drop_cache: bool = False
                    ) -> dict[str, Entry]:
    """SHA-256 per (path on the medium, file on disk): the sources of a one-pass image."""
    out: dict[str, Entry] = {}
    for rel, path in files:
        key = normalise(rel)
        fd = os.open(path, os.O_RDONLY)
        try:
            if drop_cache:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fd).st_size
            out[key] = Entry(size, _hash_fd(fd))
        finally:
            os.close(fd)
    return out


def iso_checksums(image: Path) -> dict[str, Entry]:
    """SHA-256 per file of an ISO 9660 image or optical device, as a reader would see it."""
    import pycdlib  # local: only verification needs it
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(image))
    except (OSError, PyCdlibException) as exc:
        raise VerifyError(f"{image}: cannot read an ISO 9660 file system: {exc}") from exc
    out: dict[str, Entry] = {}
    try:
        entries: list[tuple[str, int, int]] = []
        for dirname, _dirs, files in iso.walk(iso_path="/"):
            for name in files:
                iso_path = f"{dirname.rstrip('/')}/{name}"
                rec = iso.get_record(iso_path=iso_path)
                entries.append((iso_path, rec.extent_location(), rec.get_data_length()))
    except PyCdlibException as exc:
        raise VerifyError(f"{image}: unreadable ISO 9660 directory: {exc}") from exc
    finally:
        iso.close()
    fd = os.open(image, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        # In block order: an optical drive reads sequentially instead of seeking back and forth.
        for iso_path, extent, size in sorted(entries, key=lambda e: e[1]):
            os.lseek(fd, extent * 2048, os.SEEK_SET)
            out[normalise(iso_path)] = Entry(size, _hash_fd(fd, size))
    finally:
        os.close(fd)
    return out


def compare(expected: dict[str, Entry], actual: dict[str, Entry]) -> VerifyResult:
    """Every expected file present with the same size and checksum; nothing unexpected."""
    problems: list[str] = []
    for key, want in sorted(expected.items()):
        got = actual.get(key)
        if got is None:
            problems.append(f"{key}: missing on the medium")
        elif got.size != want.size:
            problems.append(f"{key}: {got.size} bytes on the medium, {want.size} staged")
        elif got.sha256 != want.sha256:
            problems.append(f"{key}: content differs (SHA-256)")
    for key in sorted(set(actual) - set(expected)):
        problems.append(f"{key}: on the medium but not in the staging tree")
    return VerifyResult(len(expected), sum(e.size for e in expected.values()), problems)


def raise_if_bad(result: VerifyResult, what: str) -> None:
    if not result.ok:
        shown = "; ".join(result.problems[:5])
        more = f"; and {len(result.problems) - 5} more" if len(result.problems) > 5 else ""
        raise VerifyError(f"{what}: read-back differs from the staging tree: {shown}{more}")
