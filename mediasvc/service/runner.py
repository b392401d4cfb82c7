"""One job run in its own process: ``python -m mediasvc.service.runner --job N --owner TOKEN``.

The daemon starts it for every claimed job (see workers.py for why a process). It validates
the job's input, runs the handler, and writes its outcome to spool/<uid>/result-<attempt>.json
(temp + rename); the daemon reads that file when the process ends and updates the queue.
Steps are recorded in the queue by this process, under the daemon's owner token.
It dies with the daemon (PR_SET_PDEATHSIG), so a killed service never leaves a run behind
that would race with the redo after restart.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mediasvc.durable import atomic_write as write_atomic
from mediasvc.errors import MediasvcError
from mediasvc.jobqueue import JobQueue
from mediasvc.log import setup_logging
from mediasvc.service.config import load_service_config
from mediasvc.service.spool import inspect_input
from mediasvc.service.workers import HANDLERS, Interrupted, JobContext

STARTED = time.monotonic()  # once this module and its imports are loaded
log = logging.getLogger("mediasvc.runner")


def result_path(entry: Path, attempt: int) -> Path:
    return entry / f"result-{attempt}.json"


def preload() -> None:
    """Import what the handlers use before a job arrives: a warm runner starts a job about
    half a second sooner (pydicom alone takes ~0.25 s to import here)."""
    import importlib

    for name in ("mediasvc.media.production", "mediasvc.media.burning",
                 "mediasvc.store.importer", "mediasvc.printing.job"):
        try:
            importlib.import_module(name)
        except ImportError as exc:  # reported when a job needs it
            log.debug("preload %s: %s", name, exc)


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mediasvc.service.runner")
    ap.add_argument("--job", type=int, help="the job to run (else: read from stdin, --warm)")
    ap.add_argument("--warm", action="store_true",
                    help="load the handlers' packages, then wait for a job number on stdin")
    ap.add_argument("--owner", required=True)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--parent", type=int)
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args(argv)
    if args.parent:
        die_with_parent(args.parent)
    setup_logging(args.verbose)
    cfg = load_service_config(args.config, args.root)
    job_id = args.job
    if job_id is None:
        if args.warm:
            preload()
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the daemon stopped, or no longer needs this runner
        job_id = int(line)
        global STARTED
        STARTED = time.monotonic()  # the job's run starts now, not when the runner was warmed
    q = JobQueue(cfg.db)
    job = q.get(job_id)
    entry = cfg.spool / job.uid
    outcome: dict[str, Any]
    ctx: JobContext | None = None
    try:
        if "reject" in job.payload:
            raise MediasvcError(str(job.payload["reject"]))
        inp = inspect_input(cfg, job, entry)
        ctx = JobContext(cfg, q, job, args.owner, entry, inp, dict(job.steps))
        result = HANDLERS[job.kind](ctx)
        result["runner_seconds"] = round(time.monotonic() - STARTED, 3)
        outcome = {"ok": True, "result": result}
    except Interrupted as exc:
        outcome = {"ok": False, "error": str(exc), "transient": False}
    except MediasvcError as exc:
        outcome = {"ok": False, "error": str(exc),
                   "transient": bool(getattr(exc, "transient", False)),
                   "type": type(exc).__name__}
    except Exception as exc:  # a bug must fail the job with a reason, not hang it
        log.error("job %d: internal error: %s", job.id, exc)
        traceback.print_exc()
        outcome = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}",
                   "transient": False}
    if not outcome["ok"] and ctx is not None and ctx.problems:
        outcome["result"] = {"problems": ctx.problems}  # the report lists every one of them
    write_atomic(result_path(entry, job.attempts), json.dumps(outcome).encode())
    return 0


def die_with_parent(parent: int) -> None:
    """In a runner: get SIGKILL when the daemon dies (Linux PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError) as exc:
        if getattr(exc, "errno", None) != errno.EINVAL:
            log.debug("PR_SET_PDEATHSIG unavailable: %s", exc)
    if os.getppid() != parent:  # the daemon died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    sys.exit(run())
