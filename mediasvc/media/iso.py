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

``write_image`` masters a list of (path on the image, file on disk) instead of a tree: the
one-pass export (media/oneshot.py) hands it the sources under their File IDs, with pycdlib
(default) or xorriso (``-pathspecs on -path_list -``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from mediasvc import __version__
from mediasvc.durable import start_writeback
from mediasvc.errors import BurnError, CapacityError, MediaError
from mediasvc.media.direct import fill_extents
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


def run_xorriso(args: Sequence[str], what: str, timeout: float | None = None,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run xorriso; a failure becomes BurnError with xorriso's own FAILURE/SORRY lines."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=False, input=input)
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


def check_image_target(out: Path) -> Path:
    """The folder the image OUT goes into; BurnError before any work when it cannot take it."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise BurnError(f"ISO image {out}: is a folder; name the image file")
    if not parent.is_dir():
        raise BurnError(f"ISO image {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BurnError(f"ISO image {out}: the folder {parent} is not writable")
    return parent


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
    parent = check_image_target(out)
    _count, needed = tree_size(root)
    check_free_space(parent, needed, what)
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)  # xorriso would otherwise append a session to an old image
    start = time.monotonic()
    try:
        run_xorriso(xorriso_args(root, f"stdio:{part}", vid), what, timeout)
        try:
            os.replace(part, out)
        except OSError as exc:
            raise BurnError(f"{what}: {exc.strerror}; nothing was kept") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return IsoResult(out, out.stat().st_size, vid, time.monotonic() - start)


# -- mastering from a file list (the one-pass export, media/oneshot.py) -----------------------

# Both read the files where they lie. pycdlib lays out the image and writes its directory;
# the file data goes into the extents it assigned by direct I/O, or sendfile (_copy_extents).
# xorriso gets the list on stdin (-pathspecs on -path_list -: no argument length limit).
# pycdlib is the default: measured faster (docs/media.md).
ISO_WRITERS = ("pycdlib", "xorriso")
DEFAULT_WRITER = "pycdlib"
COPY_BLOCK = 1 << 20  # pycdlib's own writes (directory, DICOMDIR ...): 1 MiB, not 32 KiB

ImageFiles = list[tuple[str, Path]]  # (path on the image 'DICOM/PA000001/...', file on disk)


def image_files(root: Path, mapped: Mapping[str, Path]) -> ImageFiles:
    """Every file of one image, sorted by path on the image: what lies under ROOT (DICOMDIR,
    README.TXT, INDEX.HTM, IHE_PDI/, transcoded files; not our hidden markers) and the mapped
    sources. MediaError for a name ISO 9660 level 1 cannot hold or a path given twice."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            if not name.startswith("."):
                files[name if rel == "." else f"{rel}/{name}"] = Path(dirpath) / name
    for iso_path, src in mapped.items():
        if iso_path in files:
            raise MediaError(f"{iso_path}: both under {root} and mapped from {src}")
        files[iso_path] = src
    for iso_path in files:
        *dirs, name = iso_path.split("/")
        if (not LEVEL1_FILE.fullmatch(name) or len(dirs) >= MAX_DEPTH
                or not all(LEVEL1_DIR.fullmatch(d) for d in dirs)):
            raise MediaError(f"{iso_path}: not an ISO 9660 level 1 name (8.3 of A-Z 0-9 _, "
                             f"at most {MAX_DEPTH} levels)")
    return sorted(files.items(), key=lambda item: item[0].split("/"))


def mapped_size(mapped: Mapping[str, Path]) -> int:
    """Bytes the mapped files occupy in an image: whole blocks each, a block per folder."""
    folders = {p.rsplit("/", 1)[0] for p in mapped if "/" in p}
    return sum(blocks(src.stat().st_size) for src in mapped.values()) + BLOCK * len(folders)


def write_image(files: ImageFiles, dest: Path, vol_id: str, *, writer: str = DEFAULT_WRITER,
                timeout: float | None = None) -> IsoResult:
    """Master FILES into DEST (a temp name: the caller renames it), fsynced; on any failure
    DEST is removed. A source changed while it was read makes the image fail: its extent
    was sized before (pycdlib would pad a shrunk file silently)."""
    if writer not in ISO_WRITERS:
        raise MediaError(f"ISO writer {writer!r}: choose one of {', '.join(ISO_WRITERS)}")
    what = f"ISO image {dest}"
    start = time.monotonic()
    dest.unlink(missing_ok=True)  # xorriso would otherwise append a session to an old image
    try:
        before = [os.stat(src) for _, src in files]
        if writer == "xorriso":
            _write_xorriso(files, dest, vol_id, what, timeout)
        else:
            _write_pycdlib(files, dest, vol_id, what)
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)  # the image is on disk before the caller's rename makes it visible
        finally:
            os.close(fd)
        for (iso_path, src), st in zip(files, before, strict=True):
            now = os.stat(src)
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise BurnError(f"{what}: {src} ({iso_path}) changed while the image was "
                                "written; nothing was kept")
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise BurnError(f"{what}: {exc.strerror or exc} ({exc.filename})") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return IsoResult(dest, dest.stat().st_size, vol_id, time.monotonic() - start)


def _write_xorriso(files: ImageFiles, dest: Path, vol_id: str, what: str,
                   timeout: float | None) -> None:
    # -pathspecs on: "ISO_PATH=DISK_PATH", '=' escaped only in the ISO path (ours have none),
    # one per line; realpath: xorriso would store a symbolic link as a link, not its file.
    lines = []
    for iso_path, src in files:
        disk = os.path.realpath(src)
        if "\n" in disk:
            raise BurnError(f"{what}: xorriso cannot take the source {src!r} (a line break in "
                            "its name); use --iso-writer pycdlib")
        lines.append(f"/{iso_path}={disk}\n")
    args = [XORRISO, "-no_rc", "-report_about", "SORRY", "-abort_on", "FAILURE",
            "-outdev", f"stdio:{dest}", "-stdio_sync", "off",
            "-rockridge", "off", "-joliet", "off", "-compliance", "iso_9660_level=1",
            "-volid", vol_id, "-application_id", f"MEDIASVC {__version__}",
            "-pathspecs", "on", "-path_list", "-"]
    names = {p for p, _ in files}
    for name, weight in ROOT_ORDER:
        if name in names:
            args += ["-find", f"/{name}", "-exec", "sort_weight", str(weight), "--"]
    run_xorriso([*args, "-commit"], what, timeout, input="".join(lines))


class _Extent:
    """A file handed to pycdlib with no bytes: pycdlib lays it out and writes the directory,
    the file's read() answers nothing (pycdlib then leaves the extent as a hole; it does so
    for files that are shorter than their record, see its utils.copy_data_yield) and records
    where the extent starts; _copy_extents fills it in the kernel afterwards."""

    mode = "rb"  # what pycdlib checks of a file object

    def __init__(self, src: Path, size: int, out: BinaryIO) -> None:
        self.src, self.size, self.out = src, size, out
        self.offset = -1

    def seek(self, _pos: int, _whence: int = 0) -> int:
        return 0

    def read(self, _n: int = -1) -> bytes:
        if self.offset < 0:
            self.offset = self.out.tell()
        return b""


def _write_pycdlib(files: ImageFiles, dest: Path, vol_id: str, what: str) -> None:
    import pycdlib  # local: only this writer and verification need it
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.new(interchange_level=1, vol_ident=vol_id, app_ident_str=f"MEDIASVC {__version__}")
        with dest.open("wb") as fh:
            extents: list[_Extent] = []
            made: set[str] = set()
            for iso_path, src in files:
                *dirs, name = iso_path.split("/")
                for n in range(1, len(dirs) + 1):
                    folder = "/".join(dirs[:n])
                    if folder not in made:
                        iso.add_directory("/" + folder)
                        made.add(folder)
                extent = _Extent(src, os.stat(src).st_size, fh)
                extents.append(extent)
                # ECMA-119 7.5: a file identifier always has the separator '.' (DICOMDIR.;1).
                ident = name if "." in name else name + "."
                iso.add_fp(cast(BinaryIO, extent), extent.size,
                           "/" + "/".join([*dirs, ident]) + ";1")
            iso.write_fp(fh, blocksize=COPY_BLOCK)
            fh.flush()
            _copy_extents(extents, fh.fileno(), dest)
    except PyCdlibException as exc:
        raise BurnError(f"{what}: pycdlib failed: {exc}") from exc
    finally:
        with contextlib.suppress(PyCdlibException):  # close() refuses an unopened object
            iso.close()


WRITEBACK_EVERY = 64 << 20  # start writing the image to the disk every 64 MiB copied


def _copy_extents(extents: Sequence[_Extent], out_fd: int, dest: Path) -> None:
    """Each source into its extent, in block order: by direct I/O (media/direct.py), or where
    the file system refuses it, by the kernel (sendfile), no byte passing through Python, with
    writeback of the image started every 64 MiB as it grows, so that the final fsync does not
    wait for all of it (measured: 1 GB copy + fsync 0.6-0.8 s with, 0.8-1.5 without)."""
    for extent in extents:
        if extent.size and extent.offset < 0:
            raise MediaError(f"{extent.src}: pycdlib gave it no extent")
    end = max([os.fstat(out_fd).st_size, *(e.offset + e.size for e in extents if e.size)])
    if fill_extents(dest, [(e.src, e.offset, e.size) for e in extents], end):
        return
    pending = done = 0
    for extent in sorted((e for e in extents if e.size), key=lambda e: e.offset):
        with extent.src.open("rb") as fh:
            _copy_range(fh.fileno(), out_fd, extent.size, extent.offset, extent.src)
        pending += extent.size
        if pending >= WRITEBACK_EVERY:
            start_writeback(out_fd, done, pending)
            done, pending = done + pending, 0


def _copy_range(in_fd: int, out_fd: int, size: int, offset: int, src: Path) -> None:
    # sendfile: in the kernel, from any file system (copy_file_range was no faster here and
    # refuses some pairs of file systems).
    os.lseek(out_fd, offset, os.SEEK_SET)
    copied = 0
    while copied < size:
        n = os.sendfile(out_fd, in_fd, copied, size - copied)
        if n == 0:
            raise MediaError(f"{src}: shorter than when it was listed ({copied} of {size} "
                             "bytes)")
        copied += n
