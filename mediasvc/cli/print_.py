"""`mediasvc print`: lay DICOM images out on film and print them on a DICOM Print SCP.

    mediasvc print FILES... (--printer NAME [--config FILE] | --printer AE@HOST:PORT)
                   (--layout NAME | --format 'STANDARD\\C,R') [--film-size ID] [--copies N]
                   [--color] [--priority HIGH|MED|LOW] [--window C,W] [--text TEXT]
                   [--preview FILE.png] [--no-print] [--json]

Exit codes: 0 printed (warnings are listed), 1 the printer refused the film (its words are
shown), 2 usage/configuration (including a request the printer cannot take, refused before
any association), 3 printer down/busy or another error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mediasvc.config import load_toml
from mediasvc.errors import PeerError, PrintError, UsageError
from mediasvc.printing.job import PrintRequest, prepare, print_request
from mediasvc.printing.printers import Printer, parse_printers, resolve_printer
from mediasvc.printing.render import write_previews


def register(sub: Any) -> None:
    p = sub.add_parser("print", help="print DICOM images on film (Basic Grayscale/Color Print)",
                       description="Lay images out on film and print them on a DICOM Print SCP.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="DICOM images")
    p.add_argument("--printer", required=True,
                   help="a printer of the configuration ([printers.NAME]) or AE@HOST:PORT")
    p.add_argument("--config", type=Path, default=None,
                   help="service configuration with [printers.*] (default: $MEDIASVC_CONFIG)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--layout", help="film layout: a name of profiles/film/ or a TOML file")
    g.add_argument("--format", help="image display format, e.g. 'STANDARD\\2,2'")
    p.add_argument("--film-size", help="Film Size ID, e.g. 14INX17IN")
    p.add_argument("--copies", type=int, help="number of copies")
    p.add_argument("--color", action="store_true", help="Basic Color Print Management")
    p.add_argument("--priority", choices=("HIGH", "MED", "LOW"), help="print priority")
    p.add_argument("--window", help="VOI window CENTER,WIDTH for every image (overrides files)")
    p.add_argument("--text", default="", help="free text for the annotation template's {text}")
    p.add_argument("--preview", type=Path, metavar="PNG",
                   help="write the film(s) as they will print (PNG; -N suffix per film)")
    p.add_argument("--no-print", action="store_true", help="render (and preview) only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _printers(config: Path | None) -> dict[str, Printer]:
    path = config or (Path(os.environ["MEDIASVC_CONFIG"]) if os.environ.get("MEDIASVC_CONFIG")
                      else None)
    if path is None:
        return {}
    return parse_printers(load_toml(path).table("printers"))


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        c, w = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--window {text!r}: expected CENTER,WIDTH such as 40,400") from None
    if w <= 0:
        raise UsageError("--window: the width must be positive")
    return c, w


def run(args: argparse.Namespace) -> int:
    printer = resolve_printer(args.printer, _printers(args.config), color=args.color)
    request = PrintRequest(
        files=tuple(str(f) for f in args.files), layout=args.layout, format=args.format,
        film_size=args.film_size, copies=args.copies, priority=args.priority, color=args.color,
        window=_window(args.window), text=args.text)
    job = prepare(request, printer)
    out: dict[str, Any] = {"printer": printer.name, "films": len(job.films),
                           "images": sum(len(f.boxes) for f in job.films),
                           "format": job.layout.display_format.text,
                           "film_size": job.layout.film_size}
    if args.preview:
        empty_white = job.layout.empty_image_density == "WHITE"
        out["previews"] = [str(p) for p in write_previews(job.films, args.preview,
                                                          empty_white=empty_white)]
    code = 0
    if not args.no_print:
        try:
            result = print_request(request, printer, prepared=job)
            out.update(result.as_dict())
            out["status"] = "printed"
        except PrintError as exc:
            out.update(status="refused", error=str(exc))
            code = 1
        except PeerError as exc:
            out.update(status="printer unavailable", error=str(exc), transient=exc.transient)
            code = 3
    else:
        out["status"] = "rendered"
    _report(out, args.json)
    return code


def _report(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(out, indent=2))
        return
    line = (f"{out['status']}: {out['films']} film(s), {out['images']} image(s), "
            f"{out['format']} on {out['film_size']}, printer {out['printer']}")
    print(line)
    for p in out.get("previews", []):
        print(f"preview: {p}")
    for w in out.get("warnings", []):
        print(f"warning: {w}")
    if "error" in out:
        print(f"mediasvc: error: {out['error']}", file=sys.stderr)
