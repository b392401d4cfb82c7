"""`python -m mediasvc.web [--config FILE] [--root DIR] [--parent PID]`: the console server.

`mediasvc serve` starts it (service/console.py) with --parent, so that it dies with the
service; it may also be run on its own against a service's root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mediasvc.errors import MediasvcError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mediasvc.web")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--parent", type=int, help="exit when this process (the service) dies")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args(argv)
    from mediasvc.log import setup_logging
    from mediasvc.service.config import load_service_config
    from mediasvc.service.runner import die_with_parent

    if args.parent:
        die_with_parent(args.parent)
    setup_logging(args.verbose)
    try:
        cfg = load_service_config(args.config, args.root)
        from mediasvc.web.app import serve

        return serve(cfg)
    except MediasvcError as exc:
        print(f"mediasvc web console: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
