"""Command line: `mediasvc SUBCOMMAND ...`. One module per subcommand, each with
``register(subparsers)`` that adds its parser and sets ``func(args) -> int``.

This is the one place that maps exceptions to exit codes (as pip's base_command does):
    0  done, nothing rejected
    1  done, but something was rejected or a problem was found (listed in the output)
    2  usage or configuration error
    3  any other mediasvc error (the message says what and why)
    130 interrupted
Tracebacks are shown only with -vv.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from mediasvc import __version__
from mediasvc.errors import ConfigError, MediasvcError, UsageError
from mediasvc.log import setup_logging

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Subcommand modules, in the order `--help` lists them.
COMMANDS = ("export", "fileset", "burn", "import_", "store", "mds", "print_", "serve", "status",
            "jobs")

log = logging.getLogger("mediasvc")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediasvc", description="DICOM media and film service for a burner host.")
    parser.add_argument("--version", action="version", version=f"mediasvc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv: debug, with tracebacks)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"mediasvc.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError) as exc:
        _report(exc, args.verbose)
        return EXIT_USAGE
    except MediasvcError as exc:
        _report(exc, args.verbose)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mediasvc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mediasvc ... | head`: the reader left; not an error of ours. Point stdout at
        # /dev/null so that the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _report(exc: BaseException, verbose: int) -> None:
    if verbose >= 2:
        log.exception("mediasvc: %s", exc)
    print(f"mediasvc: error: {exc}", file=sys.stderr)
