"""Kill test, short form: bench/kill_service.py SIGKILLs `mediasvc serve` at random moments
during a stream of export and import jobs, restarts it, and checks every job ended done
exactly once, no input lost, every DICOMDIR valid (dciodvfy), no duplicate store rows.
The full run (24 jobs, 24 kills) is `python bench/kill_service.py`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO, run


def test_kill_service_short(tmp_path: Path) -> None:
    work = tmp_path / "kill"
    r = run([sys.executable, REPO / "bench" / "kill_service.py", "--jobs", "9", "--kills", "8",
             "--keep", work], timeout=400)
    assert r.stdout.strip(), r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["problems"] == [], (summary, (work / "serve.log").read_text()[-3000:])
    assert r.returncode == 0
    assert summary["kills"] == 8 and summary["jobs"] == 9
