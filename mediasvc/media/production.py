"""Media production: sources -> one or more complete PDI volumes ready to burn.

    report = produce(sources, out, profile, capacity=None, web=False, viewer=None, ...)

1. scan the sources against the profile (File-set Creator, fileset/creator.py);
2. plan volumes (spanning.py) when the content exceeds the capacity (profile or --capacity):
   one volume -> OUT is the volume; several -> OUT/VOL001, OUT/VOL002, ...;
3. write each volume as a complete file-set (its own DICOMDIR), by default with hard links
   to the sources: no byte is written twice on the way to an ISO image; with ``link="map"``
   nothing is placed and each volume's ``mapped`` says which source holds which file (the
   one-pass export to an ISO image, media/oneshot.py);
4. add the PDI root content: README.TXT and INDEX.HTM always (IHE PDI), IHE_PDI/ with
   ``web``, the viewer folder with ``viewer``; each README says "volume k of n" and lists
   what is on the other volumes;
5. check each volume against the capacity as written (transcoding changes sizes).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediasvc.errors import CapacityError, MediaError, UsageError
from mediasvc.fileset.creator import (
    PARTIAL_MARKER,
    FileSetResult,
    Verdict,
    check_fileset_id,
    default_fileset_id,
    human_size,
    scan_sources,
    write_fileset,
)
from mediasvc.media.iso import (
    LEVEL1_DIR,
    LEVEL1_FILE,
    level1_problems,
    mapped_size,
    tree_size,
)
from mediasvc.media.pdi import (
    SiteInfo,
    VolumeContext,
    VolumeInfo,
    read_volume,
    volume_from_instances,
    write_root_files,
)
from mediasvc.media.spanning import VOLUME_RESERVE, Item, Plan, plan_volumes
from mediasvc.media.staging import PRODUCTION_MARKER, volume_dir_name
from mediasvc.media.web import ESTIMATED_BYTES_PER_IMAGE, write_web_content
from mediasvc.profiles import MediaProfile

AUTORUN = re.compile(r"autorun\.inf", re.IGNORECASE)


@dataclass
class VolumeReport:
    number: int
    root: Path
    fileset_id: str
    result: FileSetResult
    instances: int = 0
    image_bytes: int = 0  # as it will occupy an ISO image
    web_images: int = 0
    # link="map": path on the image ('DICOM/PA000001/...') -> the source file holding its
    # bytes; these files are not under ``root`` (media/oneshot.py masters from root + map).
    mapped: dict[str, Path] = field(default_factory=dict)


@dataclass
class ProductionReport:
    out: Path
    profile: str
    capacity: int
    scan_verdicts: list[Verdict] = field(default_factory=list)
    volumes: list[VolumeReport] = field(default_factory=list)
    split_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdicts(self) -> list[Verdict]:
        return self.scan_verdicts + [v for vol in self.volumes for v in vol.result.verdicts]

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "profile": self.profile, "capacity": self.capacity,
            "volumes": [{"volume": v.number, "root": str(v.root), "fileset_id": v.fileset_id,
                         "instances": v.instances, "image_bytes": v.image_bytes,
                         "web_images": v.web_images, "fileset": v.result.to_json()}
                        for v in self.volumes],
            "splits": self.split_notes,
            "notes": self.notes,
            "counts": {s: self.count(s) for s in ("placed", "transcoded", "duplicate",
                                                  "rejected")},
            "rejected": [v.to_json() for v in self.verdicts if v.status == "rejected"],
            # Every input file's verdict, whatever volume it went to (the lead's tests and
            # scripts read this).
            "files": [v.to_json() for v in self.verdicts],
        }


def volume_fileset_id(base: str, number: int, count: int) -> str:
    """File-set ID of volume k: the base when alone, else base (12 chars at most) + Vnnn."""
    if count == 1:
        return base
    return check_fileset_id(f"{base[:12].rstrip()}V{number:03d}")


def _viewer_files(viewer: Path) -> tuple[str, list[tuple[Path, Path]], list[str]]:
    """(folder name on the medium, [(source, relative target)], notes); UsageError on names
    that ISO 9660 level 1 cannot hold (the viewer would not find its own files)."""
    if not viewer.is_dir():
        raise UsageError(f"--viewer {viewer}: not a folder")
    name = viewer.name.upper()
    if not re.fullmatch(r"[A-Z0-9_]{1,8}", name) or name in ("DICOM", "IHE_PDI"):
        name = "VIEWER"
    files: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for dirpath, _dirs, filenames in os.walk(viewer):
        for fname in sorted(filenames):
            src = Path(dirpath) / fname
            rel = src.relative_to(viewer)
            if AUTORUN.fullmatch(fname):
                # IHE PDI: the medium must not start anything by itself.
                notes.append(f"viewer: {rel} left out (no autorun on PDI media)")
                continue
            target = Path(*(p.upper() for p in rel.parts))
            bad = [p for p in target.parts[:-1] if not LEVEL1_DIR.fullmatch(p)]
            if bad or not LEVEL1_FILE.fullmatch(target.name) or len(target.parts) > 6:
                raise UsageError(f"--viewer {viewer}: {rel} has a name ISO 9660 level 1 cannot "
                                 "hold (8.3 names of A-Z 0-9 _, at most 6 levels deep)")
            files.append((src, target))
    return name, files, notes


def _copy_viewer(root: Path, name: str, files: Sequence[tuple[Path, Path]], link: str,
                 mapped: dict[str, Path]) -> None:
    for src, rel in files:
        if link == "map":
            mapped[f"{name}/{rel.as_posix()}"] = src
            continue
        dst = root / name / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if link == "hardlink":
            try:
                os.link(src, dst)
                continue
            except OSError:
                pass  # another file system: copy
        shutil.copy2(src, dst)


def _prepare(out: Path) -> None:
    if out.exists() and (out / PRODUCTION_MARKER).exists():
        # An interrupted spanning export of ours: redo it from the start.
        for child in out.iterdir():
            if re.fullmatch(r"VOL\d{3}", child.name):
                shutil.rmtree(child)
    elif out.exists() and any(out.iterdir()):
        raise MediaError(f"{out} is not empty; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / PRODUCTION_MARKER).touch()


def produce(sources: Sequence[Path], out: Path, profile: MediaProfile, *,
            capacity: int | None = None, fileset_id: str | None = None,
            compress: str | None = None, link: str = "hardlink", web: bool = False,
            viewer: Path | None = None, site: SiteInfo | None = None,
            workers: int | None = None) -> ProductionReport:
    site = site or SiteInfo()
    cap = capacity or profile.capacity
    base_id = check_fileset_id(fileset_id) if fileset_id else default_fileset_id()
    viewer_name = ""
    viewer_files: list[tuple[Path, Path]] = []
    viewer_notes: list[str] = []
    if viewer is not None:
        viewer_name, viewer_files, viewer_notes = _viewer_files(viewer)
    viewer_bytes = sum(-(-s.stat().st_size // 2048) * 2048 for s, _ in viewer_files)

    scan = scan_sources(sources, profile, compress=compress, workers=workers)
    report = ProductionReport(out, profile.id, cap, scan_verdicts=list(scan.verdicts),
                              notes=list(viewer_notes))
    if not scan.instances:
        return report
    extra = ESTIMATED_BYTES_PER_IMAGE if web else 0
    items = [Item(i.study_uid, i.series_uid, i.sop_instance_uid, i.size + extra, ref=i)
             for i in scan.instances]
    plan: Plan = plan_volumes(items, cap, reserve=VOLUME_RESERVE + viewer_bytes)
    report.split_notes = [s.describe() for s in plan.splits]
    count = len(plan.volumes)

    if count == 1:
        roots = [out]
    else:
        _prepare(out)
        roots = [out / volume_dir_name(v.number) for v in plan.volumes]
    for vol, root in zip(plan.volumes, roots, strict=True):
        fsid = volume_fileset_id(base_id, vol.number, count)
        result = write_fileset([i.ref for i in vol.items], root, profile, fileset_id=fsid,
                               link=link, workers=workers, complete=False)
        report.volumes.append(VolumeReport(vol.number, root, fsid, result, mapped={
            "/".join(comps): src for comps, src in result.mapped.items()}))

    # What each volume holds, for README/INDEX: with web content from the DICOMDIR just
    # written (the pages show keys the profile may not carry); else from the creator's data.
    infos: list[VolumeInfo] = []
    for vol, vrep in zip(plan.volumes, report.volumes, strict=True):
        if web:
            infos.append(read_volume(vrep.root))
            continue
        file_ids = {v.sop_instance_uid: v.file_id for v in vrep.result.verdicts
                    if v.status in ("placed", "transcoded") and v.file_id}
        info = volume_from_instances([i.ref for i in vol.items], file_ids)
        info.fileset_id = vrep.fileset_id
        infos.append(info)
    for vrep, info in zip(report.volumes, infos, strict=True):
        links: dict[str, str] | None = None
        if web:
            web_result = write_web_content(vrep.root, info, mapped=vrep.result.mapped)
            links, vrep.web_images = web_result.study_pages, web_result.images
        if viewer_files:
            _copy_viewer(vrep.root, viewer_name, viewer_files, link, vrep.mapped)
        others = tuple((o.number, infos[o.number - 1]) for o in report.volumes
                       if o.number != vrep.number)
        ctx = VolumeContext(vrep.number, count, others, tuple(report.split_notes), web,
                            viewer_name or None)
        write_root_files(vrep.root, info, site, ctx, links)
        # The volume is whole now: README.TXT and INDEX.HTM are there (an export killed before
        # them left the creator's marker, and is redone when run again).
        (vrep.root / PARTIAL_MARKER).unlink(missing_ok=True)
        vrep.instances = info.instance_count
        _files, vrep.image_bytes = tree_size(vrep.root)
        vrep.image_bytes += mapped_size(vrep.mapped)
        problems = level1_problems(vrep.root)
        if problems:
            raise MediaError(f"{vrep.root}: not ISO 9660 level 1: {problems[0]}")
        if vrep.image_bytes > cap:
            raise CapacityError(
                f"volume {vrep.number} ({vrep.root}) came out at {human_size(vrep.image_bytes)},"
                f" more than the capacity {human_size(cap)} (transcoding or web content larger "
                "than estimated); export again with a smaller --capacity")
    if count > 1:
        (out / PRODUCTION_MARKER).unlink(missing_ok=True)
    return report
