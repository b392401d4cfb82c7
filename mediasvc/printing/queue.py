"""The print queue: the ISG Hardcopy Server's job queue (seeds/004 appendix B, 2.2) on SQLite.

Jobs are queued by priority HIGH, MED, LOW and FIFO within a priority; at most one association
per printer at a time (the job's resource is ``printer:NAME``); a printer that is down, busy,
reports FAILURE or refuses the film keeps the job in ``retrying`` with exponential backoff and
the printer's words as the reason, until it prints or ``max_attempts`` is reached. A request the
printer can never take (a capability missing in its configuration) is refused at ``submit``.
The state machine, persistence and crash recovery are mediasvc.jobqueue's; this module adds
what printing needs::

    queue = PrintQueue(Path("/var/lib/mediasvc/print.sqlite"), printers)
    job = queue.submit(PrintRequest(files=(...), layout="ct-4x5"), "dryview")
    queue.run_pending()               # print what is due now (one call = one pass)
    queue.status(job.id)              # Job: state queued/running/retrying/done/failed, error
    queue.list()                      # every print job, oldest first
    queue.worker(stop_event)          # or: loop until stop_event is set

A job that printed some of its films before the printer failed records them (step
``films_printed``) and resumes with the next film: no film is printed twice by a retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from mediasvc.errors import InputError, JobError, PeerError, UsageError
from mediasvc.jobqueue import Backoff, Job, JobQueue, State, current_owner
from mediasvc.printing.job import PrintRequest, print_request
from mediasvc.printing.printers import Printer, check_request, resolve_printer

log = logging.getLogger(__name__)

KIND = "print"


class PrintQueue:
    def __init__(self, path: Path, printers: Mapping[str, Printer], *,
                 backoff: Backoff | None = None, max_attempts: int = 20,
                 layouts_dir: Path | None = None) -> None:
        self.jobs = JobQueue(path, backoff=backoff or Backoff(base=10.0, cap=300.0))
        self.printers = dict(printers)
        self.max_attempts = max_attempts
        self.layouts_dir = layouts_dir

    def _printer(self, spec: str, color: bool = False) -> Printer:
        return resolve_printer(spec, self.printers, color=color)

    def submit(self, request: PrintRequest, printer: str, *, uid: str | None = None) -> Job:
        """Queue a request; refused now (UsageError) if the printer cannot take it."""
        p = self._printer(printer, request.color)
        layout = request.resolve_layout(self.layouts_dir)
        check_request(p, layout, color=request.color)
        for f in request.files:
            if not Path(f).is_file():
                raise InputError(f, "no such file")
        priority = request.priority or layout.priority
        return self.jobs.submit(KIND, {"printer": printer, "request": request.to_payload()},
                                uid=uid, name=f"print {len(request.files)} file(s) on {printer}",
                                priority=priority, resource=f"printer:{p.name}",
                                max_attempts=self.max_attempts)

    def run_pending(self, owner: str | None = None) -> list[Job]:
        """Print every job that is due now, one association per printer at a time."""
        owner = owner or current_owner()
        # Claim as of the start of the pass: a job that fails in this pass (even with a zero
        # backoff) waits for the next pass instead of spinning here.
        start = time.time()
        done: list[Job] = []
        while (job := self.jobs.claim(owner, kinds=[KIND], now=start)) is not None:
            done.append(self._run(job, owner))
        return done

    def _run(self, job: Job, owner: str) -> Job:
        spec = str(job.payload["printer"])
        request = PrintRequest.from_payload(job.payload["request"])
        skip = int(job.steps.get("films_printed", 0))

        def on_film(n: int) -> None:
            self.jobs.record_step(job.id, owner, "films_printed", n)

        try:
            printer = self._printer(spec, request.color)
            result = print_request(request, printer, skip_films=skip, on_film=on_film,
                                   layouts_dir=self.layouts_dir)
        except PeerError as exc:
            # Down, busy, FAILURE status, or a refusal: the printer may be fixed (film loaded,
            # magazine changed), so the job stays queued with the printer's words.
            log.warning("print job %d on %s: %s", job.id, spec, exc)
            return self.jobs.fail(job.id, owner, str(exc), transient=True)
        except (UsageError, InputError) as exc:
            return self.jobs.fail(job.id, owner, str(exc), transient=False)
        except JobError:
            raise
        films = int(self.jobs.get(job.id).steps.get("films_printed", 0))
        out = result.as_dict()
        out["films"] = films
        summary = f"printed {films} film(s) on {spec}"
        if result.warnings:
            summary += f" with {len(result.warnings)} warning(s): " + "; ".join(result.warnings)
        out["summary"] = [summary]
        log.info("print job %d: %s", job.id, summary)
        return self.jobs.complete(job.id, owner, out)

    def worker(self, stop: threading.Event, *, poll: float = 2.0,
               owner: str | None = None) -> None:
        """Run jobs until ``stop`` is set, waking for due retries and new submissions."""
        owner = owner or current_owner()
        self.jobs.recover()
        while not stop.is_set():
            self.run_pending(owner)
            due = self.jobs.next_due()
            wait = poll if due is None else max(0.05, min(poll, due - time.time()))
            stop.wait(wait)

    def status(self, job_id: int) -> Job:
        return self.jobs.get(job_id)

    def list(self, states: list[State | str] | None = None) -> list[Job]:
        return list(reversed(self.jobs.list_jobs(states, kind=KIND)))
