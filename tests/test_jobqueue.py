"""The persistent job queue: order, resource limits, atomic claims, retries, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mediasvc.errors import JobError
from mediasvc.jobqueue import Backoff, JobQueue, Priority, State, current_owner, owner_alive

OWNER = current_owner()


def test_priority_then_fifo(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    names = [("l1", "LOW"), ("m1", "MED"), ("h1", "HIGH"), ("m2", "MED"), ("h2", "HIGH"),
             ("l2", "LOW")]
    for name, prio in names:
        q.submit("t", {}, name=name, priority=prio)
    order = []
    while (job := q.claim(OWNER)) is not None:
        order.append(job.name)
        q.complete(job.id, OWNER)
    assert order == ["h1", "h2", "m1", "m2", "l1", "l2"]
    assert q.counts()["done"] == 6


def test_resource_limit_does_not_block_other_resources(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db", limits={"printer:B": 2})
    a1 = q.submit("print", name="a1", resource="printer:A", priority="HIGH")
    q.submit("print", name="a2", resource="printer:A", priority="HIGH")
    q.submit("print", name="b1", resource="printer:B")
    q.submit("print", name="b2", resource="printer:B")
    q.submit("print", name="b3", resource="printer:B")
    got = [j.name for j in iter(lambda: q.claim(OWNER), None)]
    # one association on A (default limit 1), two on B (configured), b3 waits
    assert got == ["a1", "b1", "b2"]
    q.complete(a1.id, OWNER)
    nxt = q.claim(OWNER)
    assert nxt is not None and nxt.name == "a2"
    assert q.claim(OWNER) is None


def test_submit_is_idempotent_by_uid(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    a = q.submit("export", {"x": 1}, uid="spool-123")
    b = q.submit("export", {"x": 2}, uid="spool-123")
    assert a.id == b.id and b.payload == {"x": 1}
    assert len(q.list_jobs()) == 1


def test_transient_failure_backs_off_then_fails(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db", backoff=Backoff(base=10, factor=2, cap=25))
    job = q.submit("print", max_attempts=3, now=1000.0)
    j = q.claim(OWNER, now=1000.0)
    assert j is not None
    j = q.fail(job.id, OWNER, "printer down", transient=True, now=1000.0)
    assert j.state is State.RETRYING and j.not_before == 1010.0
    assert q.claim(OWNER, now=1009.0) is None          # still backing off
    assert q.next_due() == 1010.0
    assert q.claim(OWNER, now=1010.0) is not None
    j = q.fail(job.id, OWNER, "printer down", transient=True, now=1010.0)
    assert j.state is State.RETRYING and j.not_before == 1030.0  # 10*2, under the cap
    assert q.claim(OWNER, now=1030.0) is not None
    j = q.fail(job.id, OWNER, "printer down", transient=True, now=1030.0)
    assert j.state is State.FAILED and "gave up after 3 attempts" in (j.error or "")
    assert j.attempts == 3


def test_permanent_failure_retry_and_cancel(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = q.submit("export")
    q.claim(OWNER)
    failed = q.fail(job.id, OWNER, "not DICOM: a.txt")
    assert failed.state is State.FAILED and failed.error == "not DICOM: a.txt"
    with pytest.raises(JobError, match="already failed"):
        q.cancel(job.id)
    again = q.retry(job.id)
    assert again.state is State.QUEUED and again.error is None
    cancelled = q.cancel(job.id)
    assert cancelled.state is State.CANCELLED
    assert q.claim(OWNER) is None
    # a running job is only flagged; its worker stops it
    job2 = q.submit("export")
    q.claim(OWNER)
    assert q.cancel(job2.id).cancel_requested
    assert q.get(job2.id).state is State.RUNNING
    with pytest.raises(JobError, match="only failed, cancelled or retrying"):
        q.retry(job2.id)
    # its run ends on its own (say, a transient failure): it stays cancelled, not retried
    ended = q.fail(job2.id, OWNER, "printer down", transient=True)
    assert ended.state is State.CANCELLED and "printer down" in (ended.error or "")
    states = [e.state for e in q.history(job.id)]
    assert states == ["queued", "running", "failed", "queued", "cancelled"]


def test_stale_owner_cannot_finish_a_job(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = q.submit("export")
    q.claim("otherhost-dead:1:1")
    with pytest.raises(JobError, match="not running under"):
        q.complete(job.id, OWNER)
    with pytest.raises(JobError, match="not running under"):
        q.record_step(job.id, OWNER, "iso")


_CLAIMER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mediasvc.jobqueue import JobQueue, current_owner
    q = JobQueue(Path(sys.argv[1]))
    me = current_owner()
    got = []
    while (job := q.claim(me)) is not None:
        got.append(job.id)
        q.complete(job.id, me)
    print(json.dumps(got))
""")


def test_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = JobQueue(db)
    for i in range(120):
        q.submit("t", name=f"j{i}", priority=("HIGH", "MED", "LOW")[i % 3])
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, str(db)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    claimed: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed += json.loads(out)
    assert sorted(claimed) == sorted(j.id for j in q.list_jobs())  # each exactly once
    assert q.counts()["done"] == 120
    with sqlite3.connect(db) as con:
        runs = con.execute("SELECT COUNT(*) FROM events WHERE state='running'").fetchone()[0]
    assert runs == 120


_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mediasvc.jobqueue import JobQueue, current_owner
    q = JobQueue(Path(sys.argv[1]))
    me = current_owner()
    job = q.claim(me)
    q.record_step(job.id, me, "fileset", "staging")
    print(job.id, flush=True)
    time.sleep(60)
""")


def test_recover_requeues_jobs_of_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    q = JobQueue(db, max_interruptions=2)
    job = q.submit("export", {"src": "x"})
    p = subprocess.Popen([sys.executable, "-c", _WORKER, str(db)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None
    assert int(p.stdout.readline()) == job.id
    running = q.get(job.id)
    assert running.state is State.RUNNING and running.owner and owner_alive(running.owner)
    assert q.recover() == []                      # its owner is alive: not stolen
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not owner_alive(running.owner)
    [back] = q.recover()
    assert back.state is State.QUEUED and back.interruptions == 1
    assert back.steps == {"fileset": "staging"}   # the handler resumes from its safe point
    resumed = q.claim(OWNER)
    assert resumed is not None and resumed.steps == {"fileset": "staging"}
    # a job that keeps dying with its process is failed after max_interruptions
    [gone] = q.recover(is_alive=lambda owner: False)
    assert gone.state is State.FAILED and "interrupted 2 times" in (gone.error or "")


def test_priority_parse_errors() -> None:
    assert Priority.parse("high") is Priority.HIGH
    with pytest.raises(JobError, match="not one of HIGH, MED, LOW"):
        Priority.parse("URGENT")
