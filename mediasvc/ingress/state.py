"""What the ingress process knows, kept where other processes can read it: tables in the job
queue's SQLite file, the study folders under ingress/, and run/ingress.json.

- ``ingress_instances``: every SOP instance handed to a job, per route (a re-sent instance is
  stored once; an instance that arrives after its study became a job starts a new job);
- ``mcm_requests``: Media Creation Management requests (PS3.4 Annex S) and their job.

``snapshot(cfg)`` is the one call the web console (or `mediasvc status`) makes: routes, studies
waiting for their quiet period, MCM requests with their Annex S status, and the forward status
per study. It imports neither pydicom nor pynetdicom.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mediasvc.errors import JobError
from mediasvc.jobqueue import Job, State
from mediasvc.service.config import ServiceConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingress_instances (
    route TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    job_uid TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (route, sop_uid));
CREATE INDEX IF NOT EXISTS ingress_by_study ON ingress_instances (route, study_uid);
CREATE TABLE IF NOT EXISTS mcm_requests (
    sop_uid TEXT PRIMARY KEY,
    calling_ae TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    status_info TEXT NOT NULL,
    failed TEXT NOT NULL DEFAULT '[]',
    job_uid TEXT);
"""

# PS3.3 C.22.1 (Media Creation Management Module): Execution Status (2100,0020) and the
# defined terms of Execution Status Info (2100,0030) this SCP uses.
IDLE, PENDING, CREATING, DONE, FAILURE = "IDLE", "PENDING", "CREATING", "DONE", "FAILURE"


@contextmanager
def connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    try:
        db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise JobError(f"{db_path}: cannot open the ingress tables: {exc}") from exc
    try:
        yield db
    except sqlite3.Error as exc:
        raise JobError(f"{db_path}: ingress table error: {exc}") from exc
    finally:
        db.close()


def record_instances(db_path: Path, route: str, study_uid: str, sop_uids: list[str],
                     job_uid: str) -> None:
    with connect(db_path) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO ingress_instances VALUES (?,?,?,?,?)",
                       [(route, study_uid, s, job_uid, time.time()) for s in sop_uids])
        db.execute("COMMIT")


def claimed_instances(db_path: Path) -> set[tuple[str, str]]:
    with connect(db_path) as db:
        return {(r[0], r[1]) for r in db.execute("SELECT route, sop_uid FROM ingress_instances")}


def earlier_jobs(db_path: Path, route: str, study_uid: str, but: str) -> list[str]:
    """Job uids that already took instances of this study on this route."""
    with connect(db_path) as db:
        return [r[0] for r in db.execute(
            "SELECT DISTINCT job_uid FROM ingress_instances WHERE route=? AND study_uid=? "
            "AND job_uid<>? ORDER BY job_uid", (route, study_uid, but))]


# -- MCM requests --------------------------------------------------------------------------

def mcm_put(db_path: Path, sop_uid: str, calling_ae: str, request: dict[str, Any]) -> None:
    now = time.time()
    with connect(db_path) as db:
        db.execute("INSERT INTO mcm_requests (sop_uid, calling_ae, created, updated, request,"
                   " status, status_info) VALUES (?,?,?,?,?,?,?)",
                   (sop_uid, calling_ae, now, now, json.dumps(request), IDLE, "NORMAL"))


def mcm_get(db_path: Path, sop_uid: str) -> dict[str, Any] | None:
    with connect(db_path) as db:
        row = db.execute("SELECT * FROM mcm_requests WHERE sop_uid=?", (sop_uid,)).fetchone()
    return None if row is None else _mcm_row(row)


def mcm_update(db_path: Path, sop_uid: str, **values: Any) -> None:
    cols = {k: (json.dumps(v) if k == "failed" else v) for k, v in values.items()}
    sets = ", ".join(f"{k}=?" for k in cols)
    with connect(db_path) as db:
        db.execute(f"UPDATE mcm_requests SET {sets}, updated=? WHERE sop_uid=?",
                   (*cols.values(), time.time(), sop_uid))


def mcm_list(db_path: Path, limit: int = 200) -> list[dict[str, Any]]:
    with connect(db_path) as db:
        return [_mcm_row(r) for r in db.execute(
            "SELECT * FROM mcm_requests ORDER BY created DESC LIMIT ?", (limit,))]


