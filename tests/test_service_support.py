"""Running `mediasvc serve` as a real process in tests and benchmarks.

Holds no tests: tests/test_service*.py and bench/ import it. The service gets a real
NOTIFY_SOCKET (a unix datagram socket bound here) so that sd_notify is exercised exactly as
systemd would see it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def write_config(path: Path, *, settle: float = 0.4, observer: str = "auto", workers: int = 2,
                 extra: str = "", retry_base: float = 0.5, target: str = "iso",
                 web: str = "enabled = false") -> Path:
    """A service config for tests. ``web``: the body of its [web] table (by default the
    console is off; tests of the console give ``port = 0``, a free port, and their users)."""
    path.write_text(f"""
[watch]
observer = "{observer}"
settle_seconds = {settle}
tick_seconds = 0.1
rescan_seconds = 5
[jobs]
workers = {workers}
retry_base_seconds = {retry_base}
retry_cap_seconds = 2
max_attempts = 8
max_interruptions = 50
[export]
target = "{target}"
{extra}
[web]
{web}
""")
    return path


class Service:
    """`python -m mediasvc serve --config CFG --root ROOT` with a NOTIFY_SOCKET of our own."""

    def __init__(self, root: Path, config: Path, *, watchdog_usec: int | None = None,
                 log: Path | None = None) -> None:
        self.root = root
        self.config = config
        self.watchdog_usec = watchdog_usec
        self.log_path = log or root.parent / f"{root.name}-serve.log"
        self.messages: list[str] = []
        self._ready_before = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None

    # -- process ----------------------------------------------------------------------------
    def start(self, *, wait_ready: bool = True, timeout: float = 60) -> Service:
        sock_path = self.root.parent / f".{self.root.name}-notify.sock"
        if self._sock is None:
            sock_path.unlink(missing_ok=True)
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(str(sock_path))
            self._sock.settimeout(0.2)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), PYTHONUNBUFFERED="1")
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        self._ready_before = self.count("READY=1")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mediasvc", "serve", "--config", str(self.config),
                 "--root", str(self.root)], stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=REPO)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for READY=1 from the process started last."""
        self.wait_for(lambda: self.count("READY=1") > self._ready_before, timeout,
                      "the service to send READY=1")

    def _read(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def count(self, line: str) -> int:
        return sum(1 for m in list(self.messages) if line in m.split("\n"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._sock is not None:
            self._sock.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- waiting ----------------------------------------------------------------------------
    def wait_for(self, cond: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            if self.proc is not None and self.proc.poll() is not None and not cond():
                raise AssertionError(f"the service exited ({self.proc.returncode}) while "
                                     f"waiting for {what}:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def wait_result(self, name: str, timeout: float = 90) -> tuple[str, dict[str, Any]]:
        """Wait until done/NAME or failed/NAME has its report; return (where, report)."""
        found: list[tuple[str, dict[str, Any]]] = []

        def there() -> bool:
            for where in ("done", "failed"):
                rep = self.root / where / name / "report.json"
                if rep.is_file():
                    found.append((where, json.loads(rep.read_text())))
                    return True
            return False

        self.wait_for(there, timeout, f"job {name} to finish")
        return found[0]


def drop_folder(src_files: list[Path], dest: Path, *, pause: float = 0.0) -> None:
    """Copy files one by one into a new job folder, as a PACS or a user would."""
    dest.mkdir(parents=True)
    for f in src_files:
        shutil.copyfile(f, dest / f.name)
        if pause:
            time.sleep(pause)


def drop_job(src_files: list[Path], dest: Path, job_toml: str) -> None:
    """A job folder with its job.toml, built under a hidden name (ignored by the watcher) and
    renamed into place: a test whose outcome depends on job.toml must not race the settle
    clock between the last file and job.toml (on a loaded machine that gap can pass
    ``settle_seconds``, and the folder then becomes two jobs)."""
    tmp = dest.with_name("." + dest.name + ".part")
    drop_folder(src_files, tmp)
    (tmp / "job.toml").write_text(job_toml)
    os.replace(tmp, dest)


def drop_file_atomically(src: Path, dest: Path) -> None:
    """Copy under a hidden name (ignored by the watcher), then rename into place."""
    tmp = dest.with_name("." + dest.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
