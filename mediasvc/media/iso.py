"""ISO 9660 images of a staging tree, made with xorriso (no ISO writer of our own).

PS3.12 (Annex F and the media annexes that follow it) asks for ISO 9660 Level 1 on CD-R, DVD
and BD media holding a DICOM file-set: names of at most 8 characters plus a 3-character
extension, upper-case A-Z, 0-9 and _, at most 8 directory levels. File IDs (PS3.10 8.2)
already follow these rules, so the image carries plain ISO 9660 names only: no Rock Ridge,
no Joliet (extensions would only add a second, different view of the same names).

* The volume identifier is the File-set ID (PS3.10 8.4: the File-set ID identifies the medium;
  ECMA-119 d-characters, so anything else becomes ``_``).
* DICOMDIR, README.TXT and INDEX.HTM get the lowest block addresses (xorriso sort weights):
  a reader opens them first, and optical drives are slow to seek.
* Files are mapped into the image where they lie (``-map``): a hard-linked staging tree is
  read once and written once, into the image. ``-stdio_sync off`` lets the kernel batch the
  writes (measured fastest here).
* The image is written to ``NAME.part`` and renamed when complete: a failed run leaves no
  half image under the final name, and the staging tree is only ever read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mediasvc import __version__
from mediasvc.errors import BurnError, CapacityError, MediaError
from mediasvc.media.spanning import BLOCK, blocks

XORRISO = "xorriso"
# Higher weight = lower block address (xorriso -find -exec sort_weight).
ROOT_ORDER = (("DICOMDIR", 300), ("README.TXT", 200), ("INDEX.HTM", 100))
LEVEL1_FILE = re.compile(r"[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?")
LEVEL1_DIR = re.compile(r"[A-Z0-9_]{1,8}")
MAX_DEPTH = 8  # ECMA-119 6.8.2.1: at most 8 levels of directories including the root
# System area (16 blocks) + volume descriptors + path tables: a small fixed part of each image.
IMAGE_OVERHEAD = 64 * BLOCK


@dataclass(frozen=True)
class IsoResult:
    path: Path
    size: int
    volume_id: str
    seconds: float


def volume_id(fileset_id: str) -> str:
    """The ISO volume identifier for a File-set ID: d-characters (A-Z 0-9 _), at most 32."""
    vid = re.sub(r"[^A-Z0-9_]", "_", fileset_id.strip().upper())[:32]
    return vid or "DICOM"


def fileset_id_of(root: Path) -> str:
    """File-set ID (0004,1130) of ROOT/DICOMDIR. Reading stops right after it: the directory
    records that follow can be megabytes (PS3.3 F.3: File-set ID precedes them)."""
    from pydicom.filereader import read_partial  # local: only needed without a volume id

    def past_fileset_id(tag: int, _vr: str | None, _length: int) -> bool:
        return tag > 0x00041130

    try:
        with open(root / "DICOMDIR", "rb") as fh:
            ds = read_partial(fh, stop_when=past_fileset_id)
    except Exception as exc:  # noqa: BLE001 - any read failure means: not a staging tree
        raise MediaError(f"{root}: no readable DICOMDIR at the root: {exc}") from exc
    return str(ds.get("FileSetID", "") or "")


def level1_problems(root: Path) -> list[str]:
    """Paths under ROOT that ISO 9660 Level 1 cannot hold unchanged (xorriso would rename them
    silently, and the DICOMDIR or the web pages would then point at names that do not exist)."""
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        depth = len(rel.parts) + 1
        for d in dirnames:
            if not LEVEL1_DIR.fullmatch(d):
                problems.append(f"{rel / d}/: directory name is not ISO 9660 level 1 (8 chars "
                                "A-Z 0-9 _)")
            elif depth + 1 > MAX_DEPTH:
                problems.append(f"{rel / d}/: deeper than {MAX_DEPTH} directory levels")
        for f in filenames:
            if not LEVEL1_FILE.fullmatch(f):
                problems.append(f"{rel / f}: file name is not ISO 9660 level 1 (8.3, A-Z 0-9 _)")
    return problems


def tree_size(root: Path) -> tuple[int, int]:
    """(number of files, bytes they occupy in an image, whole blocks each) of a staging tree."""
    count = total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        total += BLOCK * (1 + len(dirnames))  # a directory extent per directory (at least)
        for f in filenames:
            count += 1
            total += blocks(os.stat(os.path.join(dirpath, f)).st_size)
    return count, total + IMAGE_OVERHEAD


def xorriso_args(root: Path, outdev: str, vol_id: str, *, extra: Sequence[str] = ()) -> list[str]:
    """The xorriso command that masters ROOT onto OUTDEV (stdio:FILE or a drive)."""
    args = [XORRISO, "-no_rc", "-report_about", "SORRY", "-abort_on", "FAILURE",
            "-outdev", outdev, "-stdio_sync", "off",
            "-rockridge", "off", "-joliet", "off", "-compliance", "iso_9660_level=1",
            "-volid", vol_id, "-application_id", f"MEDIASVC {__version__}",
            *extra, "-map", str(root), "/"]
    for name, weight in ROOT_ORDER:
        if (root / name).is_file():
            args += ["-find", f"/{name}", "-exec", "sort_weight", str(weight), "--"]
    return [*args, "-commit"]


def run_xorriso(args: Sequence[str], what: str, timeout: float | None = None
                ) -> subprocess.CompletedProcess[str]:
    """Run xorriso; a failure becomes BurnError with xorriso's own FAILURE/SORRY lines."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError as exc:
        raise BurnError(f"{what}: xorriso is not installed ({args[0]} not found)") from exc
    except subprocess.TimeoutExpired as exc:
        raise BurnError(f"{what}: xorriso did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BurnError(f"{what}: xorriso failed (exit {proc.returncode}): "
                        f"{xorriso_reason(proc.stderr)}")
    return proc


def xorriso_reason(stderr: str) -> str:
    """The lines of xorriso's output that say why (its FAILURE/SORRY/FATAL events)."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if re.search(r":\s*(FATAL|FAILURE|SORRY)\s*:", ln)]
    if not lines:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()][-3:]
    return " | ".join(lines) or "no message"


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse before writing when the target filesystem cannot hold ``needed`` bytes."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise BurnError(f"{what}: cannot reach {directory}: {exc.strerror}") from exc
    if free < needed:
        raise CapacityError(f"{what}: needs {needed} bytes but {directory} has only {free} "
                            "free; nothing was written")


def make_iso(root: Path, out: Path, *, vol_id: str | None = None,
             timeout: float | None = None) -> IsoResult:
    """Master the staging tree ROOT into the ISO image OUT (see the module docstring)."""
    what = f"ISO image {out}"
    if not (root / "DICOMDIR").is_file():
        raise MediaError(f"{root}: not a staging tree (no DICOMDIR at its root)")
    if out.resolve().is_relative_to(root.resolve()):
        raise MediaError(f"{what}: inside the staging tree {root}; it would end up in itself")
    problems = level1_problems(root)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                            if len(problems) > 5 else "")
        raise MediaError(f"{root}: cannot master as ISO 9660 level 1: {shown}")
    vid = vol_id or volume_id(fileset_id_of(root))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise BurnError(f"{what}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BurnError(f"{what}: the folder {parent} is not writable")
    _count, needed = tree_size(root)
    check_free_space(parent, needed, what)
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)  # xorriso would otherwise append a session to an old image
    start = time.monotonic()
    try:
        run_xorriso(xorriso_args(root, f"stdio:{part}", vid), what, timeout)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return IsoResult(out, out.stat().st_size, vid, time.monotonic() - start)
