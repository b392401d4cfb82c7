"""`mediasvc serve`: the long-running service. Watcher thread, worker threads, systemd glue.

Start-up, in this order (each step makes the next one safe):
1. take an exclusive lock on run/mediasvc.lock: one service per root;
2. make the folders; refuse a drop folder and spool on different filesystems (a claim must
   be a rename);
3. recover: jobs left ``running`` by a previous (dead) process go back to the queue, and any
   runner process of theirs that is somehow still there is killed first;
4. reconcile: finished jobs whose spool entry is still there are published; adopt: claimed
   spool entries without a queue row are queued;
5. start the watcher and the workers, then tell systemd READY=1.

A worker claims a job (priority, FIFO, resource limits: jobqueue.py) and runs it in a runner
process (runner.py), watching for cancel requests and the job timeout; the outcome goes into
the queue, then the job is published to done/ or failed/ (spool.py).

SIGTERM: no new claims; running jobs are finished (a burn must not be cut: TimeoutStopSec in
the unit is long), then exit 0. SIGKILL at any moment is recovered at the next start.
Logs speak of job numbers, kinds and counts; job folder names (which sites sometimes make from
patient names) only at DEBUG.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from mediasvc.durable import atomic_write as write_atomic
from mediasvc.errors import ConfigError, JobError, MediasvcError
from mediasvc.jobqueue import Backoff, Job, JobQueue, State, current_owner
from mediasvc.service import spool
from mediasvc.service.config import ServiceConfig
from mediasvc.service.console import Console
from mediasvc.service.ingress_child import IngressChild
from mediasvc.service.runner import result_path
from mediasvc.service.sdnotify import Notifier, watchdog_interval
from mediasvc.service.spool import Candidate
from mediasvc.service.watcher import Watcher

log = logging.getLogger("mediasvc.service")


def open_queue(cfg: ServiceConfig) -> JobQueue:
    return JobQueue(cfg.db, limits=cfg.limits,
                    backoff=Backoff(cfg.retry_base_seconds, 2.0, cfg.retry_cap_seconds),
                    max_interruptions=cfg.max_interruptions)


def queue_status_line(counts: dict[str, int]) -> str:
    return (f"{counts['queued']} queued, {counts['running']} running, {counts['retrying']} "
            f"retrying; {counts['done']} done, {counts['failed']} failed")


def service_pid(cfg: ServiceConfig) -> int | None:
    """The pid of the service running on this root, or None (the lock is free)."""
    try:
        fh = cfg.lock_file.open("r")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


class Daemon:
    def __init__(self, cfg: ServiceConfig, *, config_path: Path | None = None,
                 root_override: Path | None = None, verbosity: int = 0) -> None:
        self.cfg = cfg
        self.runner_args: list[str] = []
        if config_path is not None:
            self.runner_args += ["--config", str(config_path.absolute())]
        if root_override is not None:
            self.runner_args += ["--root", str(root_override.absolute())]
        if verbosity:
            self.runner_args += ["-" + "v" * verbosity]
        self.owner = current_owner()
        self.notifier = Notifier()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.started = time.time()
        self.running: dict[int, dict[str, Any]] = {}
        self._running_lock = threading.Lock()
        self._lock_fh: TextIO | None = None
        self.queue: JobQueue | None = None
        self.watcher: Watcher | None = None
        self.workers: list[threading.Thread] = []
        self.console: Console | None = None
        self.ingress: IngressChild | None = None

    # -- start-up ---------------------------------------------------------------------------
    def _lock(self) -> None:
        self.cfg.run.mkdir(parents=True, exist_ok=True)
        fh = self.cfg.lock_file.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            other = fh.read().strip()
            fh.close()
            raise MediasvcError(f"another mediasvc serve (pid {other or '?'}) runs on "
                                f"{self.cfg.root}") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def _prepare_dirs(self) -> None:
        cfg = self.cfg
        for d in cfg.dirs() + ([cfg.ingress_dir] if cfg.ingress is not None else []):
            d.mkdir(parents=True, exist_ok=True)
        for prof in cfg.export_profiles:
            (cfg.drop / "export" / prof).mkdir(exist_ok=True)
        for name in cfg.printers:
            (cfg.drop / "print" / name).mkdir(exist_ok=True)
        if cfg.drop.stat().st_dev != cfg.spool.stat().st_dev:
            raise ConfigError(cfg.source or "<embedded default>", "paths.spool", str(cfg.spool),
                              f"must be on the same filesystem as the drop folder {cfg.drop}"
                              " (jobs are claimed by an atomic rename)")

    def _recover(self, q: JobQueue) -> None:
        # We hold the root's lock, so every owner of a running job is a dead predecessor.
        stale = [j for j in q.list_jobs([State.RUNNING])]
        for job in stale:
            _kill_runner(self.cfg.spool / job.uid)
        for job in q.recover(is_alive=lambda owner: owner == self.owner):
            log.info("job %d (%s) was interrupted; %s", job.id, job.kind,
                     "requeued" if job.state is State.QUEUED else f"now {job.state}")
            if job.state is not State.QUEUED:
                spool.finalize(self.cfg, q, job)
        n = spool.reconcile(self.cfg, q)
        if n:
            log.info("published %d finished job(s) left in the spool", n)
        for job in spool.adopt(self.cfg, q):
            log.info("queued job %d (%s) claimed before the last stop", job.id, job.kind)

    # -- the service ------------------------------------------------------------------------
    def serve(self) -> int:
        cfg = self.cfg
        # First of all: a stop request during start-up (recovery may take a while) must end
        # in an orderly exit, not in the default action of SIGTERM.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._lock()
        self._prepare_dirs()
        q = self.queue = open_queue(cfg)
        self._recover(q)
        self.watcher = Watcher(cfg, self._on_settled)
        self.watcher.start()
        for i in range(cfg.workers):
            t = threading.Thread(target=self._worker, name=f"worker-{i + 1}", daemon=True)
            t.start()
            self.workers.append(t)
        if cfg.ingress is not None:
            # After recovery: the listener's own recovery queues what it claimed before a
            # crash, and jobs it submits now find the workers running.
            self.ingress = IngressChild(cfg, self.runner_args, self.stop)
            self.ingress.start()
        counts = q.counts()
        log.info("mediasvc serving %s (%s, %d workers, settle %.1f s): %s", cfg.root,
                 self.watcher.observer_kind, cfg.workers, cfg.settle_seconds,
                 queue_status_line(counts))
        self.notifier.ready(queue_status_line(counts))
        self._write_status(counts)
        if cfg.web.enabled:
            self.console = Console(cfg, self.runner_args).start()
        self._main_loop(q)
        self.notifier.stopping("finishing running jobs")
        log.info("stopping: waiting for %d running job(s)", len(self.running))
        self.wake.set()
        self.watcher.stop()
        if self.ingress is not None:
            self.ingress.join()
        for t in self.workers:
            t.join()
        if self.console is not None:
            self.console.stop()
        self._write_status(q.counts())
        log.info("mediasvc stopped")
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop.set()
        self.wake.set()

    def _main_loop(self, q: JobQueue) -> None:
        interval = watchdog_interval()
        tick = min(interval, 2.0) if interval else 2.0
        last_status = ""
        while not self.stop.wait(tick):
            if self.console is not None:
                self.console.check()
            if self._healthy():
                self.notifier.watchdog()
            else:
                log.error("a service thread is stuck or dead; withholding the watchdog "
                          "keep-alive so that systemd restarts the service")
            try:
                counts = q.counts()
            except JobError as exc:
                log.warning("cannot read the queue: %s", exc)
                continue
            line = queue_status_line(counts)
            if line != last_status:
                self.notifier.status(line)
                last_status = line
            self._write_status(counts)

    def _healthy(self) -> bool:
        w = self.watcher
        if w is None or not w.alive() or time.monotonic() - w.heartbeat > 30.0:
            return False
        if self.ingress is not None and not self.ingress.alive():
            return False
        return all(t.is_alive() for t in self.workers)

    def _write_status(self, counts: dict[str, int]) -> None:
        with self._running_lock:
            running = list(self.running.values())
        status = {"pid": os.getpid(), "root": str(self.cfg.root), "started": self.started,
                  "updated": time.time(), "observer": self.watcher.observer_kind
                  if self.watcher else "", "workers": self.cfg.workers, "running": running,
                  "counts": counts, "stopping": self.stop.is_set(),
                  "ingress": self.ingress.status() if self.ingress else None}
        try:
            write_atomic(self.cfg.status_file, json.dumps(status).encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.cfg.status_file, exc)

    # -- drops -> jobs ----------------------------------------------------------------------
    def _on_settled(self, cand: Candidate, settled_at: float) -> None:
        if self.stop.is_set() or self.queue is None:
            return
        try:
            job = spool.claim(self.cfg, self.queue, cand, settled_at)
        except MediasvcError as exc:
            log.error("cannot claim a drop in %s: %s", cand.path.parent, exc)
            return
        if job is not None:
            log.info("job %d: %s %s claimed (priority %s)", job.id, job.kind, job.payload.get(
                "group") or "", job.priority.name)
            log.debug("job %d is the drop %s", job.id, cand.path)
            self.wake.set()

    # -- workers ----------------------------------------------------------------------------
    def _spawn_runner(self) -> subprocess.Popen[bytes]:
        """A runner that loads its packages now and waits for a job number on stdin."""
        cmd = [sys.executable, "-m", "mediasvc.service.runner", "--warm", "--owner",
               self.owner, "--parent", str(os.getpid()), *self.runner_args]
        return subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)

    def _worker(self) -> None:
        """Claim and run jobs; keep one warm runner ready for the next job."""
        q = self.queue
        assert q is not None
        warm: subprocess.Popen[bytes] | None = None
        while not self.stop.is_set():
            if warm is None or warm.poll() is not None:
                warm = self._spawn_runner()
            try:
                job = q.claim(self.owner)
            except JobError as exc:
                log.warning("cannot claim a job: %s", exc)
                job = None
            if job is None:
                due = q.next_due()
                wait = 2.0 if due is None else min(max(due - time.time(), 0.05), 2.0)
                self.wake.wait(wait)
                self.wake.clear()
                continue
            runner, warm = warm, None
            try:
                self._execute(q, job, runner)
            except Exception:  # never lose the worker thread; the job is recovered
                log.exception("job %d: worker error", job.id)
                with contextlib.suppress(MediasvcError):
                    q.fail(job.id, self.owner, "internal error in the worker", transient=True)

        if warm is not None and warm.poll() is None:  # stopping: let the idle runner go
            with contextlib.suppress(OSError):
                if warm.stdin is not None:
                    warm.stdin.close()
            try:
                warm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _killpg(warm)

    def _execute(self, q: JobQueue, job: Job, runner: subprocess.Popen[bytes]) -> None:
        entry = self.cfg.spool / job.uid
        log.info("job %d: %s started (attempt %d)", job.id, job.kind, job.attempts)
        if not (entry / "input").exists():
            final = q.fail(job.id, self.owner, "the job's input is missing from the spool "
                           f"({entry}); it cannot run")
            spool.finalize(self.cfg, q, final)
            return
        res_file = result_path(entry, job.attempts)
        res_file.unlink(missing_ok=True)
        proc = runner
        try:
            assert proc.stdin is not None
            proc.stdin.write(f"{job.id}\n".encode())
            proc.stdin.close()
        except OSError:  # the warm runner died meanwhile: start a cold one
            _killpg(proc)
            proc = self._spawn_runner()
            assert proc.stdin is not None
            proc.stdin.write(f"{job.id}\n".encode())
            proc.stdin.close()
        with contextlib.suppress(OSError):
            write_atomic(entry / "runner.pid", f"{proc.pid}:{_start_time(proc.pid)}".encode())
        with self._running_lock:
            self.running[job.id] = {"job": job.id, "kind": job.kind, "pid": proc.pid,
                                    "started": time.time()}
        stopped = ""
        deadline = time.monotonic() + self.cfg.job_timeout_seconds
        try:
            while True:
                try:
                    proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() > deadline and not stopped:
                    stopped = f"timed out after {self.cfg.job_timeout_seconds:.0f} s"
                    _killpg(proc)
                elif not stopped and q.get(job.id).cancel_requested:
                    stopped = "cancelled"
                    _killpg(proc)
        finally:
            with self._running_lock:
                self.running.pop(job.id, None)
        # Whatever the runner started and left behind (it may have crashed) goes with it; its
        # pid stays reserved while the group has members, so this hits nothing else.
        _killpg(proc)
        outcome = _read_outcome(res_file)
        if stopped == "cancelled":
            final = q.cancelled(job.id, self.owner, "cancelled while running")
        elif outcome is None:
            why = stopped or _exit_reason(proc.returncode)
            final = q.fail(job.id, self.owner, f"the job's process ended without a result "
                           f"({why})", transient=not stopped)
        elif outcome.get("ok"):
            final = q.complete(job.id, self.owner, outcome.get("result") or {})
        else:
            final = q.fail(job.id, self.owner, str(outcome.get("error")),
                           transient=bool(outcome.get("transient")), result=outcome.get("result"))
        res_file.unlink(missing_ok=True)
        (entry / "runner.pid").unlink(missing_ok=True)
        log.info("job %d: %s %s%s", job.id, job.kind, final.state.value,
                 f" (retry in {max(final.not_before - time.time(), 0):.0f} s)"
                 if final.state is State.RETRYING else "")
        if final.state in (State.DONE, State.FAILED, State.CANCELLED):
            spool.finalize(self.cfg, q, final)
        self.wake.set()


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _kill_runner(entry: Path) -> None:
    """Kill what is left of a previous service's runner: its process group (the runner died
    with the daemon, but an xorriso or a pool worker it started may still run and would race
    with the redo). A pid is not reused while a process group of that id has members, so the
    group is ours unless its leader's pid now belongs to another process (start time differs).
    """
    try:
        pid_s, start = (entry / "runner.pid").read_text().split(":")
        pid = int(pid_s)
    except (OSError, ValueError):
        return
    now = _start_time(pid)
    if now and now != start:
        return  # the pid was reused by an unrelated process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_outcome(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
