"""The code base stays typed and lint-clean: mypy (strict, pyproject) and ruff."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import run

REPO = Path(__file__).resolve().parents[1]


def test_mypy_strict_is_clean() -> None:
    proc = run([sys.executable, "-m", "mypy"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_is_clean() -> None:
    proc = run([sys.executable, "-m", "ruff", "check", "mediasvc", "tests", "bench"], cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:]
