#!/usr/bin/env python3
"""A small disc-publisher emulator: the outer interface of PTBurn / Epson TD Bridge, for tests.

    python tests/publisher_emulator.py --kind ptburn|epson FOLDER [--step S] [--ignore]
                                       [--stall-in-progress] [--fail-burn]

It watches FOLDER for job files and moves each through the vendor's lifecycle by renaming it:
ptburn .JRQ -> .QRJ -> .INP -> .DON, epson .JDF -> .RJD -> .INP -> .DON, each step after
``--step`` seconds. A malformed job (a line without '=', a missing image, bad copies, an image
that is not ISO 9660) ends in .ERR with the reason appended, as the real software does.
``--ignore`` never picks jobs up (pickup timeout); ``--stall-in-progress`` stops in .INP
(overall timeout); ``--fail-burn`` ends every job in .ERR as if the drive failed.
On .DON it appends what it "burned": the image's volume id and one line per copy.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

KINDS = {
    "ptburn": {"states": (".JRQ", ".QRJ", ".INP", ".DON", ".ERR"), "image": "ImageFile",
               "copies": "Copies", "error": ("ErrorString", "ErrorCode"), "id": "JobID"},
    "epson": {"states": (".JDF", ".RJD", ".INP", ".DON", ".ERR"), "image": "IMAGE",
              "copies": "COPIES", "error": ("ERROR", "ERROR_CODE"), "id": "JOB_ID"},
}


def parse(path: Path) -> tuple[dict[str, list[str]], str | None]:
    fields: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            return fields, f"line {n}: not KEY=value"
        fields.setdefault(key.strip(), []).append(value.strip())
    return fields, None


def check(kind: dict[str, object], fields: dict[str, list[str]]) -> str | None:
    image_key, copies_key = str(kind["image"]), str(kind["copies"])
    if image_key not in fields:
        return f"{image_key} missing"
    image = Path(fields[image_key][0])
    if not image.is_file():
        return f"image {image} not found"
    with image.open("rb") as fh:
        fh.seek(16 * 2048 + 1)
        if fh.read(5) != b"CD001":
            return f"image {image} is not ISO 9660"
    copies = fields.get(copies_key, ["1"])[0]
    if not copies.isdigit() or not 1 <= int(copies) <= 1000:
        return f"{copies_key}={copies} is not 1..1000"
    return None


def volume_id(image: Path) -> str:
    with image.open("rb") as fh:
        fh.seek(16 * 2048 + 40)
        return fh.read(32).decode("ascii", "replace").strip()


def step(folder: Path, kind: dict[str, object], args: argparse.Namespace) -> None:
    states = kind["states"]
    assert isinstance(states, tuple)
    submitted, queued, progress, done, error = states
    for job in sorted(folder.iterdir()):
        ext = job.suffix.upper()
        if ext == submitted:
            if args.ignore:
                continue
            fields, problem = parse(job)
            problem = problem or check(kind, fields)
            if problem:
                err_key, code_key = kind["error"]  # type: ignore[misc]
                with job.open("a", encoding="ascii") as fh:
                    fh.write(f"\n{err_key}=malformed job: {problem}\n{code_key}=1\n")
                job.rename(job.with_suffix(error))
            else:
                job.rename(job.with_suffix(queued))
        elif ext == queued:
            job.rename(job.with_suffix(progress))
        elif ext == progress and not args.stall_in_progress:
            fields, _ = parse(job)
            err_key, code_key = kind["error"]  # type: ignore[misc]
            if args.fail_burn:
                with job.open("a", encoding="ascii") as fh:
                    fh.write(f"\n{err_key}=drive error: write failed at sector 1234\n"
                             f"{code_key}=522\n")
                job.rename(job.with_suffix(error))
                continue
            copies = int(fields.get(str(kind["copies"]), ["1"])[0])
            vid = volume_id(Path(fields[str(kind["image"])][0]))
            with job.open("a", encoding="ascii") as fh:
                fh.write(f"\nVolumeId={vid}\n")
                fh.writelines(f"Copy{n}=OK\n" for n in range(1, copies + 1))
            job.rename(job.with_suffix(done))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--kind", choices=sorted(KINDS), required=True)
    ap.add_argument("--step", type=float, default=0.2, help="seconds per lifecycle step")
    ap.add_argument("--ignore", action="store_true")
    ap.add_argument("--stall-in-progress", action="store_true")
    ap.add_argument("--fail-burn", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "EMULATOR.RDY").write_text("ready\n")  # tests wait for this
    while True:
        step(args.folder, KINDS[args.kind], args)
        time.sleep(args.step)


if __name__ == "__main__":
    sys.exit(main())
