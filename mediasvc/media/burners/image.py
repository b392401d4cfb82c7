"""`iso:PATH`: an ISO 9660 image file; with --verify, read back and compared file by file."""

from __future__ import annotations

import os
from pathlib import Path

from mediasvc.errors import UsageError
from mediasvc.media.burners import BurnJob, CopyResult
from mediasvc.media.iso import make_iso
from mediasvc.media.verify import compare, iso_checksums, raise_if_bad, tree_checksums


def image_path(path: Path, number: int, count: int) -> Path:
    """PATH for a single volume; PATH-VOL001.iso, PATH-VOL002.iso ... for a spanned set."""
    if count == 1:
        return path
    return path.with_name(f"{path.stem}-VOL{number:03d}{path.suffix or '.iso'}")


class IsoBackend:
    kind = "iso"

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"iso:{self.path}"

    def burn(self, job: BurnJob) -> list[CopyResult]:
        if job.copies != 1:
            raise UsageError("iso: writes one image file; --copies applies to drives and "
                             "publishers")
        out = image_path(self.path, job.number, job.count)
        result = make_iso(job.staging, out, timeout=job.timeout)
        copy = CopyResult(1, f"iso:{out}", "done",
                          detail=f"{result.size} bytes, volume id {result.volume_id}, "
                                 f"{result.seconds:.1f} s")
        if job.verify:
            # Read back from the disk, not from the page cache: sync, then read uncached.
            fd = os.open(out, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            check = compare(tree_checksums(job.staging), iso_checksums(out))
            copy.verified, copy.verify_method = check.ok, "iso-readback-sha256"
            copy.files, copy.bytes = check.files, check.bytes
            raise_if_bad(check, f"ISO image {out}")
        return [copy]
