"""Shared fixtures: where ../shared is, small synthetic corpora, and running real tools."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))
TESTDATA = SHARED / "testdata"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set MEDIASVC_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def testdata(shared_dir: Path) -> Path:
    return shared_dir / "testdata"


def make_corpus(out: Path, *args: str) -> Path:
    """Run ../shared/bench/make_corpus.py OUT ARGS... and return OUT."""
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out), *args],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 patients x 1 study x 2 series x 3 images, 64x64: read-only, shared by tests."""
    out = tmp_path_factory.mktemp("corpus") / "src"
    return make_corpus(out, "--patients", "2", "--studies", "1", "--series", "2", "--images", "3",
                       "--rows", "64", "--cols", "64")


def run(cmd: Sequence[str | os.PathLike[str]], *, check: bool = False,
        cwd: Path | None = None, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a real tool (dcmdump, dciodvfy, xorriso, mediasvc...) and capture its text output.
    ``env``: variables added to the current environment."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=check,
                          cwd=cwd, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def mediasvc(*args: str | os.PathLike[str], cwd: Path | None = None, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would: a real process, `python -m mediasvc ARGS`."""
    return run([sys.executable, "-m", "mediasvc", *args], cwd=cwd, timeout=timeout, env=env)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (a full or read-only target); skips without root."""
    path.mkdir(parents=True, exist_ok=True)
    proc = run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path])
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
    try:
        yield path
    finally:
        run(["umount", path])


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path (byte-identity checks)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def dcmmkdir_media(corpus: Path, media: Path) -> Path:
    """A file-set made by DCMTK: the corpus copied as DICOM/IMnnnnnn, then `dcmmkdir +r`."""
    (media / "DICOM").mkdir(parents=True)
    for i, src in enumerate(sorted(corpus.glob("*.dcm")), 1):
        shutil.copy(src, media / "DICOM" / f"IM{i:06d}")
    res = run(["dcmmkdir", "+r", "DICOM"], cwd=media)
    assert res.returncode == 0, res.stderr
    return media


def stop_pid(pid: int, grace: float = 20.0) -> None:
    """SIGTERM a peer started detached (not our child), wait up to `grace` s, then SIGKILL.

    The peer may exit at any moment between the checks (Orthanc takes seconds to close its
    index on a loaded machine), so every signal tolerates a process that is already gone.
    """
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
