"""`mediasvc burn STAGING --to TARGET [--copies N] [--verify] [--label-data FILE] [--json]`.

TARGET: iso:PATH, drive:/dev/srN, folder:PATH, ptburn:FOLDER, epson:FOLDER. STAGING is one
volume (a folder with a DICOMDIR) or an export's DIR holding VOL001, VOL002, ...
Exit 0 when every copy was written (and verified with --verify), 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `mediasvc --help` and the other subcommands need not load pydicom & co.
    from mediasvc.media.burners import parse_target
    from mediasvc.media.burners.publisher import PublisherBackend
    from mediasvc.media.burning import burn
    from mediasvc.media.pdi import SiteInfo

    backend = parse_target(args.target)
    if isinstance(backend, PublisherBackend):
        backend.pickup_timeout = args.pickup_timeout
        if args.timeout is not None:
            backend.timeout = args.timeout
    report = burn(args.staging, backend, copies=args.copies, verify=args.verify,
                  label_file=args.label_data, site=SiteInfo(institution=args.institution),
                  timeout=args.timeout)
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
