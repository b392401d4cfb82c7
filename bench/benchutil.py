"""What every benchmark does before timing mediasvc."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_package() -> None:
    """Byte-compile mediasvc, as an installed package is (pip compiles a wheel's modules at
    install; scripts/setup.sh does it for the editable install). Where PYTHONDONTWRITEBYTECODE
    is set (this sandbox sets it), nothing else writes the cache, and every timed start would
    compile the package's modules again: 0.13 s of each start, measured here."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "mediasvc")],
                   check=True, stdout=subprocess.DEVNULL)


def drop_outputs(outputs: Iterable[Path]) -> None:
    """Delete earlier outputs, write everything back and drop the page cache (as root), so
    that the next contender starts as the last did. On this machine (ext4 without a journal)
    creating a file skips every free inode of its group deleted in the last 5 s, or 305 s once
    the inode table block is dirty again, while that block is cached (fs/ext4/ialloc.c,
    recently_deleted()): deleting 10,000 copied files made the next copy 2-3x slower, and
    dropping the page cache after the delete removes the effect."""
    for out in outputs:
        shutil.rmtree(out, ignore_errors=True)
    os.sync()
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    else:
        print("  (not root: page cache not dropped; figures depend on the memory state)")
