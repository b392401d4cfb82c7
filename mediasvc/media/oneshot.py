"""Source files -> ISO image(s) in one pass: `mediasvc export SRC --to iso:OUT.iso`.

    done = export_iso(sources, out, profile, writer="pycdlib", fileset_id=..., ...)

1. the File-Set Creator scans the headers once and writes the DICOMDIR (PS3.10 7.1) into a
   small temp folder beside OUT, with its "map" link mode: no instance is placed, each File ID
   is recorded with the source that holds its bytes (transcoded instances are the exception:
   they are new files, written into the temp folder);
2. README.TXT and INDEX.HTM (IHE PDI; IHE_PDI/ with ``web``) go into the same folder, as
   `export --out` writes them (media/production.py: the same code, the same bytes);
3. the image writer reads the temp folder and the sources under their ISO names: each byte of
   an instance is read once and written once, into the image. No staging copy, no second
   process start (pycdlib runs in this process; xorriso is the tool itself).

Spanning: content beyond the capacity gives one image per volume, OUT-VOL001.iso,
OUT-VOL002.iso, ... (the names `burn --to iso:` gives a spanned staging tree). Durability:
every image is written as NAME.part beside its final name and fsynced; only when all are
complete are they renamed (then the folder is fsynced): a failure leaves no image under a
final name, and the temp folder is always removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediasvc.durable import fsync_dir
from mediasvc.errors import UsageError
from mediasvc.media.burners.image import image_path
from mediasvc.media.iso import (
    DEFAULT_WRITER,
    ImageFiles,
    IsoResult,
    check_free_space,
    check_image_target,
    image_files,
    volume_id,
    write_image,
)
from mediasvc.media.production import ProductionReport, produce
from mediasvc.media.verify import compare, files_checksums, iso_checksums, raise_if_bad
from mediasvc.profiles import MediaProfile


@dataclass
class IsoExport:
    report: ProductionReport
    images: list[IsoResult] = field(default_factory=list)
    writer: str = DEFAULT_WRITER
    verified: bool = False


def export_iso(sources: Sequence[Path], out: Path, profile: MediaProfile, *,
               writer: str = DEFAULT_WRITER, verify: bool = False,
               timeout: float | None = None,
               accept: Callable[[ProductionReport], None] | None = None,
               **options: Any) -> IsoExport:
    """Scan SOURCES once and master the image(s) OUT (see the module docstring).
    ``options``: produce()'s (fileset_id, capacity, compress, web, viewer, site, workers).
    ``accept``: called with the report before any image is written (may raise to refuse).
    ``verify``: every file read back from each image and compared with its source."""
    parent = check_image_target(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    parts: list[Path] = []
    try:
        report = produce(sources, tmp / "media", profile, link="map", **options)
        if accept is not None:
            accept(report)
        done = IsoExport(report, writer=writer, verified=verify)
        if not report.volumes:
            return done
        count = len(report.volumes)
        plan: list[tuple[Path, ImageFiles, str]] = []
        for vol in report.volumes:
            plan.append((image_path(out, vol.number, count),
                         image_files(vol.root, vol.mapped), volume_id(vol.fileset_id)))
        check_free_space(parent, sum(v.image_bytes for v in report.volumes), f"ISO image {out}")
        for target, files, vid in plan:
            part = target.with_name(target.name + ".part")
            parts.append(part)
            result = write_image(files, part, vid, writer=writer, timeout=timeout)
            if verify:
                check = compare(files_checksums(files), iso_checksums(part))
                raise_if_bad(check, f"ISO image {target}")
            done.images.append(IsoResult(target, result.size, vid, result.seconds))
        for (target, _files, _vid), part in zip(plan, parts, strict=True):
            os.replace(part, target)
        fsync_dir(parent)
        for vol, image in zip(report.volumes, done.images, strict=True):
            vol.root = vol.result.root = image.path  # the volume is the image now
        return done
    except BaseException:
        for part in parts:
            part.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def iso_target(target: str) -> Path:
    """`--to iso:PATH` -> PATH (the one-pass export writes images only)."""
    kind, _, where = target.partition(":")
    if kind != "iso" or not where:
        raise UsageError(f"--to {target}: export writes iso:PATH (burn the image or an --out "
                         "staging tree to drives, folders and publishers)")
    return Path(where)
