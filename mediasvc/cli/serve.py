"""`mediasvc serve [--config FILE] [--root DIR]`: run the drop-folder service (docs/service.md).

Without --config, the embedded default: everything under ./var (or --root): drop folders,
spool, done/ and failed/, the store and the job database.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mediasvc.service.config import load_service_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="service configuration (TOML; see systemd/mediasvc.example.toml)")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="root of the service's folders (default: ./var, or the config's)")


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the service: drop folders -> jobs",
                            description=__doc__)
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediasvc.service.daemon import Daemon

    cfg = load_service_config(args.config, args.root)
    return Daemon(cfg, config_path=args.config, root_override=args.root,
                  verbosity=args.verbose).serve()
