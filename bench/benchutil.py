"""What every benchmark does before timing mediasvc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_package() -> None:
    """Byte-compile mediasvc, as an installed package is (pip compiles a wheel's modules at
    install; scripts/setup.sh does it for the editable install). Where PYTHONDONTWRITEBYTECODE
    is set (this sandbox sets it), nothing else writes the cache, and every timed start would
    compile the package's modules again: 0.13 s of each start, measured here."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "mediasvc")],
                   check=True, stdout=subprocess.DEVNULL)
