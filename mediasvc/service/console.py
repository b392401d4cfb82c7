"""The web console (mediasvc/web, docs/web.md) as a supervised child of `mediasvc serve`.

A child process rather than a thread of the daemon: the console imports pydicom (thumbnails,
the MDS), which the daemon never does, and an HTTP server's work must not starve the daemon's
watchdog keep-alives. Like a runner, the child dies with the daemon (PR_SET_PDEATHSIG); the
daemon restarts it when it dies, waiting longer after each quick death (a port taken by
another program must not turn into a busy loop), and stops it last when the service stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time

from mediasvc.service.config import ServiceConfig

log = logging.getLogger("mediasvc.service")


class Console:
    def __init__(self, cfg: ServiceConfig, args: list[str]) -> None:
        self.cfg = cfg
        self.args = args  # --config/--root/-v as given to serve
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.delay = 1.0
        self.next_start = 0.0

    def start(self) -> Console:
        cmd = [sys.executable, "-m", "mediasvc.web", "--parent", str(os.getpid()), *self.args]
        # Its own session: a Ctrl-C in the terminal reaches the daemon, which stops it.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()
        log.info("web console starting (pid %d) on %s", self.proc.pid,
                 self.cfg.web.url() if self.cfg.web.port else
                 f"{self.cfg.web.bind}, a free port (run/console.json)")
        return self

    def check(self) -> None:
        """Called by the main loop: restart the console if it died."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.next_start == 0.0:
            lived = now - self.started
            self.delay = 1.0 if lived > 60 else min(self.delay * 2, 60.0)
            self.next_start = now + self.delay
            log.warning("web console exited (status %s); restarting in %.0f s",
                        self.proc.returncode, self.delay)
        if now >= self.next_start:
            self.next_start = 0.0
            self.start()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
