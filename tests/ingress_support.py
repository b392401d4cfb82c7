"""Helpers for the network ingress tests and benchmarks (holds no tests).

DCMTK's tools are found by asking each candidate for its version: pynetdicom installs
`storescu`/`storescp` console scripts of its own that may come first on PATH.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.cache
def dcmtk(tool: str) -> str:
    """The DCMTK binary ``tool`` (not pynetdicom's app of the same name)."""
    dirs = ["/usr/bin", *os.environ.get("PATH", "").split(os.pathsep)]
    for d in dirs:
        p = Path(d) / tool
        if p.is_file() and os.access(p, os.X_OK):
            out = subprocess.run([str(p), "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return str(p)
    found = shutil.which(tool)
    raise FileNotFoundError(f"DCMTK {tool} not found (found {found})")


def ingress_config(port: int, *, quiet: float = 1.0, routes: str = "", mcm: bool = True,
                   allowed: tuple[str, ...] = (), extra: str = "") -> str:
    """[ingress] text for write_config(extra=...)."""
    allowed_s = ", ".join(f'"{a}"' for a in allowed)
    text = f"""
[ingress]
ae_title = "MEDIASVC"
port = {port}
quiet_seconds = {quiet}
allowed_calling_aes = [{allowed_s}]
{extra}
{routes}
"""
    if mcm:
        text += '\n[ingress.mcm]\ndefault_profile = "STD-GEN-CD"\ntarget = "iso"\n'
    return text


CD_ROUTE = """
[[ingress.route]]
name = "cd"
called_ae = "BURN_CD"
action = "export"
profile = "STD-GEN-CD"
target = "iso"
"""


def wait_listening(root: Path, timeout: float = 60) -> dict[str, Any]:
    """Wait until the ingress process wrote run/ingress.json with its ports."""
    end = time.monotonic() + timeout
    path = root / "run" / "ingress.json"
    while time.monotonic() < end:
        try:
            data = json.loads(path.read_text())
            if data.get("ports"):
                return dict(data)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the ingress listener did not come up under {root}")


def storescu(port: int, files: list[Path] | Path, *, called: str = "BURN_CD",
             calling: str = "MODALITY", extra: tuple[str, ...] = (),
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    paths = [str(files)] if isinstance(files, Path) else [str(f) for f in files]
    return subprocess.run([dcmtk("storescu"), "-aec", called, "-aet", calling, "+sd", "+r",
                           *extra, "127.0.0.1", str(port), *paths], capture_output=True,
                          text=True, timeout=timeout)
