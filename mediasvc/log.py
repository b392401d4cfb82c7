"""Logging set-up: journald-friendly, and no patient data above DEBUG.

Under systemd (JOURNAL_STREAM set) lines carry no timestamp: journald adds its own.
Code that logs patient identifiers (names, IDs, birth dates, accession numbers) must do so at
DEBUG only; INFO and above speak of counts, UIDs of files and paths chosen by mediasvc.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup_logging(verbosity: int = 0) -> None:
    """verbosity: -1 quiet (warnings), 0 info, 1 info, 2+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity >= 2 else logging.INFO
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "<%(levelno)s>%(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM")
                         else logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pynetdicom is chatty at INFO about every PDU.
    logging.getLogger("pynetdicom").setLevel(max(level, logging.WARNING))
    # pydicom warns about every odd value of third-party files; our reports say what matters.
    # Decoder failures become a file's rejection reason; no tracebacks in the log for them.
    logging.getLogger("pydicom").setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL)
    if verbosity < 2:
        warnings.filterwarnings("ignore", module="pydicom")


class _JournalFormatter(logging.Formatter):
    """Prefix syslog priorities (<3> error, <4> warning, <6> info, <7> debug) for journald."""

    _PRIO = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        prio = self._PRIO.get(record.levelno, 6)
        return f"<{prio}>{record.name}: {record.getMessage()}"
