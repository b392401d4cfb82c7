"""The importer's worker processes: how they start, and what a dead one does to an import.

- In a process that runs other threads (``mediasvc serve``: watcher, job workers, ingress),
  the pool must not fork: a forked child inherits every lock another thread held at that
  moment, with no thread left to release it. The workers then come from a fork server (their
  parent is not the importing process). A single-threaded CLI keeps the fork fast path.
- A worker killed in the middle of an import (the OOM killer, an operator) ends the import
  with a clear error, in bounded time, leaving a consistent store that a second run completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mediasvc.store import files, importer
from mediasvc.store.index import Store

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_corpus  # noqa: E402
from test_import import dcmmkdir_fileset  # noqa: E402

N = 80   # above importer.PARALLEL_MIN: the medium is read by worker processes


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("workers")
    src = make_corpus(base / "src", "--patients", "1", "--studies", "1", "--series", "4",
                      "--images", str(N // 4), "--rows", "16", "--cols", "16")
    return dcmmkdir_fileset(src, base / "fs", "WORKERS")


def _consistent_rows(store: Path) -> int:
    with Store.open(store) as st:
        assert st.check(rehash=True) == []
        rows = st.instances()
        for r in rows:
            assert files.sha256_file(r.path) == r.checksum
        on_disk = sorted(p for p in (store / "objects").rglob("*") if p.is_file())
        assert on_disk == sorted(r.path for r in rows), "files without a row"
        return len(rows)


def test_pool_not_forked_while_another_thread_runs(medium: Path, tmp_path: Path) -> None:
    assert N >= importer.PARALLEL_MIN
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="like-the-service's-watcher", daemon=True)
    other.start()
    try:
        examiner = importer._Examiner(tmp_path, workers=2)
        try:
            parent = examiner._pool().submit(os.getppid).result(timeout=120)
        finally:
            examiner.close()
        assert parent != os.getpid(), "a worker was forked from a multi-threaded process"
        with Store.open(tmp_path / "store") as store:
            report = importer.import_media(store, medium)
        assert report.counts()["imported"] == N and report.clean, report.counts()
        assert _consistent_rows(tmp_path / "store") == N
    finally:
        stop.set()
        other.join()


def test_single_threaded_caller_keeps_fork(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from mediasvc.store import importer
        ex = importer._Examiner(Path(sys.argv[1]), workers=2)
        print(ex._pool().submit(os.getppid).result(timeout=120) == os.getpid())
        ex.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=180)
    assert proc.stdout.strip() == "True", proc.stderr


KILLING_IMPORT = textwrap.dedent("""
    import os, signal, sys
    from mediasvc.store import importer
    examine = importer.examine
    def dying(path, root, link=False):
        # Forked workers run this copy of the module: the one reading IM50 is killed.
        if path.endswith(os.sep + "IM50") and os.getpid() != int(os.environ["PARENT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return examine(path, root, link)
    importer.examine = dying
    os.environ["PARENT"] = str(os.getpid())
    from mediasvc.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_killed_worker_fails_the_import_with_a_clear_error(medium: Path,
                                                            tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", KILLING_IMPORT, "import", str(medium),
                           "--store", str(store), "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "import worker process died (killed by SIGKILL)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _consistent_rows(store) < N
    again = subprocess.run([sys.executable, "-m", "mediasvc", "import", str(medium), "--store",
                            str(store), "--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _consistent_rows(store) == N
