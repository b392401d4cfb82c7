"""A persistent job queue in SQLite (WAL): priorities, resource limits, retries, crash recovery.

Used by the service (drop-folder jobs) and by the print queue; it sits below every package
(it imports only errors) so that printing/ can use it without importing service/.

States::

    queued ──claim──> running ──complete──> done
      ^                  │ └──fail(transient)──> retrying ──(not_before passes)──> claimable
      │                  └──fail / too many failures──> failed ──retry()──> queued
      └──recover() (owner process died while running; the handler resumes from its steps)
    queued/retrying ──cancel()──> cancelled ──retry()──> queued

Rules (the ISG Hardcopy Server's model, seeds/004 appendix B, for print; the same for burns):
- Priority HIGH, MED, LOW; FIFO inside a priority (the row id is the arrival order).
- A job may name one *resource* ("drive:/dev/sr0", "printer:LASER1"); at most ``limit`` jobs
  holding a resource run at once (default 1: one burn per drive, one association per printer).
  A busy resource does not block lower-priority jobs that need another resource.
- Claiming is atomic across threads and processes: ``BEGIN IMMEDIATE`` takes SQLite's write
  lock before the job is chosen, so two workers can never claim the same job.
- Transient faults (a printer or PACS down, a drive busy: ``PeerError.transient``) go to
  ``retrying`` with exponential backoff; permanent faults go to ``failed``.
- A job records the steps it has completed (``record_step``); after a crash ``recover()`` puts
  jobs left ``running`` by a dead owner back in the queue and the handler skips what its steps
  say is done. Handlers must be idempotent per step (temp name + rename, dedup keys), so a redo
  is never visible to a user (two discs, a duplicated film, duplicated store rows).
- ``submit`` is idempotent by ``uid``: submitting the same uid twice returns the first job, so
  a caller that crashed between its own bookkeeping and the submit can simply submit again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from mediasvc.errors import JobError

SCHEMA_VERSION = 1


class Priority(IntEnum):
    """Lower value runs first. Names as in DICOM Print Priority (2000,0020): HIGH, MED, LOW."""

    HIGH = 0
    MED = 1
    LOW = 2

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError as exc:
            raise JobError(f"priority {value!r} is not one of HIGH, MED, LOW") from exc


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({State.DONE, State.FAILED, State.CANCELLED})
_CLAIMABLE = (State.QUEUED.value, State.RETRYING.value)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: delay = min(base * factor**(failures-1), cap) seconds."""

    base: float = 5.0
    factor: float = 2.0
    cap: float = 600.0

    def delay(self, failures: int) -> float:
        return float(min(self.base * self.factor ** max(failures - 1, 0), self.cap))


@dataclass(frozen=True)
class Job:
    id: int
    uid: str
    kind: str
    name: str
    priority: Priority
    state: State
    resource: str | None
    payload: dict[str, Any]
    steps: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int          # times the job was claimed
    failures: int          # transient + permanent failures (drives the backoff)
    interruptions: int     # times its owner died while it ran
    max_attempts: int
    not_before: float
    owner: str | None
    cancel_requested: bool
    created: float
    updated: float
    started: float | None
    finished: float | None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["priority"] = self.priority.name
        d["state"] = self.state.value
        return d


@dataclass(frozen=True)
class Event:
    job_id: int
    at: float
    state: str
    message: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    resource TEXT,
    payload TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    owner TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, priority, id);
