"""The daemon's side of network ingress: start ``python -m mediasvc.ingress`` and keep it up.

Why a child process and not threads of the daemon: the listener needs pynetdicom and pydicom,
which the daemon never imports (docs/service.md); a decoder crash or a memory blow-up costs
the listener, which is restarted, not the queue and the watchdog. The child dies with the
daemon (PR_SET_PDEATHSIG), so a killed service never leaves a listener holding the port.

Health: the child rewrites run/ingress.json every second. A child that exits is restarted
(after 1 s, doubling up to 30 s while it keeps failing at once); a child whose heartbeat is
older than ``STALE_SECONDS`` is stuck and is killed (then restarted). The supervisor thread
itself is part of the daemon's watchdog check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from mediasvc.service.config import ServiceConfig

log = logging.getLogger("mediasvc.service")

STALE_SECONDS = 30.0


class IngressChild:
    def __init__(self, cfg: ServiceConfig, extra_args: list[str], stop: threading.Event) -> None:
        self.cfg = cfg
        self.extra_args = extra_args
        self.stop = stop
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.last_error = ""
        self.thread = threading.Thread(target=self._supervise, name="ingress", daemon=True)

    @property
    def status_file(self) -> Any:
        return self.cfg.run / "ingress.json"

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.status_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "mediasvc.ingress", "--parent", str(os.getpid()),
               *self.extra_args]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)

    def _supervise(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            self.proc = self._spawn()
            started = time.monotonic()
            while not self.stop.wait(1.0):
                code = self.proc.poll()
                if code is not None:
                    self.last_error = f"exited with status {code}"
                    break
                beat = self._heartbeat()
                if time.monotonic() - started > STALE_SECONDS and (
                        beat is None or time.time() - beat > STALE_SECONDS):
                    self.last_error = "stuck (no heartbeat); killed"
                    log.error("ingress listener stuck (no heartbeat for %.0f s); restarting",
                              STALE_SECONDS)
                    _killpg(self.proc)
                    self.proc.wait()
                    break
            if self.stop.is_set():
                break
            self.restarts += 1
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
            log.error("ingress listener %s; restarting in %.0f s", self.last_error, delay)
            self.stop.wait(delay)
        self._terminate()

    def _heartbeat(self) -> float | None:
        try:
            data = json.loads(self.status_file.read_text())
            return float(data["updated"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _killpg(proc)
            proc.wait()

    def join(self) -> None:
        self.thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        running = self.proc is not None and self.proc.poll() is None
        return {"running": running, "pid": self.proc.pid if self.proc else None,
                "restarts": self.restarts, "last_error": self.last_error}


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
