"""`mediasvc export SRC... --profile ID --out DIR | --to iso:PATH`: a file-set (FSC) as PDI
media, as a staging tree or, in one pass, as ISO image(s) (media/oneshot.py).

Every volume gets README.TXT and INDEX.HTM (IHE PDI); --web adds IHE_PDI/, --viewer a viewer
folder; content beyond the capacity is spanned over DIR/VOL001, DIR/VOL002, ...
(media/production.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mediasvc.config import parse_size
from mediasvc.errors import UsageError
from mediasvc.fileset.creator import FileSetResult, human_size
from mediasvc.fileset.transcode import COMPRESS_CHOICES
from mediasvc.media.iso import DEFAULT_WRITER, ISO_WRITERS
from mediasvc.media.pdi import SiteInfo
from mediasvc.media.production import ProductionReport, produce
from mediasvc.profiles import media_profile


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="create a DICOM file-set (DICOMDIR) from files/folders",
                       description="Create a file-set for a media application profile.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                   help="DICOM files or folders (searched recursively)")
    p.add_argument("--profile", default="STD-GEN-CD",
                   help="media application profile (default STD-GEN-CD)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="new or empty output folder (staging tree)")
    where.add_argument("--to", metavar="iso:PATH",
                       help="ISO image(s) in one pass, no staging tree (PATH-VOL001.iso ... "
                            "when spanned)")
    p.add_argument("--iso-writer", choices=ISO_WRITERS, default=DEFAULT_WRITER,
                   help=f"with --to iso: the image writer (default {DEFAULT_WRITER}, the "
                        "faster here; docs/media.md)")
    p.add_argument("--fileset-id", help="File-set ID (max 16 of A-Z 0-9 _ space)")
    p.add_argument("--capacity", help="override the profile's capacity, e.g. 700M, 4.7G")
    p.add_argument("--compress", choices=sorted(COMPRESS_CHOICES),
                   help="compress uncompressed images, where the profile allows it")
    p.add_argument("--link", choices=("copy", "hardlink", "reflink"), default="hardlink",
                   help="how files are placed (default hardlink: no byte written twice; "
                        "copy where sources may change)")
    p.add_argument("--web", action="store_true",
                   help="add IHE PDI web content (IHE_PDI/: XHTML pages, JPEG renderings)")
    p.add_argument("--viewer", type=Path, metavar="DIR",
                   help="copy a viewer folder onto every volume (no autorun)")
    p.add_argument("--institution", default="", help="creating institution, for README.TXT")
    p.add_argument("--contact", default="", help="contact (phone, e-mail), for README.TXT")
    p.add_argument("--workers", type=int, help="parallel workers (default: CPU count)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    profile = media_profile(args.profile)
    capacity = None
    if args.capacity:
        try:
            capacity = parse_size(args.capacity)
        except ValueError as exc:
            raise UsageError(f"--capacity: {exc}") from exc
    options: dict[str, Any] = dict(
        fileset_id=args.fileset_id, capacity=capacity, compress=args.compress,
        workers=args.workers, web=args.web, viewer=args.viewer,
        site=SiteInfo(args.institution, args.contact))
    if args.to is not None:
        from mediasvc.media.oneshot import export_iso, iso_target

        done = export_iso(args.sources, iso_target(args.to), profile, writer=args.iso_writer,
                          **options)
        report = done.report
        print_production(report, as_json=args.json,
                         images=[{"path": str(i.path), "bytes": i.size, "volume_id": i.volume_id,
                                  "writer": done.writer} for i in done.images])
    else:
        report = produce(args.sources, args.out, profile, link=args.link, **options)
        print_production(report, as_json=args.json)
    placed = report.count("placed") + report.count("transcoded")
    return 1 if report.count("rejected") or not placed else 0


def print_production(report: ProductionReport, *, as_json: bool,
                     images: list[dict[str, Any]] | None = None) -> None:
    if as_json:
        data = report.to_json()
        if images is not None:
            data["images"] = images
        sys.stdout.write(json.dumps(data, indent=2))
        print()
        return
    for image in images or []:
        print(f"ISO image {image['path']}: {image['bytes']} bytes, volume id "
              f"{image['volume_id']} ({image['writer']})")
    if not report.volumes:
        for v in report.scan_verdicts:
            print(f"  REJECTED {v.path}: {v.reason}")
        print("nothing exported: no input file was accepted")
        return
    n = len(report.volumes)
    if n > 1:
        print(f"content spans {n} volumes of {human_size(report.capacity)} under {report.out}")
    for vol in report.volumes:
        if n > 1:
            print(f"volume {vol.number} of {n}: {vol.root} ({vol.instances} instances, "
                  f"{human_size(vol.image_bytes)} on disc)")
        print_report(vol.result, as_json=False)
    for v in report.scan_verdicts:
        print(f"  {'REJECTED' if v.status == 'rejected' else v.status} {v.path}: {v.reason}")
    for note in report.split_notes + report.notes:
        print(f"  note: {note}")


def print_report(result: FileSetResult, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2))
        print()
        return
    placed, transcoded = result.count("placed"), result.count("transcoded")
    if placed + transcoded:
        print(f"file-set {result.fileset_id} ({result.profile}) at {result.root}: "
              f"{placed + transcoded} instances, {human_size(result.bytes_written)}")
    print(f"placed {placed}, transcoded {transcoded}, identical duplicates "
          f"{result.count('duplicate')}, rejected {result.count('rejected')}")
    for v in result.verdicts:
        if v.status == "transcoded":
            print(f"  transcoded {v.path}: {v.reason}")
        elif v.status == "rejected":
            print(f"  REJECTED {v.path}: {v.reason}")
        elif v.status == "placed" and v.reason:
            print(f"  note {v.path}: {v.reason}")
