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

# numpy (imported by pydicom) starts one OpenBLAS thread per CPU, whose start-up spin took
# 0.1 s of CPU here per command; mediasvc does no linear algebra. Set before anything imports
# numpy; a site that wants otherwise sets the variable itself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Subcommand modules, in the order `--help` lists them, with their one-line help: only the
# module of the command given is imported (pydicom, pynetdicom and watchdog take most of a
# second to import; `mediasvc status` needs none of them).
COMMANDS = {
    "export": "create a DICOM file-set (DICOMDIR) from files/folders",
    "fileset": "read, verify and update DICOM file-sets (DICOMDIR)",
    "burn": "write staged volumes to an ISO image, drive, folder or disc publisher",
    "import_": "import a medium (folder, ISO image, drive) into the store",
    "store": "list, check the local store; forward queued instances",
    "mds": "the minimum data set of the stored studies (JSON/CSV)",
    "print_": "print DICOM images on film (Basic Grayscale/Color Print)",
    "serve": "run the service: drop folders -> jobs",
    "status": "service and queue status",
    "jobs": "list, show, retry or cancel service jobs",
    "users": "users of the web console (viewer, operator)",
}

log = logging.getLogger("mediasvc")


def _command_of(argv: Sequence[str]) -> str | None:
    """The module name of the subcommand in ``argv`` (first non-option word), if any."""
    for word in argv:
        if not word.startswith("-"):
            module = word if word in COMMANDS else f"{word}_"
            return module if module in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it names is loaded in full."""
    wanted = _command_of(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="mediasvc", description="DICOM media and film service for a burner host.")
    parser.add_argument("--version", action="version", version=f"mediasvc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv: debug, with tracebacks)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        if wanted is None or name == wanted:
            importlib.import_module(f"mediasvc.cli.{name}").register(sub)
        else:
            sub.add_parser(name.rstrip("_"), help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
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
