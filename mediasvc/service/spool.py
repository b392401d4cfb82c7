"""Moving jobs from the drop folders through the spool to done/ and failed/, crash-safely.

A job's life on disk (every arrow is one rename(2) on one filesystem, so it is atomic)::

    drop/export/STD-GEN-CD/job1/  --claim-->  spool/<uid>/input/
    spool/<uid>/out/ (results + report)  --publish-->  done/job1/      then spool/<uid> removed
    spool/<uid>/input/ (+ report)        --fail----->  failed/job1/input/

Order of a claim: spool/<uid>/claim.json is written (fsynced) *before* the rename and the queue
row is submitted *after* it, idempotently by uid. A crash between the two leaves a spool entry
without a row: ``adopt`` submits it at the next start. A spool entry without input/ is a claim
that never happened (the input is still in the drop folder) and is removed.

Publishing: the job is marked done in the queue first, then out/ (with report.json/.txt inside)
is renamed to done/<job>/, then the spool entry is removed. ``finalize`` is idempotent and runs
again at start for every finished job whose spool entry is still there. The input is removed
only after done/<job>/ is durable; failed jobs keep their input under failed/<job>/input/.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediasvc.durable import atomic_write as write_atomic
from mediasvc.durable import fsync_dir
from mediasvc.errors import ConfigError, InputError, JobError, MediasvcError
from mediasvc.jobqueue import Job, JobQueue, State
from mediasvc.service.config import (
    ServiceConfig,
    check_job_options,
    parse_job_toml,
)
from mediasvc.service.reports import (
    build_report,
    read_report_uid,
    write_reports,
)

log = logging.getLogger(__name__)

KINDS = ("export", "print", "import")
READY_MARKER = ".ready"
JOB_TOML = "job.toml"
PROGRESS = "progress.json"  # spool/<uid>/progress.json: how far a running job is (workers.py)
# Steps that mark an effect a user would see (a disc, a film) as in flight: a redo after a
# crash refuses to repeat it; an operator's `jobs retry` clears them on purpose.
IN_FLIGHT_STEPS = ("burn_started", "print_started")


@dataclass(frozen=True)
class Candidate:
    """Something in a drop folder that may become a job."""

    kind: str
    group: str | None     # profile (export) or printer (print); None for import
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def new_uid() -> str:
    # Sortable by claim time, unique across restarts.
    return f"{time.time_ns() // 1_000_000:013x}-{os.urandom(3).hex()}"


def claim(cfg: ServiceConfig, q: JobQueue, cand: Candidate, settled_at: float) -> Job | None:
    """Move a settled drop into the spool and queue it. None if it vanished meanwhile."""
    uid = new_uid()
    entry = cfg.spool / uid
    entry.mkdir(parents=True)
    origin = str(cand.path.relative_to(cfg.drop))
    meta = {"uid": uid, "kind": cand.kind, "group": cand.group, "name": cand.name,
            "origin": origin, "settled_at": settled_at, "is_file": not cand.path.is_dir()
            or cand.path.is_symlink()}
    write_atomic(entry / "claim.json", json.dumps(meta).encode())
    try:
        if meta["is_file"]:
            (entry / "input").mkdir()
            os.rename(cand.path, entry / "input" / cand.name)
        else:
            os.rename(cand.path, entry / "input")
    except FileNotFoundError:
        shutil.rmtree(entry, ignore_errors=True)
        return None
    except OSError as exc:
        shutil.rmtree(entry, ignore_errors=True)
        # The folder name stays out of the message: it goes to the log (see log.py).
        log.debug("cannot claim %s: %s", origin, exc)
        raise JobError(f"cannot move a drop into the spool: {exc.strerror}") from exc
    fsync_dir(entry)
    fsync_dir(cand.path.parent)
    marker = cand.path.with_name(cand.name + READY_MARKER)
    if cand.kind == "import" and marker.exists():
        marker.unlink(missing_ok=True)
    return submit(cfg, q, entry, meta)


def submit(cfg: ServiceConfig, q: JobQueue, entry: Path, meta: dict[str, Any]) -> Job:
    """Queue a claimed spool entry (idempotent: the uid is the queue's dedup key)."""
    kind = meta["kind"]
    payload = dict(meta)
    priority = "MED"
    resource = None
    options: dict[str, Any] = {}
    job_toml = entry / "input" / JOB_TOML
    if not meta["is_file"] and job_toml.is_file() and not job_toml.is_symlink():
        try:
            opts = parse_job_toml(job_toml, kind)
            options = opts.values
            priority = opts.priority.name
        except MediasvcError:
            pass  # reported by the worker, which validates the job again
    payload["options"] = options
    if kind == "export":
        target = options.get("target", cfg.export_target)
        if target in cfg.burners:
            resource = cfg.burners[target].resource
    elif kind == "print":
        if meta["group"] in cfg.printers:
            resource = cfg.printers[meta["group"]].resource
    elif kind == "import":
        resource = "store"  # one import into the store at a time: no dedup races
    return q.submit(kind, payload, uid=meta["uid"], name=meta["name"], priority=priority,
                    resource=resource, max_attempts=cfg.max_attempts)


def enqueue(cfg: ServiceConfig, q: JobQueue, kind: str, group: str | None, name: str,
            fill: Callable[[Path], None], *, source: str | None = None) -> Job:
    """A job asked for by a program (the web console) instead of dropped in a folder.

    It gets the spool entry a claim makes, in the same order (claim.json, then input/ complete
    by one rename, then the queue row, idempotent by uid), so that it runs, fails, is retried
    and is recovered exactly like a drop. ``fill(folder)`` puts the job's files (and job.toml)
    into the folder that becomes input/; ``source``: an import that reads a medium in place
    (a device, or an ISO image or folder under [web] import_folders) instead of input/.
    """
    uid = new_uid()
    entry = cfg.spool / uid
    entry.mkdir(parents=True)
    meta: dict[str, Any] = {"uid": uid, "kind": kind, "group": group, "name": name,
                            "origin": f"console/{name}", "settled_at": time.time(),
                            "is_file": False}
    if source is not None:
        meta["source"] = source
    try:
        write_atomic(entry / "claim.json", json.dumps(meta).encode())
        tmp = entry / "input.tmp"  # a crash before the rename: adopt() drops the entry
        tmp.mkdir()
        fill(tmp)
        fsync_dir(tmp)
        os.rename(tmp, entry / "input")
        fsync_dir(entry)
    except BaseException:
        shutil.rmtree(entry, ignore_errors=True)
        raise
    return submit(cfg, q, entry, meta)


def check_import_source(cfg: ServiceConfig, source: str) -> Path:
    """The medium an import may read in place, resolved: one of [web] import_devices (a block
    device), or an existing file or folder at or under one of [web] import_folders. Symbolic
    links and '..' are resolved first, so nothing outside those folders can be named."""
    if not source or "\0" in source or not os.path.isabs(source):
        raise InputError(source, "must be an absolute path")
    real = Path(os.path.realpath(source))
    devices = {Path(os.path.realpath(d)) for d in cfg.web.import_devices}
    if real in devices or source in cfg.web.import_devices:
        try:
            if stat.S_ISBLK(os.stat(real).st_mode):
                return real
        except OSError:
            pass
        raise InputError(source, "no such device (is the drive connected?)")
    for folder in cfg.web.import_folders:
        top = Path(os.path.realpath(folder))
        if real == top or real.is_relative_to(top):
            if real.is_file() or real.is_dir():
                return real
            raise InputError(source, "no such ISO image or folder")
    allowed = [*cfg.web.import_devices, *map(str, cfg.web.import_folders)]
    raise InputError(source, "not a configured medium nor under an allowed folder ("
                     + (", ".join(allowed) or "none configured: [web] import_devices, "
                        "import_folders") + ")")


def adopt(cfg: ServiceConfig, q: JobQueue) -> list[Job]:
    """At start: queue spool entries that have input but no row; drop half-made claims."""
    adopted = []
    for entry in sorted(cfg.spool.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if q.find(entry.name) is not None:
            continue
        try:
            meta = json.loads((entry / "claim.json").read_text())
        except (OSError, ValueError):
            meta = None
        if meta is None or not (entry / "input").exists():
            log.info("removing an unfinished claim %s (its input is still in the drop folder)",
                     entry.name)
            shutil.rmtree(entry, ignore_errors=True)
            continue
        adopted.append(submit(cfg, q, entry, meta))
    return adopted


# -- validation (run by the worker, again on every retry) -------------------------------------

@dataclass(frozen=True)
class JobInput:
    files: list[Path]             # regular files to process, sorted, without job.toml/markers
    options: dict[str, Any]
    notes: list[str]


def inspect_input(cfg: ServiceConfig, job: Job, entry: Path) -> JobInput:
    """List the job's files without following symlinks; refuse what cannot be a job."""
    meta = job.payload
    kind = job.kind
    root = entry / "input"

    if kind == "export" and meta.get("group") not in cfg.export_profiles:
        raise InputError(meta.get("origin", ""), f"unknown media profile {meta.get('group')!r}"
                         f" (drop folders exist for: {', '.join(cfg.export_profiles)})")
    if kind == "print" and meta.get("group") not in cfg.printers:
        raise InputError(meta.get("origin", ""), f"no printer {meta.get('group')!r} is"
                         f" configured ({', '.join(sorted(cfg.printers)) or 'none'})")
    options: dict[str, Any] = {}
    job_toml = root / JOB_TOML
    if not meta.get("is_file") and job_toml.exists():
        if job_toml.is_symlink():
            raise InputError(f"{meta['origin']}/{JOB_TOML}", "is a symbolic link; not followed")
        try:
            opts = parse_job_toml(job_toml, kind)
            check_job_options(cfg, kind, opts, job_toml)
        except ConfigError as exc:
            raise InputError(f"{meta['origin']}/{JOB_TOML}",
                             f"{exc.key or 'file'}: {exc.reason}") from exc
        options = opts.values
    if kind == "import" and meta.get("source"):
        # Checked again here: the configuration may have changed since the job was asked for.
        return JobInput([check_import_source(cfg, str(meta["source"]))], options, [])
    files: list[Path] = []
    notes: list[str] = []
    top = root / meta["name"] if meta.get("is_file") else root
    if top.is_symlink():
        raise InputError(meta["origin"], f"is a symbolic link to {os.readlink(top)};"
                         " links out of the drop folder are not followed")
    if meta.get("is_file") and kind != "import":
        raise InputError(meta["origin"], "a loose file: put each job in its own folder")
    if top.is_file():
        files.append(top)
    else:
        real_root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            d = Path(dirpath)
            for name in sorted(dirnames + filenames):
                p = d / name
                rel = p.relative_to(root)
                if p.is_symlink():
                    target = os.readlink(p)
                    resolved = p.resolve()
                    if not resolved.is_relative_to(real_root):
                        raise InputError(f"{meta['origin']}/{rel}", f"is a symbolic link to "
                                         f"{target}, outside the job folder; not followed")
                    notes.append(f"{rel}: symbolic link inside the job folder, skipped")
                    continue
                if name in filenames and p.is_file():
                    if p.parent == root and name in (JOB_TOML, READY_MARKER):
                        continue
                    if name.startswith("."):
                        notes.append(f"{rel}: hidden file, skipped")
                        continue
                    files.append(p)
        files.sort()
    if not files:
        raise InputError(meta["origin"], "the job folder is empty (no files to "
                         + {"export": "export", "print": "print", "import": "import"}[kind] + ")")
    return JobInput(files, options, notes)


# -- finishing --------------------------------------------------------------------------------

def _dest(base: Path, job: Job) -> tuple[Path, bool]:
    """Where a finished job goes: base/<name>, or base/<name>-<id> if that is another job's.
    Returns (path, already_there)."""
    for cand in (base / job.name, base / f"{job.name}-{job.id}"):
        if cand.exists():
            if read_report_uid(cand) == job.uid:
                return cand, True
            continue
        return cand, False
    raise JobError(f"job {job.id}: both {base / job.name} and its -{job.id} variant are taken")


def finalize(cfg: ServiceConfig, q: JobQueue, job: Job) -> Path | None:
    """Publish a finished job's spool entry to done/ or failed/ (idempotent). Returns where."""
    entry = cfg.spool / job.uid
    if job.state not in (State.DONE, State.FAILED, State.CANCELLED):
        raise JobError(f"job {job.id} is {job.state}, not finished")
    base = cfg.done if job.state is State.DONE else cfg.failed
    dest, there = _dest(base, job)
    if not entry.exists():
        return dest if there else None
    if not there:
        report = build_report(q, job)
        if job.state is State.DONE:
            staged = entry / "out"
            staged.mkdir(exist_ok=True)
            if cfg.keep_input and (entry / "input").exists():
                os.rename(entry / "input", staged / "input")
        else:
            staged = entry / "failed"
            staged.mkdir(exist_ok=True)
            if (entry / "input").exists():
                os.rename(entry / "input", staged / "input")
        report["output"] = str(dest)
        write_reports(staged, report)
        fsync_dir(staged)
        os.rename(staged, dest)
        fsync_dir(base)
    # Only now, with the result durable under done/ or failed/, does the input go.
    shutil.rmtree(entry)
    fsync_dir(cfg.spool)
    return dest


def reconcile(cfg: ServiceConfig, q: JobQueue) -> int:
    """Finish publishing every finished job whose spool entry is still there."""
    n = 0
    for entry in sorted(cfg.spool.iterdir()):
        job = q.find(entry.name) if entry.is_dir() else None
        if job is not None and job.state in (State.DONE, State.FAILED, State.CANCELLED):
            finalize(cfg, q, job)
            n += 1
    return n


def restore_for_retry(cfg: ServiceConfig, q: JobQueue, job: Job) -> Job:
    """`jobs retry`: bring a failed job's input back from failed/<job>/input into the spool."""
    entry = cfg.spool / job.uid
    if job.state in (State.FAILED, State.CANCELLED) and not (entry / "input").exists():
        src, there = _dest(cfg.failed, job)
        if not there or not (src / "input").exists():
            raise JobError(f"job {job.id}: its input is no longer in {src}; drop it again")
        entry.mkdir(parents=True, exist_ok=True)
        write_atomic(entry / "claim.json", json.dumps(
            {k: job.payload.get(k) for k in ("uid", "kind", "group", "name", "origin",
                                             "settled_at", "is_file", "source")}).encode())
        os.rename(src / "input", entry / "input")
        fsync_dir(entry)
        retried = q.retry(job.id, clear_steps=IN_FLIGHT_STEPS)
        shutil.rmtree(src)
        return retried
    return q.retry(job.id, clear_steps=IN_FLIGHT_STEPS)
