"""Study quiet period -> one job: the network counterpart of a settled drop folder.

A study folder (ingress/studies/<route>/<Study UID>/) that got no new instance for the route's
``quiet_seconds`` is claimed like a drop (service/spool.py): claim.json first, then one rename
of the folder to spool/<uid>/input, then the instances are recorded (ingress_instances) and
the job is submitted idempotently by its uid. The same queue, reports, retries and
`mediasvc jobs` view as a drop-folder job follow.

A crash between those steps: ``adopt`` (at the start of the ingress process) records and
submits every spool entry whose claim.json says it came from ingress and that has no queue
row yet. Only those: drop-folder claims belong to the daemon's own recovery.

Late instances (a study already handed to a job on this route gets more) go to a new study
folder and so a new job, whose report names the earlier job(s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from mediasvc.durable import atomic_write, fsync_dir
from mediasvc.jobqueue import Job, JobQueue
from mediasvc.service import spool
from mediasvc.service.config import ServiceConfig
from mediasvc.service.ingress_config import Route

from . import state
from .receive import Spooler

log = logging.getLogger("mediasvc.ingress")

KIND = {"export": "export", "import": "import", "print": "print"}


def job_name(route: str, study_uid: str) -> str:
    # Not the Study UID itself (long) nor anything from the patient: a short digest of it.
    return f"{route}-{hashlib.sha1(study_uid.encode()).hexdigest()[:10]}"


def job_toml(route: Route) -> str:
    lines = [f'priority = "{route.priority}"']
    if route.action == "export" and route.target:
        lines.append(f'target = "{route.target}"')
    if route.action == "print" and route.layout:
        lines.append(f'layout = "{route.layout}"')
    return "\n".join(lines) + "\n"


class Assembler:
    def __init__(self, cfg: ServiceConfig, q: JobQueue, spooler: Spooler) -> None:
        assert cfg.ingress is not None
        self.cfg = cfg
        self.ing = cfg.ingress
        self.q = q
        self.spooler = spooler
        self.last: dict[tuple[str, str], float] = {}     # (route, study) -> monotonic time
        self.calling: dict[tuple[str, str], str] = {}    # (route, study) -> last calling AE
        self.claimed = state.claimed_instances(cfg.db)   # (route, SOP UID) already in jobs
        self.jobs_made = 0
        self._mu = threading.Lock()

    # -- what the association threads call ---------------------------------------------------
    def already_taken(self, route: str, sop_uid: str) -> bool:
        return (route, sop_uid) in self.claimed

    def received(self, route: str, study_uid: str, calling_ae: str) -> None:
        with self._mu:
            self.last[(route, study_uid)] = time.monotonic()
            self.calling[(route, study_uid)] = calling_ae

    # -- start -----------------------------------------------------------------------------
    def recover(self) -> None:
        """Studies left waiting by the previous process restart their quiet period now;
        half-made claims are finished."""
        now = time.monotonic()
        studies = self.spooler.layout.studies
        for route_dir in sorted(studies.iterdir()):
            for study in sorted(route_dir.iterdir()):
                if study.is_dir():
                    if any(study.iterdir()):
                        self.last[(route_dir.name, study.name)] = now
                    else:
                        study.rmdir()
        for job in self.adopt():
            log.info("job %d (%s): a study claimed before the last stop, now queued",
                     job.id, job.kind)

    def adopt(self) -> list[Job]:
        out = []
        for entry in sorted(self.cfg.spool.iterdir()):
            if entry.name.startswith(".mcm-"):   # an MCM request's entry never finished
                shutil.rmtree(entry, ignore_errors=True)
                continue
            meta = _read_json(entry / "claim.json")
            if not meta or not (entry / "input").is_dir():
                continue  # not a claim, or the rename never happened (the study waits)
            if "ingress" in meta:
                # Recorded even when the daemon's own recovery queued it already.
                job = self._record_and_submit(entry, meta)
            elif "mcm" in meta:
                job = spool.submit(self.cfg, self.q, entry, meta)
            else:
                continue
            out.append(job)
        return out

    # -- the quiet period ------------------------------------------------------------------
    def tick(self) -> list[Job]:
        now = time.monotonic()
        due = []
        with self._mu:
            for key, last in list(self.last.items()):
                route = self.ing.route(key[0])
                quiet = route.quiet_seconds if route else self.ing.quiet_seconds
                if now - last >= quiet:
                    due.append(key)
        made = []
        for route_name, study_uid in due:
            job = self.claim(route_name, study_uid)
            if job is not None:
                made.append(job)
        return made

    def claim(self, route_name: str, study_uid: str) -> Job | None:
        route = self.ing.route(route_name)
        folder = self.spooler.layout.study_dir(route_name, study_uid)
        uid = spool.new_uid()
        entry = self.cfg.spool / uid
        with self._mu:
            calling = self.calling.pop((route_name, study_uid), "")
            self.last.pop((route_name, study_uid), None)
        if route is None or route.action not in KIND:
            log.error("study folder of unknown route %r kept in %s", route_name, folder.parent)
            return None
        meta: dict[str, Any] = {
            "uid": uid, "kind": KIND[route.action],
            "group": route.profile or route.printer or None,
            "name": job_name(route_name, study_uid), "origin": f"ingress/{route_name}",
            "settled_at": time.time(), "is_file": False,
            "ingress": {"route": route_name, "study_uid": study_uid, "calling_ae": calling,
                        "job_toml": job_toml(route)}}
        with self.spooler.lock:   # no association renames into the folder while it moves
            if not self._drop_taken(route_name, folder):
                self.spooler.forget_dir(folder)
                return None
        entry.mkdir(parents=True)
        atomic_write(entry / "claim.json", json.dumps(meta).encode())
        with self.spooler.lock:
            try:
                atomic_write(folder / spool.JOB_TOML, meta["ingress"]["job_toml"].encode())
                os.rename(folder, entry / "input")
            except FileNotFoundError:
                (entry / "claim.json").unlink()
                entry.rmdir()
                return None
            self.spooler.forget_dir(folder)
        # A syncfs begun after the rename covers every instance renamed into the folder
        # before it moved: the job gets only durable files (receive.py, "Checkpoints").
        self.spooler.sync_all()
        fsync_dir(entry)
        fsync_dir(folder.parent)
        return self._record_and_submit(entry, meta)

    def _drop_taken(self, route: str, folder: Path) -> bool:
        """Remove instances of ``folder`` that an earlier job of this route already took
        (written again from a journal after a crash); False when none is left (the folder
        is removed). Under the spooler's lock."""
        try:
            names = list(folder.iterdir())
        except FileNotFoundError:
            return False
        for p in names:
            if p.suffix == ".dcm" and (route, p.stem) in self.claimed:
                p.unlink()
        if any(p.suffix == ".dcm" for p in folder.iterdir()):
            return True
        shutil.rmtree(folder, ignore_errors=True)
        return False

    def _record_and_submit(self, entry: Path, meta: dict[str, Any]) -> Job:
        ing = meta["ingress"]
        inp = entry / "input"
        sops = sorted(p.stem for p in inp.iterdir() if p.suffix == ".dcm")
        route, study = ing["route"], ing["study_uid"]
        earlier = state.earlier_jobs(self.cfg.db, route, study, meta["uid"])
        state.record_instances(self.cfg.db, route, study, sops, meta["uid"])
        with self.spooler.lock:
            self.claimed.update((route, s) for s in sops)
        if earlier and "follows" not in ing:
            ids = [j.id for j in (self.q.find(u) for u in earlier) if j is not None]
            ing["follows"] = ids
            ing["note"] = (f"late instances: this study was already sent in job(s) "
                           f"{', '.join(map(str, ids))}; this job holds the {len(sops)} "
                           "instance(s) received after that")
        ing["instances"] = len(sops)
        known = self.q.find(meta["uid"])
        if known is not None:
            return known
        job = spool.submit(self.cfg, self.q, entry, meta)
        self.jobs_made += 1
        log.info("job %d: %s of %d instance(s) received on route %s%s", job.id, job.kind,
                 len(sops), route, " (late instances of a study already sent)"
                 if earlier else "")
        return job


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
