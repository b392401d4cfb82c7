"""`folder:PATH`: a USB stick or a share. Copy, fsync, verify.

Each file is written as NAME.part, fsynced and renamed; the DICOMDIR is written last, so a
stick pulled out half way never looks like a complete file-set (a reader finds no DICOMDIR).
The target must be empty or absent: we never mix our file-set into someone else's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mediasvc.durable import fsync_dir
from mediasvc.errors import BurnError, UsageError
from mediasvc.media.burners import BurnJob, CopyResult
from mediasvc.media.iso import check_free_space
from mediasvc.media.verify import compare, raise_if_bad, tree_checksums

COPY_CHUNK = 4 << 20


def folder_path(path: Path, number: int, count: int) -> Path:
    return path if count == 1 else path / f"VOL{number:03d}"


def _copy_file(src: Path, dst: Path) -> None:
    part = dst.with_name(dst.name + ".part")
    with open(src, "rb") as fin, open(part, "wb") as fout:
        shutil.copyfileobj(fin, fout, COPY_CHUNK)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(part, dst)


def _undo(target: Path, created: bool) -> None:
    """Remove what a failed copy wrote, so that the same medium can take the retry."""
    if not target.exists():
        return
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


class FolderBackend:
    kind = "folder"

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"folder:{self.path}"

    def burn(self, job: BurnJob) -> list[CopyResult]:
        if job.copies != 1:
            raise UsageError("folder: writes one copy; run again for another stick")
        target = folder_path(self.path, job.number, job.count)
        what = f"folder {target}"
        files = sorted(p for p in job.staging.rglob("*") if p.is_file())
        needed = sum(p.stat().st_size for p in files)
        if target.resolve().is_relative_to(job.staging.resolve()):
            raise BurnError(f"{what}: inside the staging tree {job.staging}")
        existing = target.parent if not target.exists() else target
        if not existing.is_dir():
            raise BurnError(f"{what}: {existing} does not exist or is not a folder")
        if target.exists() and any(target.iterdir()):
            raise BurnError(f"{what}: not empty; refusing to mix file-sets (choose an empty "
                            "folder or medium)")
        if not os.access(existing, os.W_OK):
            raise BurnError(f"{what}: not writable")
        check_free_space(existing, needed, what)
        dicomdir = job.staging / "DICOMDIR"
        ordered = [p for p in files if p != dicomdir] + [dicomdir]
        created_target = not target.exists()
        made_dirs: set[Path] = {target}
        try:
            target.mkdir(parents=True, exist_ok=True)
            for src in ordered:
                dst = target / src.relative_to(job.staging)
                if dst.parent not in made_dirs:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    made_dirs.add(dst.parent)
                _copy_file(src, dst)
            for d in sorted(made_dirs, key=lambda p: -len(p.parts)):
                fsync_dir(d)
        except OSError as exc:
            _undo(target, created_target)
            raise BurnError(f"{what}: copy failed at {exc.filename or target}: "
                            f"{exc.strerror}; the staging tree is intact, the job can be "
                            "retried on an empty medium") from exc
        copy = CopyResult(1, f"folder:{target}", "done", files=len(files), bytes=needed,
                          detail=f"{len(files)} files, {needed} bytes, fsynced")
        if job.verify:
            check = compare(tree_checksums(job.staging), tree_checksums(target, drop_cache=True))
            copy.verified, copy.verify_method = check.ok, "folder-readback-sha256"
            raise_if_bad(check, what)
        return [copy]