def _mcm_row(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["request"] = json.loads(d["request"])
    d["failed"] = json.loads(d["failed"])
    return d


def mcm_status(req: dict[str, Any], job: Job | None) -> tuple[str, str]:
    """(Execution Status, Execution Status Info) of a request, from its queued job: the job
    queue is the truth once the request was initiated (PS3.4 S.3.2.2.1)."""
    if job is None:
        return str(req["status"]), str(req["status_info"])
    if job.state in (State.QUEUED, State.RETRYING):
        return PENDING, "QUEUED" if job.state is State.QUEUED else "MCD_BUSY"
    if job.state is State.RUNNING:
        return CREATING, "NORMAL"
    if job.state is State.DONE:
        return DONE, "NORMAL"
    if job.state is State.CANCELLED:
        return FAILURE, "PROC_FAILURE"   # cancelled by the operator or the SCU (S.3.2.2.2)
    reason = (job.error or "").lower()
    if "rejected" in reason or "not allowed" in reason:
        return FAILURE, "INST_AP_CONFLICT"
    if "capacity" in reason or "does not fit" in reason:
        return FAILURE, "SET_OVERSIZED"
    if "burn" in reason or "drive" in reason:
        return FAILURE, "MCD_FAILURE"
    return FAILURE, "PROC_FAILURE"


# -- the one read the web console makes ---------------------------------------------------

def snapshot(cfg: ServiceConfig) -> dict[str, Any]:
    """Routes, studies waiting for their quiet period, MCM requests, forward status per study,
    and the listener's health (run/ingress.json), as plain JSON-able data."""
    from mediasvc.jobqueue import JobQueue

    ing = cfg.ingress
    out: dict[str, Any] = {"enabled": ing is not None, "routes": [], "waiting": [],
                           "mcm_requests": [], "forward": forward_status(cfg), "listener": {}}
    if ing is None:
        return out
    out["listener"] = _read_json(cfg.run / "ingress.json")
    out["routes"] = [{"name": r.name, "called_ae": r.called_ae, "action": r.action,
                      "modality": list(r.modality), "station_name": list(r.station_name),
                      "profile": r.profile, "target": r.target, "printer": r.printer,
                      "layout": r.layout, "quiet_seconds": r.quiet_seconds}
                     for r in ing.routes]
    studies = cfg.ingress_dir / "studies"
    if studies.is_dir():
        for route_dir in sorted(studies.iterdir()):
            for study in sorted(p for p in route_dir.iterdir() if p.is_dir()):
                files = [f for f in study.iterdir() if f.suffix == ".dcm"]
                last = max((f.stat().st_mtime for f in files), default=0.0)
                out["waiting"].append({"route": route_dir.name, "study_uid": study.name,
                                       "instances": len(files), "last_received": last})
    if cfg.db.exists():
        q = JobQueue(cfg.db)
        for req in mcm_list(cfg.db):
            job = q.find(req["job_uid"]) if req.get("job_uid") else None
            status, info = mcm_status(req, job)
            out["mcm_requests"].append({
                "sop_instance_uid": req["sop_uid"], "calling_ae": req["calling_ae"],
                "created": req["created"], "status": status, "status_info": info,
                "job": job.id if job else None, "instances": len(
                    req["request"].get("referenced", [])), "failed": req["failed"]})
    return out


def forward_status(cfg: ServiceConfig) -> list[dict[str, Any]]:
    """Per study and destination: instances sent, pending and failed (store index)."""
    index = cfg.store / "index.sqlite"
    if not index.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute(
            "SELECT se.study_uid, f.destination, f.state, COUNT(*), MAX(f.updated), "
            "MAX(f.last_error) FROM forwards f JOIN instances i ON f.instance=i.id "
            "JOIN series se ON i.series_uid=se.series_uid "
            "GROUP BY se.study_uid, f.destination, f.state").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    per: dict[tuple[str, str], dict[str, Any]] = {}
    for study, dest, state, n, updated, error in rows:
        d = per.setdefault((study, dest), {"study_uid": study, "destination": dest, "sent": 0,
                                           "pending": 0, "failed": 0, "updated": "",
                                           "last_error": ""})
        d[state] = n
        d["updated"] = max(d["updated"], updated or "")
        if error:
            d["last_error"] = error
    for d in per.values():
        d["state"] = ("failed" if d["failed"] else "pending" if d["pending"] else "sent")
    return sorted(per.values(), key=lambda d: (d["study_uid"], d["destination"]))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
