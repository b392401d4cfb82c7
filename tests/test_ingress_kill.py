"""Kill test of network ingress: bench/kill_ingress.py SIGKILLs `mediasvc serve` 20 times while
DCMTK storescu sends 16 studies (3 series each), resending what was not acknowledged; every
instance acknowledged with Success must end up on a medium exactly once (DICOMDIRs checked
with dciodvfy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO, run


def test_kill_while_storescu_sends(tmp_path: Path) -> None:
    work = tmp_path / "kill"
    r = run([sys.executable, REPO / "bench" / "kill_ingress.py", "--studies", "16", "--images",
             "3", "--kills", "20", "--keep", work], timeout=500)
    assert r.stdout.strip(), r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["problems"] == [], (summary, (work / "serve.log").read_text()[-3000:])
    assert r.returncode == 0
    assert summary["kills"] == 20 and summary["acknowledged"] == summary["instances"] == 144
