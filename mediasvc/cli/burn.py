"""`mediasvc burn STAGING --to TARGET [--copies N] [--verify] [--volumes LIST] [--json]`.

TARGET: iso:PATH, drive:/dev/srN, folder:PATH, ptburn:FOLDER, epson:FOLDER. STAGING is one
volume (a folder with a DICOMDIR) or an export's DIR holding VOL001, VOL002, ...
--volumes 2-3 (or 1,3) burns only those volumes of a spanned set: after a burn that failed or
was cut off half way, the rest, without burning again the discs already made (the error says
which those are).
Exit 0 when every copy was written (and verified with --verify), 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("burn", help="write staged volumes to an ISO image, drive, folder or "
                                    "disc publisher",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("staging", type=Path, help="a volume (DICOMDIR at its root) or DIR/VOLnnn")
    p.add_argument("--to", dest="target", required=True, metavar="TARGET",
                   help="iso:PATH | drive:/dev/srN | folder:PATH | ptburn:FOLDER | epson:FOLDER")
    p.add_argument("--copies", type=int, default=1, help="copies of each volume (drives and "
                                                         "publishers)")
    p.add_argument("--verify", action="store_true",
                   help="read back every file and compare its SHA-256 with the staging tree")
    p.add_argument("--label-data", type=Path, metavar="FILE",
                   help="TOML: label template and fixed merge fields (docs/media.md)")
    p.add_argument("--institution", default="", help="institution named on the label")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on xorriso or a publisher job after this long")
    p.add_argument("--pickup-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="publishers: withdraw a job not picked up within this time")
    p.add_argument("--volumes", metavar="LIST",
                   help="only these volumes of a spanned set, e.g. 2-3 or 1,3 (default: all)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def parse_volumes(text: str, count: int) -> set[int]:
    """'2-3', '1,3', '2' -> volume numbers; UsageError for anything outside 1..count."""
    from mediasvc.errors import UsageError

    wanted: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise UsageError(f"--volumes {text!r}: numbers and ranges, e.g. 2-3 or 1,3"
                             ) from None
        if not 1 <= low <= high <= count:
            raise UsageError(f"--volumes {text!r}: the staging tree holds volumes 1 to "
                             f"{count}")
        wanted.update(range(low, high + 1))
    return wanted


def _ranges(numbers: list[int]) -> str:
    """[2, 3, 5] -> '2-3,5'."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def run(args: argparse.Namespace) -> int:
    # Imported here: `mediasvc --help` and the other subcommands need not load pydicom & co.
    from mediasvc.errors import MediaError
    from mediasvc.media.burners import parse_target
    from mediasvc.media.burners.publisher import PublisherBackend
    from mediasvc.media.burning import burn
    from mediasvc.media.pdi import SiteInfo
    from mediasvc.media.staging import volumes_of

    backend = parse_target(args.target)
    if isinstance(backend, PublisherBackend):
        backend.pickup_timeout = args.pickup_timeout
        if args.timeout is not None:
            backend.timeout = args.timeout
    count = len(volumes_of(args.staging))
    wanted = parse_volumes(args.volumes, count) if args.volumes else set(range(1, count + 1))
    burned: list[int] = []
    try:
        report = burn(args.staging, backend, copies=args.copies, verify=args.verify,
                      label_file=args.label_data, site=SiteInfo(institution=args.institution),
                      timeout=args.timeout, skip=set(range(1, count + 1)) - wanted,
                      on_volume=lambda entry: burned.append(int(entry["volume"])))
    except (MediaError, KeyboardInterrupt) as exc:
        if count > 1 and burned:
            # Which discs exist already, and the command for the others: never burn twice.
            hint = (f"volume(s) {_ranges(burned)} of {count} were burned before this; for the "
                    f"rest: mediasvc burn {args.staging} --to {args.target} --volumes "
                    f"{_ranges(sorted(wanted - set(burned)))}")
            if isinstance(exc, KeyboardInterrupt):
                print(f"mediasvc: {hint}", file=sys.stderr)
                raise
            raise type(exc)(f"{exc}\n{hint}") from exc
        raise
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for vol in report.volumes:
            for c in vol["copies"]:
                ver = ("" if c.verified is None else
                       f", verified ({c.verify_method})" if c.verified else ", VERIFY FAILED")
                print(f"volume {vol['volume']} copy {c.copy}: {c.status} -> {c.target}"
                      f"{ver}; {c.detail}")
    return 0
