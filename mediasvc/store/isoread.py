"""Reading an ISO 9660 image or an optical drive's block device without mounting it.

Mounting needs root and leaves a mount behind when a job is killed; instead xorriso (the tool
the media side already depends on) extracts the tree into a private folder under the store's
``tmp/`` (same file system as the store, so the importer links the extracted files into
place rather than copying them again, and a killed import leaves nothing that the next start
does not sweep away). xorriso
extracts symbolic links as links; the File-set Reader then refuses any that leave the tree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.errors import InputError

XORRISO = "xorriso"


def is_image(path: Path) -> bool:
    """A regular file (ISO image) or a block device (optical drive) rather than a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


def has_iso9660(image: Path) -> bool:
    """ECMA-119 8.1: the volume descriptor set starts at sector 16 (byte 32768); every
    descriptor carries the Standard Identifier "CD001" at its bytes 1-5."""
    try:
        with open(image, "rb") as fh:
            fh.seek(32768 + 1)
            return fh.read(5) == b"CD001"
    except OSError:
        return False


@dataclass
class Extracted:
    root: Path
    volume_id: str
    problems: list[str] = field(default_factory=list)


def volume_id(image: Path) -> str:
    """The Volume Identifier of the image's Primary Volume Descriptor ('' if unreadable)."""
    proc = subprocess.run([XORRISO, "-indev", str(image), "-pvd_info"], capture_output=True,
                          text=True, errors="replace", timeout=300)
    m = re.search(r"^Volume Id\s*:\s*(.*)$", proc.stdout + proc.stderr, re.MULTILINE)
    return m.group(1).strip() if m else ""


@contextlib.contextmanager
def extracted(image: Path, workdir: Path) -> Iterator[Extracted]:
    """Extract ``image`` into a new folder under ``workdir``; removed again on exit.

    Damaged media do not stop the extraction (``-abort_on NEVER``): what could be read is
    extracted, xorriso's complaints are returned as problems, and the reader will report the
    referenced files that are missing, so the import does not claim to be complete.
    """
    if shutil.which(XORRISO) is None:
        raise InputError(image, "xorriso is needed to read an ISO image or a drive; "
                         "install the xorriso package")
    if not has_iso9660(image):
        raise InputError(image, "no ISO 9660 file system here (a blank disc, or not an ISO "
                         "image): give a folder, an ISO image or a drive with a disc")
    vol = volume_id(image)
    dest = Path(tempfile.mkdtemp(prefix="iso-", dir=workdir))
    try:
        proc = subprocess.run(
            [XORRISO, "-abort_on", "NEVER", "-return_with", "FAILURE", "32",
             "-osirrox", "on", "-indev", str(image), "-extract", "/", str(dest / "root")],
            capture_output=True, text=True, errors="replace", timeout=24 * 3600)
        problems = [line.strip() for line in proc.stderr.splitlines()
                    if re.search(r": (SORRY|FAILURE|FATAL|ABORT) :", line)]
        root = dest / "root"
        if not root.is_dir():
            reason = problems[0] if problems else f"xorriso exit status {proc.returncode}"
            raise InputError(image, f"not a readable ISO 9660 image: {reason}")
        if proc.returncode != 0 and not problems:
            problems.append(f"xorriso exit status {proc.returncode}")
        yield Extracted(root, vol, problems)
    finally:
        remove_tree(dest)


def remove_tree(path: Path) -> None:
    """rm -r that copes with the read-only folders an ISO extraction may produce."""
    for dirpath, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    shutil.rmtree(path, ignore_errors=True)
