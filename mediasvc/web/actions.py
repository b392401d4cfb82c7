"""What an operator can do from the console, through the service's own code paths.

Cancel and retry are those of `mediasvc jobs cancel/retry` (jobqueue + spool); an import or a
print becomes a spool entry and a queue row made by spool.enqueue, the way a drop becomes one,
so the job runs in a runner of the service like any other and its report lands in done/ or
failed/. Nothing here runs a job itself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from mediasvc.errors import InputError, JobError
from mediasvc.jobqueue import Job, JobQueue, State
from mediasvc.service import spool
from mediasvc.service.config import ServiceConfig
from mediasvc.web.data import get_job, study_files


class Invalid(ValueError):
    """A request field with an unusable value (HTTP 400 naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Conflict(Exception):
    """The job is not in a state that allows this (HTTP 409)."""


def cancel(cfg: ServiceConfig, q: JobQueue, job_id: int) -> Job:
    job = get_job(q, job_id)
    try:
        job = q.cancel(job.id)
    except JobError as exc:
        raise Conflict(str(exc)) from exc
    if job.state is State.CANCELLED:
        spool.finalize(cfg, q, job)
    return job


def retry(cfg: ServiceConfig, q: JobQueue, job_id: int) -> Job:
    job = get_job(q, job_id)
    try:
        return spool.restore_for_retry(cfg, q, job)
    except JobError as exc:
        raise Conflict(str(exc)) from exc


def _job_toml(values: Mapping[str, object]) -> str:
    # json.dumps of a str is a valid TOML basic string; ints and bools are written alike.
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if v is not None)


def import_medium(cfg: ServiceConfig, q: JobQueue, source: str, label: str | None,
                  priority: str) -> Job:
    try:
        real = spool.check_import_source(cfg, source)
    except InputError as exc:
        raise Invalid("source", exc.reason) from exc
    options = {"label": label, "priority": priority}

    def fill(folder: Path) -> None:
        (folder / spool.JOB_TOML).write_text(_job_toml(options))

    return spool.enqueue(cfg, q, "import", None, f"import-{spool.new_uid()[-6:]}", fill,
                         source=str(real))


def print_study(cfg: ServiceConfig, q: JobQueue, study: int, printer: str, layout: str,
                series: list[int] | None, copies: int, priority: str) -> Job:
    from mediasvc.printing.layouts import film_layouts

    if printer not in cfg.printers:
        raise Invalid("printer", f"no printer {printer!r} is configured (configured: "
                      f"{', '.join(sorted(cfg.printers)) or 'none'})")
    if layout not in film_layouts():
        raise Invalid("layout", f"unknown film layout {layout!r} (known: "
                      f"{', '.join(film_layouts())})")
    files = study_files(cfg, study, series)
    if not files:
        raise Invalid("series", "nothing to print: no stored instance chosen")
    options = {"layout": layout, "copies": copies, "priority": priority}

    def fill(folder: Path) -> None:
        # Store files are immutable and content-addressed: a hard link costs nothing and
        # keeps the print's order (series, then instance number) in the names.
        for n, src in enumerate(files, 1):
            dst = folder / f"{n:05d}.dcm"
            try:
                os.link(src, dst)
            except OSError:  # another filesystem
                shutil.copyfile(src, dst)
        (folder / spool.JOB_TOML).write_text(_job_toml(options))

    return spool.enqueue(cfg, q, "print", printer, f"print-{spool.new_uid()[-6:]}", fill)
