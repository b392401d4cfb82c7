"""Kill test: `mediasvc import` killed with SIGKILL at random moments, then run again.

After every kill the store must be consistent (every row has its file with a matching checksum,
every file has its row) once reopened, and the final run must leave it complete.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mediasvc.store.index import Store

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_corpus, mediasvc  # noqa: E402
from test_import import dcmmkdir_fileset  # noqa: E402

N_INSTANCES = 200
KILLS = 12


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("killmedium")
    src = make_corpus(base / "src", "--patients", "2", "--studies", "1", "--series", "4",
                      "--images", "25", "--rows", "16", "--cols", "16")
    return dcmmkdir_fileset(src, base / "fs", "KILLTEST")


def _start(medium: Path, store: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mediasvc", "import", str(medium),
                             "--store", str(store), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _assert_consistent(store: Path) -> int:
    with Store.open(store) as st:          # opening recovers after a killed writer
        problems = st.check(rehash=True)
        assert problems == [], problems
        assert list((store / "tmp").iterdir()) == []
        return st.count_instances()


def test_sigkill_at_random_points_then_resume(medium: Path, tmp_path: Path) -> None:
    rng = random.Random(20261125)
    # How long does an uninterrupted import take here (process start included)?
    t0 = time.monotonic()
    proc = mediasvc("import", medium, "--store", tmp_path / "calibrate")
    full = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert _assert_consistent(tmp_path / "calibrate") == N_INSTANCES

    killed_mid_way = 0
    store = tmp_path / "store"
    for n in range(KILLS):
        if n % 4 == 0:
            store = tmp_path / f"store{n}"    # some runs start from an empty store
        p = _start(medium, store)
        time.sleep(rng.uniform(0.25, 1.0) * full)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.returncode == -signal.SIGKILL:
            killed_mid_way += 1
        count = _assert_consistent(store)
        assert 0 <= count <= N_INSTANCES
    assert killed_mid_way >= KILLS // 2, "the kills came too late to test anything"
    # No worker process outlives its killed import (they would hold the store's lock).
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path)) == []

    # Resume: run to the end on every store used; each ends complete and consistent.
    for n in range(0, KILLS, 4):
        store = tmp_path / f"store{n}"
        proc = mediasvc("import", medium, "--store", store)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "complete: every referenced file was read" in proc.stdout
        assert _assert_consistent(store) == N_INSTANCES
        with Store.open(store) as st:
            assert {len(st.series_of(s.study_uid)) for s in st.studies()} == {4}
            assert not any(r.conflict for r in st.instances())
