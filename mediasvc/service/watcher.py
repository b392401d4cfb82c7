"""The drop-folder watcher: watchdog events + a settle check, then an atomic claim.

A drop is complete when it has *settled* (its signature: the names, sizes and mtimes of
everything below it, unchanged for ``settle_seconds`` and no watchdog event meanwhile) or when
it carries a ``.ready`` marker (``job1/.ready`` in a job folder; ``NAME.ready`` next to a file
in drop/import/). We never rely on "file closed" events: the polling observer, needed on
NFS/CIFS shares, does not produce them, and a writer may close and reopen a file.

The observer (inotify, or polling on shares) only makes the watcher prompt: every event resets
the settle clock of its job and wakes the scanner. The scanner also lists the drop folders
itself every ``rescan_seconds`` and at start, so a drop made while the service was down, or an
event lost to a full inotify queue, is still found.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediasvc.service.config import ServiceConfig
from mediasvc.service.spool import READY_MARKER, Candidate

log = logging.getLogger(__name__)


@dataclass
class _Track:
    signature: tuple[int, int, int, str] | None
    since: float


def signature(path: Path) -> tuple[int, int, int, str] | None:
    """(entries, bytes, newest mtime ns, digest of names+sizes+mtimes) without following links."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    h = hashlib.blake2b(digest_size=16)
    count, total, newest = 1, st.st_size, st.st_mtime_ns
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                try:
                    s = os.lstat(p)
                except FileNotFoundError:
                    continue
                count += 1
                total += s.st_size
                newest = max(newest, s.st_mtime_ns)
                h.update(f"{p}\0{s.st_size}\0{s.st_mtime_ns}\n".encode())
    return count, total, newest, h.hexdigest()


def discover(cfg: ServiceConfig) -> list[Candidate]:
    """Every possible job in the drop folders right now."""
    out: list[Candidate] = []
    for kind in ("export", "print"):
        base = cfg.drop / kind
        for group in _entries(base):
            if group.is_dir() and not group.is_symlink():
                out += [Candidate(kind, group.name, p) for p in _entries(group)]
    for p in _entries(cfg.drop / "import"):
        if p.name.endswith(READY_MARKER) and not p.is_dir():
            continue
        out.append(Candidate("import", None, p))
    return out


def _entries(d: Path) -> list[Path]:
    try:
        return sorted(p for p in d.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def candidate_of(cfg: ServiceConfig, path: str) -> Candidate | None:
    """Map an event path to the job it belongs to."""
    try:
        rel = Path(path).relative_to(cfg.drop)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) >= 3 and parts[0] in ("export", "print"):
        if parts[2].startswith("."):
            return None
        return Candidate(parts[0], parts[1], cfg.drop / parts[0] / parts[1] / parts[2])
    if len(parts) >= 2 and parts[0] == "import" and not parts[1].startswith("."):
        name = parts[1]
        if len(parts) == 2 and name.endswith(READY_MARKER):
            name = name[: -len(READY_MARKER)]
        return Candidate("import", None, cfg.drop / "import" / name)
    return None


def is_marked_ready(cand: Candidate) -> bool:
    if cand.path.is_dir() and not cand.path.is_symlink():
        return (cand.path / READY_MARKER).is_file()
    return cand.path.with_name(cand.name + READY_MARKER).exists()


class Watcher:
    """Finds settled drops and hands them to ``on_settled(candidate, settled_at)``."""

    def __init__(self, cfg: ServiceConfig,
                 on_settled: Callable[[Candidate, float], None]) -> None:
        self.cfg = cfg
        self.on_settled = on_settled
        self.observer: Any = None
        self.observer_kind = ""
        self._tracks: dict[Path, _Track] = {}
        self._changed: dict[Path, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()

    # -- observer ---------------------------------------------------------------------------
    def _start_observer(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):  # type: ignore[misc]
            def on_any_event(self, event: Any) -> None:
                for attr in ("src_path", "dest_path"):
                    p = getattr(event, attr, "")
                    if p:
                        watcher.touch(os.fsdecode(p))

        kind = self.cfg.observer
        if kind in ("auto", "inotify"):
            try:
                obs = Observer()
                obs.schedule(Handler(), str(self.cfg.drop), recursive=True)
                obs.start()
                self.observer, self.observer_kind = obs, type(obs).__name__
                return
            except OSError as exc:
                if kind == "inotify":
                    raise
                log.warning("inotify observer unavailable (%s); polling the drop folders", exc)
        obs = PollingObserver(timeout=max(self.cfg.tick_seconds, 0.1))
        obs.schedule(Handler(), str(self.cfg.drop), recursive=True)
        obs.start()
        self.observer, self.observer_kind = obs, "PollingObserver"

    def touch(self, path: str) -> None:
        cand = candidate_of(self.cfg, path)
        if cand is not None:
            with self._lock:
                self._changed[cand.path] = time.monotonic()
            self._wake.set()

    # -- scanner ----------------------------------------------------------------------------
    def start(self) -> None:
        self._start_observer()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive()
                    and (self.observer is None or self.observer.is_alive()))

    def _run(self) -> None:
        last_rescan = 0.0
        cands: dict[Path, Candidate] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            self.heartbeat = now
            try:
                if now - last_rescan >= self.cfg.rescan_seconds or not cands:
                    cands = {c.path: c for c in discover(self.cfg)}
                    last_rescan = now
                with self._lock:
                    changed = dict(self._changed)
                    self._changed.clear()
                for path in changed:
                    if path not in cands and path.exists():
                        c = candidate_of(self.cfg, str(path))
                        if c is not None:
                            cands[path] = c
                cands = self._check(cands, changed, now)
            except Exception:  # the watcher must survive anything one drop can do to it
                log.exception("drop-folder scan failed; retrying")
            self._wake.wait(self._next_wait(bool(cands)))
            self._wake.clear()

    def _next_wait(self, pending: bool) -> float:
        if pending:
            return self.cfg.tick_seconds
        return min(self.cfg.rescan_seconds, 5.0)

    def _check(self, cands: dict[Path, Candidate], changed: dict[Path, float],
               now: float) -> dict[Path, Candidate]:
        keep: dict[Path, Candidate] = {}
        for path, cand in cands.items():
            sig = signature(path)
            if sig is None:
                self._tracks.pop(path, None)
                continue
            track = self._tracks.get(path)
            if track is None or track.signature != sig:
                track = _Track(sig, now)
                self._tracks[path] = track
            if path in changed:
                track.since = max(track.since, changed[path])
            settled = now - track.since >= self.cfg.settle_seconds
            if settled or is_marked_ready(cand):
                self._tracks.pop(path, None)
                # wall-clock time of the settle point, for the reports and the latency figure
                settled_at = time.time() - (now - track.since - self.cfg.settle_seconds
                                            if settled else 0.0)
                self.on_settled(cand, settled_at)
                continue
            keep[path] = cand
        return keep
