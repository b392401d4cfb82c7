#!/usr/bin/env python3
"""Benchmark: source folder -> ISO image in one pass, against xorriso alone mastering the
same tree already staged, in the same run.

    python bench/bench_iso.py [--instances 2000] [--rounds 3] [--cache both|warm|cold]
                              [--cold] [--workdir /var/tmp] [--keep]

Generates N instances of 512x512 CT (2,000 = about 1 GB; make_corpus --rows 512 --cols 512
--patients 2 --studies 1 --series 10 --images N/20) in a temp folder outside the repository,
stages it once, untimed (`mediasvc export SRC --out STAGE`, hard links), then times, in the
same run and alternately, each round:

  xorriso   the command make_iso runs on STAGE (xorriso -map STAGE /, level 1, sort weights,
            -stdio_sync off): the mastering tool alone, the reference
  pycdlib   python -m mediasvc export SRC --to iso:IMAGE (the default writer)
  xorriso1  python -m mediasvc export SRC --to iso:IMAGE --iso-writer xorriso

Each timed run starts with no dirty data (sync, untimed); cold: the page cache is dropped
before each timed run (/proc/sys/vm/drop_caches, root), so that the sources are read from
the disk. Our export ends with the image fsynced (durability); xorriso alone does not, so
the line also shows the reference with an fsync of its image ("xorriso+fsync"). Prints every
round, the median of the rounds per cache condition and writer, and the load average before
and after (the machine is shared: a loaded run says so).
Target (issue 12): export --to iso / xorriso alone <= 1.25, warm and cold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import compile_package

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mediasvc.media.iso import xorriso_args  # noqa: E402

SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
OURS = {"pycdlib": [], "xorriso1": ["--iso-writer", "xorriso"]}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def settle(cold: bool) -> None:
    """No dirty pages left from an earlier step; cold: nothing of the sources cached."""
    os.sync()
    if cold:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    time.sleep(0.5)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def fsync_file(path: Path) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def one_round(src: Path, stage: Path, image: Path, cold: bool) -> dict[str, float]:
    t: dict[str, float] = {}
    settle(cold)
    t["xorriso"] = timed(xorriso_args(stage, f"stdio:{image}", "BENCH"))
    t["xorriso+fsync"] = t["xorriso"] + fsync_file(image)
    image.unlink()
    for name, extra in OURS.items():
        settle(cold)
        t[name] = timed([sys.executable, "-m", "mediasvc", "-q", "export", str(src),
                         "--profile", "STD-GEN-DVD-JPEG", "--fileset-id", "BENCH",
                         "--to", f"iso:{image}", *extra])
        image.unlink()
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--instances", type=int, default=2000, help="multiple of 20")
    ap.add_argument("--cache", choices=("both", "warm", "cold"), default="both")
    ap.add_argument("--cold", action="store_true", help="same as --cache cold")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    compile_package()
    conditions = ["cold"] if args.cold else (["warm", "cold"] if args.cache == "both"
                                             else [args.cache])
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)")
    tmp = Path(tempfile.mkdtemp(prefix="mediasvc-bench-iso-", dir=args.workdir))
    try:
        src, stage, image = tmp / "src", tmp / "stage", tmp / "disc.iso"
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(src),
                        "--rows", "512", "--cols", "512", "--patients", "2", "--studies", "1",
                        "--series", "10", "--images", str(max(1, args.instances // 20)),
                        "--modalities", "CT"], check=True, stdout=subprocess.DEVNULL)
        files = list(src.glob("*.dcm"))
        total = sum(p.stat().st_size for p in files)
        print(f"corpus: {len(files)} files, {total / 1e9:.2f} GB in {src}")
        # The staged tree for the reference, made once and untimed.
        subprocess.run([sys.executable, "-m", "mediasvc", "-q", "export", str(src),
                        "--profile", "STD-GEN-DVD-JPEG", "--fileset-id", "BENCH",
                        "--out", str(stage)], check=True, env=ENV, stdout=subprocess.DEVNULL)
        results: dict[str, list[dict[str, float]]] = {c: [] for c in conditions}
        for n in range(1, args.rounds + 1):
            for cond in conditions:
                t = one_round(src, stage, image, cond == "cold")
                results[cond].append(t)
                print(f"round {n} {cond}: " + " | ".join(f"{k} {v:.2f} s" for k, v in t.items())
                      + f" | ratio pycdlib {t['pycdlib'] / t['xorriso']:.2f}, xorriso1 "
                      f"{t['xorriso1'] / t['xorriso']:.2f} | load {loadavg()}")
        for cond, rounds in results.items():
            ref = statistics.median(r["xorriso"] for r in rounds)
            ref_sync = statistics.median(r["xorriso+fsync"] for r in rounds)
            line = []
            for name in OURS:
                ours = statistics.median(r[name] for r in rounds)
                line.append(f"{name} {ours / ref:.2f}x (vs xorriso+fsync {ours / ref_sync:.2f}x)")
            print(f"median of {len(rounds)} {cond}: export --to iso / xorriso alone: "
                  + "; ".join(line) + " (target <= 1.25)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