-- Listings newest first, filtered by state or kind (the web console pages through them).
CREATE INDEX IF NOT EXISTS jobs_by_state_id ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_kind_id ON jobs (kind, id);
CREATE TABLE IF NOT EXISTS events (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    at REAL NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, at);
-- The last word of each device a job talked to (a printer's N-GET / N-EVENT-REPORT status, a
-- burner's last burn), by resource name ("printer:NAME", "burner:TARGET"), for the console.
CREATE TABLE IF NOT EXISTS devices (
    resource TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    events TEXT NOT NULL DEFAULT '[]',
    job_id INTEGER,
    at REAL NOT NULL
);
"""


def current_owner() -> str:
    """An owner token for this process: host, pid and the process start time.

    The start time (field 22 of /proc/PID/stat) tells a live process from a new one that
    reused the pid after a crash.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by an owner token still runs (on this host)."""
    try:
        host, pid_s, start = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another host's worker: we cannot tell, so we do not steal its jobs
    return _start_time(pid) == start and start != ""


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


class JobQueue:
    """The queue in one SQLite file. Safe to use from several threads and processes.

    Every call opens its own short connection, so a JobQueue may be shared between threads;
    SQLite's locking (WAL + BEGIN IMMEDIATE) serialises writers across processes.
    """

    def __init__(self, path: Path, *, limits: Mapping[str, int] | None = None,
                 default_limit: int = 1, backoff: Backoff | None = None,
                 max_interruptions: int = 10) -> None:
        self.path = Path(path)
        self.limits = dict(limits or {})
        self.default_limit = default_limit
        self.backoff = backoff or Backoff()
        self.max_interruptions = max_interruptions
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._read() as db:
            db.executescript(_SCHEMA)  # idempotent DDL; executescript commits by itself
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise JobError(f"{self.path}: job database schema {row[0]}, "
                               f"this mediasvc knows {SCHEMA_VERSION}")

    # -- connections --------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a job that was reported done stays done after a power cut, not only after
            # a process crash (NORMAL in WAL mode may lose the last commits on power loss).
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise JobError(f"{self.path}: cannot open the job database: {exc}") from exc
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JobError(f"{self.path}: job database error: {exc}") from exc
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        except sqlite3.Error as exc:
            raise JobError(f"{self.path}: job database error: {exc}") from exc
        finally:
            db.close()

    # -- submitting ---------------------------------------------------------------------------
    def submit(self, kind: str, payload: Mapping[str, Any] | None = None, *,
               uid: str | None = None, name: str | None = None,
               priority: Priority | str | int = Priority.MED, resource: str | None = None,
               max_attempts: int = 5, now: float | None = None) -> Job:
        """Add a job. With an existing ``uid`` the existing job is returned unchanged."""
        now = time.time() if now is None else now
        prio = Priority.parse(priority)
        if max_attempts < 1:
            raise JobError("max_attempts must be at least 1")
        with self._tx() as db:
            if uid is not None:
                row = db.execute("SELECT * FROM jobs WHERE uid=?", (uid,)).fetchone()
                if row is not None:
                    return _job(row)
            cur = db.execute(
                "INSERT INTO jobs (uid, kind, name, priority, state, resource, payload,"
                " max_attempts, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (uid or f"tmp-{os.urandom(8).hex()}", kind, name or kind, int(prio),
                 State.QUEUED.value, resource, json.dumps(dict(payload or {})), max_attempts,
                 now, now))
            job_id = int(cur.lastrowid or 0)
            if uid is None:
                db.execute("UPDATE jobs SET uid=? WHERE id=?", (str(job_id), job_id))
            _event(db, job_id, now, State.QUEUED, "submitted")
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    # -- working ------------------------------------------------------------------------------
    def limit(self, resource: str) -> int:
        return self.limits.get(resource, self.default_limit)

    def claim(self, owner: str, *, kinds: Iterable[str] | None = None,
              now: float | None = None) -> Job | None:
        """Take the next runnable job (priority, then FIFO) whose resource has room, or None."""
        now = time.time() if now is None else now
        kind_list = list(kinds) if kinds is not None else None
        with self._tx() as db:
            busy: dict[str, int] = {
                r: n for r, n in db.execute(
                    "SELECT resource, COUNT(*) FROM jobs WHERE state='running'"
                    " AND resource IS NOT NULL GROUP BY resource")}
            sql = ("SELECT * FROM jobs WHERE state IN (?, ?) AND not_before <= ?")
            params: list[Any] = [*_CLAIMABLE, now]
            if kind_list is not None:
                sql += f" AND kind IN ({','.join('?' * len(kind_list))})"
                params += kind_list
            for row in db.execute(sql + " ORDER BY priority, id", params):
                resource = row["resource"]
                if resource is not None and busy.get(resource, 0) >= self.limit(resource):
                    continue
                db.execute(
                    "UPDATE jobs SET state='running', owner=?, attempts=attempts+1,"
                    " started=?, updated=? WHERE id=?", (owner, now, now, row["id"]))
                _event(db, row["id"], now, State.RUNNING, f"claimed by {owner}")
                return _job(db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone())
        return None

    def record_step(self, job_id: int, owner: str, step: str, value: Any = True) -> Job:
        """Record that a step of a running job is done (the handler's safe point)."""
        now = time.time()
        with self._tx() as db:
            row = self._owned(db, job_id, owner)
            steps = json.loads(row["steps"])
            steps[step] = value
            db.execute("UPDATE jobs SET steps=?, updated=? WHERE id=?",
                       (json.dumps(steps), now, job_id))
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def clear_step(self, job_id: int, owner: str, step: str) -> Job:
        """Forget a recorded step (e.g. an "in flight" marker once its outcome is known)."""
        now = time.time()
        with self._tx() as db:
            row = self._owned(db, job_id, owner)
            steps = json.loads(row["steps"])
            steps.pop(step, None)
            db.execute("UPDATE jobs SET steps=?, updated=? WHERE id=?",
                       (json.dumps(steps), now, job_id))
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def complete(self, job_id: int, owner: str, result: Mapping[str, Any] | None = None) -> Job:
        now = time.time()
        with self._tx() as db:
            self._owned(db, job_id, owner)
            db.execute("UPDATE jobs SET state='done', result=?, error=NULL, owner=NULL,"
                       " finished=?, updated=? WHERE id=?",
                       (json.dumps(dict(result or {})), now, now, job_id))
            _event(db, job_id, now, State.DONE, "done")
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def fail(self, job_id: int, owner: str, error: str, *, transient: bool = False,
             result: Mapping[str, Any] | None = None, now: float | None = None) -> Job:
        """A run failed. Transient and attempts left: ``retrying`` after a backoff delay."""
        now = time.time() if now is None else now
        with self._tx() as db:
            row = self._owned(db, job_id, owner)
            failures = row["failures"] + 1
            res = json.dumps(dict(result)) if result is not None else row["result"]
            if row["cancel_requested"]:
                # The operator cancelled it while this run was ending on its own.
                msg = f"cancelled while running (its last run: {error})"
                db.execute("UPDATE jobs SET state='cancelled', failures=?, error=?, result=?,"
                           " owner=NULL, finished=?, updated=? WHERE id=?",
                           (failures, msg, res, now, now, job_id))
                _event(db, job_id, now, State.CANCELLED, msg)
            elif transient and failures < row["max_attempts"]:
                delay = self.backoff.delay(failures)
                db.execute("UPDATE jobs SET state='retrying', failures=?, error=?, result=?,"
                           " not_before=?, owner=NULL, updated=? WHERE id=?",
                           (failures, error, res, now + delay, now, job_id))
                _event(db, job_id, now, State.RETRYING, f"{error} (retry in {delay:.0f} s)")
            else:
                if transient:
                    error = f"{error} (gave up after {failures} attempts)"
                db.execute("UPDATE jobs SET state='failed', failures=?, error=?, result=?,"
                           " owner=NULL, finished=?, updated=? WHERE id=?",
                           (failures, error, res, now, now, job_id))
                _event(db, job_id, now, State.FAILED, error)
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def cancelled(self, job_id: int, owner: str, message: str = "cancelled while running"
                  ) -> Job:
        """The worker of a running job stopped it because ``cancel()`` was requested."""
        now = time.time()
        with self._tx() as db:
            self._owned(db, job_id, owner)
            db.execute("UPDATE jobs SET state='cancelled', error=?, owner=NULL, finished=?,"
                       " updated=? WHERE id=?", (message, now, now, job_id))
            _event(db, job_id, now, State.CANCELLED, message)
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def release(self, job_id: int, owner: str, message: str = "released") -> Job:
        """Give a running job back to the queue untouched (e.g. on an orderly shutdown)."""
        now = time.time()
        with self._tx() as db:
            self._owned(db, job_id, owner)
            db.execute("UPDATE jobs SET state='queued', owner=NULL, updated=? WHERE id=?",
                       (now, job_id))
            _event(db, job_id, now, State.QUEUED, message)
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def _owned(self, db: sqlite3.Connection, job_id: int, owner: str) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute("SELECT * FROM jobs WHERE id=?",
                                             (job_id,)).fetchone()
        if row is None:
            raise JobError(f"job {job_id} does not exist")
        if row["state"] != State.RUNNING.value or row["owner"] != owner:
            # A worker whose process was presumed dead (or a stale thread) must not overwrite
            # what the job's new owner did.
            raise JobError(f"job {job_id} is not running under {owner} (state {row['state']},"
                           f" owner {row['owner']})")
        return row

    # -- crash recovery -----------------------------------------------------------------------
    def recover(self, is_alive: Callable[[str], bool] = owner_alive) -> list[Job]:
        """Requeue jobs left ``running`` by owners that died; return them.

        Not counted as failures (the job did nothing wrong), but a job that keeps taking its
        owner down (``max_interruptions``) is failed rather than crashing the service forever.
        """
        now = time.time()
        out = []
        with self._tx() as db:
            for row in db.execute("SELECT * FROM jobs WHERE state='running'").fetchall():
                if row["owner"] is not None and is_alive(row["owner"]):
                    continue
                n = row["interruptions"] + 1
                if n >= self.max_interruptions:
                    msg = f"interrupted {n} times (its process died while it ran); not retried"
                    db.execute("UPDATE jobs SET state='failed', interruptions=?, error=?,"
                               " owner=NULL, finished=?, updated=? WHERE id=?",
                               (n, msg, now, now, row["id"]))
                    _event(db, row["id"], now, State.FAILED, msg)
                else:
                    db.execute("UPDATE jobs SET state='queued', interruptions=?, owner=NULL,"
                               " updated=? WHERE id=?", (n, now, row["id"]))
                    _event(db, row["id"], now, State.QUEUED,
                           f"requeued: owner {row['owner']} is gone")
                out.append(_job(db.execute("SELECT * FROM jobs WHERE id=?",
                                           (row["id"],)).fetchone()))
        return out

    # -- operator actions ---------------------------------------------------------------------
    def cancel(self, job_id: int) -> Job:
        """Cancel a waiting job now; a running job gets ``cancel_requested`` (its worker stops)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise JobError(f"job {job_id} does not exist")
            state = State(row["state"])
            if state in FINAL_STATES:
                raise JobError(f"job {job_id} is already {state}; nothing to cancel")
            if state is State.RUNNING:
                db.execute("UPDATE jobs SET cancel_requested=1, updated=? WHERE id=?",
                           (now, job_id))
                _event(db, job_id, now, state, "cancel requested")
            else:
                db.execute("UPDATE jobs SET state='cancelled', finished=?, updated=? WHERE id=?",
                           (now, now, job_id))
                _event(db, job_id, now, State.CANCELLED, "cancelled")
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def retry(self, job_id: int, *, clear_steps: Iterable[str] = ()) -> Job:
        """Put a failed or cancelled job (or a retrying one, now) back in the queue.

        ``clear_steps``: recorded steps the operator's retry overrides (e.g. an "in flight"
        marker that made the job refuse to burn or print again on its own)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise JobError(f"job {job_id} does not exist")
            if row["state"] not in (State.FAILED.value, State.CANCELLED.value,
                                    State.RETRYING.value):
                raise JobError(f"job {job_id} is {row['state']}; only failed, cancelled or"
                               " retrying jobs can be retried")
            steps = json.loads(row["steps"])
            for step in clear_steps:
                steps.pop(step, None)
            db.execute("UPDATE jobs SET state='queued', failures=0, interruptions=0, error=NULL,"
                       " cancel_requested=0, not_before=0, finished=NULL, steps=?, updated=?"
                       " WHERE id=?", (json.dumps(steps), now, job_id))
            _event(db, job_id, now, State.QUEUED, "retry requested")
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    # -- reading ------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"job {job_id} does not exist")
        return _job(row)

    def find(self, uid: str) -> Job | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE uid=?", (uid,)).fetchone()
        return None if row is None else _job(row)

    def list_jobs(self, states: Iterable[State | str] | None = None, *, kind: str | None = None,
                  limit: int | None = None, before: int | None = None) -> list[Job]:
        """Jobs newest first; ``before``: only ids below it (the next page of a listing)."""
        sql, params = "SELECT * FROM jobs WHERE 1=1", list[Any]()
        if before is not None:
            sql += " AND id < ?"
            params.append(int(before))
        if states is not None:
            st = [State(s).value for s in states]
            sql += f" AND state IN ({','.join('?' * len(st))})"
            params += st
        if kind is not None:
            sql += " AND kind=?"
            params.append(kind)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._read() as db:
            return [_job(r) for r in db.execute(sql, params)]

    def counts(self) -> dict[str, int]:
        """Jobs per state (every state present, zero included)."""
        out = {s.value: 0 for s in State}
        with self._read() as db:
            for state, n in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                out[state] = n
        return out

    def next_due(self) -> float | None:
        """When the earliest waiting job becomes claimable (None: nothing waits)."""
        with self._read() as db:
            row = db.execute("SELECT MIN(not_before) FROM jobs WHERE state IN (?, ?)",
                             _CLAIMABLE).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- devices ------------------------------------------------------------------------------
    def set_device(self, resource: str, state: str, detail: str = "", *,
                   events: Iterable[str] = (), job_id: int | None = None) -> None:
        """Record the last status a job saw of a device (replacing the previous one)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?)",
                       (resource, state, detail, json.dumps(list(events)), job_id, time.time()))

    def devices(self) -> dict[str, dict[str, Any]]:
        """The last recorded status of every device, by resource name."""
        with self._read() as db:
            return {r["resource"]: {"state": r["state"], "detail": r["detail"],
                                    "events": json.loads(r["events"]), "job": r["job_id"],
                                    "at": r["at"]}
                    for r in db.execute("SELECT * FROM devices")}

    def history(self, job_id: int) -> list[Event]:
        with self._read() as db:
            return [Event(r["job_id"], r["at"], r["state"], r["message"]) for r in db.execute(
                "SELECT * FROM events WHERE job_id=? ORDER BY at, rowid", (job_id,))]


def _event(db: sqlite3.Connection, job_id: int, at: float, state: State | str,
           message: str) -> None:
    db.execute("INSERT INTO events VALUES (?,?,?,?)", (job_id, at, str(state), message))


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], uid=row["uid"], kind=row["kind"], name=row["name"],
        priority=Priority(row["priority"]), state=State(row["state"]), resource=row["resource"],
        payload=json.loads(row["payload"]), steps=json.loads(row["steps"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"], attempts=row["attempts"], failures=row["failures"],
        interruptions=row["interruptions"], max_attempts=row["max_attempts"],
        not_before=row["not_before"], owner=row["owner"],
        cancel_requested=bool(row["cancel_requested"]), created=row["created"],
        updated=row["updated"], started=row["started"], finished=row["finished"])


__all__ = ["Backoff", "Event", "FINAL_STATES", "Job", "JobQueue", "Priority", "State",
           "current_owner", "owner_alive"]
