"""The web console in tests: its [web] table, users, and the console process itself.

Holds no tests: tests/test_web_*.py and bench/bench_console.py import it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
USERS = {"viewer1": ("viewer", "viewer-pass-1"), "oper1": ("operator", "operator-pass-1")}


def web_table(root: Path, *, import_folders: list[Path] = (),  # type: ignore[assignment]
              import_devices: list[str] | None = None) -> str:
    """The body of a [web] table: a free port, the test users' file, allowed import paths."""
    lines = ["port = 0", f'users = "{root.parent / (root.name + "-users.toml")}"',
             "import_folders = [" + ", ".join(f'"{f}"' for f in import_folders) + "]"]
    if import_devices is not None:
        lines.append("import_devices = [" + ", ".join(f'"{d}"' for d in import_devices) + "]")
    return "\n".join(lines) + "\n"


def make_users(root: Path) -> Path:
    """The users of USERS in the file web_table names (real hashes, as `mediasvc users`)."""
    from mediasvc.web.auth import set_user

    path = root.parent / (root.name + "-users.toml")
    for name, (role, password) in USERS.items():
        set_user(path, name, role, password)
    return path


def console_url(root: Path, timeout: float = 60, after: float = 0.0,
                verify: str | bool = True) -> str:
    """Wait for a console on ``root`` to listen (run/console.json newer than ``after``);
    ``verify``: the CA file of a console with TLS."""
    info = root / "run" / "console.json"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if info.stat().st_mtime >= after:
                url = str(json.loads(info.read_text())["url"])
                httpx.get(url + "api/v1/openapi.json", timeout=5, verify=tls(verify))
                return url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no console on {root} within {timeout} s")


def tls(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx's ``verify``: a CA file as an SSLContext (httpx no longer takes a path)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class ConsoleProcess:
    """`python -m mediasvc.web --config CFG --root ROOT` on its own (no service)."""

    def __init__(self, config: Path, root: Path) -> None:
        self.config, self.root = config, root
        self.log = root.parent / f"{root.name}-console.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, verify: str | bool = True) -> str:
        started = time.time() - 1
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mediasvc.web", "--config", str(self.config),
                 "--root", str(self.root)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        return console_url(self.root, after=started, verify=verify)

    def stop(self) -> None:
        from conftest import stop_pid

        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")
