#!/usr/bin/env python3
"""Benchmark: source folder -> ISO image, against `cat` of the same files into one file.

    python bench/bench_iso.py [--workdir /var/tmp] [--rounds 3] [--keep]

Generates 2,000 instances of 512x512 CT (about 1 GB; make_corpus --rows 512 --cols 512
--patients 2 --studies 1 --series 10 --images 100) in a temp folder outside the repository,
then times, in the same run and alternately:

  cat       cat SRC/*.dcm > ONE_FILE                                  (the reference)
  mediasvc  mediasvc export SRC --profile STD-GEN-DVD-JPEG --out STAGE    (hard links)
            mediasvc burn STAGE --to iso:IMAGE                        (xorriso, -map)

both from a warm page cache, each starting with no dirty data (sync before each timed run,
untimed), both writing into the same file system. With --cold the page cache is dropped
before each timed run (root only: /proc/sys/vm/drop_caches), so that both read the sources
from the disk, as the figures in the issue (cat 3.7-4.5 s for 1 GB) were measured. Prints
each round, the median ratio and the machine's load average (the machine is shared: a
loaded run says so).
Target (issue 3): ratio <= 1.6, aim 1.3.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mediasvc.media.iso import xorriso_args  # noqa: E402

SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))


LIB_PIPELINE = """
import sys
from pathlib import Path
from mediasvc.media.iso import make_iso
from mediasvc.media.production import produce
from mediasvc.profiles import media_profile
src, stage, image = map(Path, sys.argv[1:4])
produce([src], stage, media_profile("STD-GEN-DVD-JPEG"), fileset_id="BENCH", link="hardlink")
make_iso(stage, image)
"""


SYNC = False
COLD = False


CPU: list[float] = []  # CPU seconds (user + sys) of the last timed command and its children


def timed(cmd: list[str], **kw: object) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]
    if SYNC:
        os.sync()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[:] = [after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime]
    return time.perf_counter() - start


def settle() -> None:
    """No dirty pages left over from an earlier step to be flushed during the next one; with
    --cold, nothing of the sources in the page cache either."""
    os.sync()
    if COLD:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=100, help="per series (10 series, 2 pts)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--sync", action="store_true",
                    help="end both timings with sync: to the disk, not just the page cache")
    ap.add_argument("--cold", action="store_true",
                    help="drop the page cache before each timed run (root): disk-bound reads")
    args = ap.parse_args()
    global SYNC, COLD
    COLD = args.cold

    tmp = Path(tempfile.mkdtemp(prefix="mediasvc-bench-iso-", dir=args.workdir))
    try:
        src = tmp / "src"
        t = timed([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(src),
                   "--rows", "512", "--cols", "512", "--patients", "2", "--studies", "1",
                   "--series", "10", "--images", str(args.images), "--modalities", "CT"],
                  stdout=subprocess.DEVNULL)
        files = sorted(str(p) for p in src.glob("*.dcm"))
        total = sum(os.stat(f).st_size for f in files)
        print(f"corpus: {len(files)} files, {total / 1e9:.2f} GB (generated in {t:.0f} s) "
              f"in {src}")
        settle()
        if not COLD:
            subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # warm
        SYNC = args.sync
        print("timings end with sync (data on disk)" if SYNC else
              "timings end when the commands end (data may still be in the page cache)")

        ratios: list[float] = []
        lib_ratios: list[float] = []
        for n in range(1, args.rounds + 1):
            one = tmp / "cat.out"
            settle()
            with one.open("wb") as fh:
                t_cat = timed(["cat", *files], stdout=fh)
            cpu_cat = CPU[0]
            one.unlink()

            stage, image = tmp / "stage", tmp / "disc.iso"
            settle()
            load = os.getloadavg()[0]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            t_export = timed([sys.executable, "-m", "mediasvc", "-q", "export", str(src),
                              "--profile", "STD-GEN-DVD-JPEG", "--out", str(stage),
                              "--fileset-id", "BENCH", "--link", "hardlink"],
                             stdout=subprocess.DEVNULL, env=env)
            cpu_ms = CPU[0]
            t_burn = timed([sys.executable, "-m", "mediasvc", "-q", "burn", str(stage),
                            "--to", f"iso:{image}"], stdout=subprocess.DEVNULL, env=env)
            cpu_ms += CPU[0]
            size = image.stat().st_size
            image.unlink()
            # The mastering step alone (xorriso on the staged tree, as burn runs it).
            settle()
            t_xorriso = timed(xorriso_args(stage, f"stdio:{image}", "BENCH"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            image.unlink()
            shutil.rmtree(stage)
            t_ms = t_export + t_burn
            ratio = t_ms / t_cat
            ratios.append(ratio)

            # The same pipeline in one process (produce + make_iso): no second interpreter
            # start-up and CLI import, to show what the CLI's start-up costs.
            settle()
            t_lib = timed([sys.executable, "-c", LIB_PIPELINE, str(src), str(stage),
                           str(image)], env=env)
            shutil.rmtree(stage)
            image.unlink()
            lib_ratios.append(t_lib / t_cat)

            print(f"round {n}: cat {t_cat:.2f} s | CLI export+burn {t_ms:.2f} s (export "
                  f"{t_export:.2f} + burn {t_burn:.2f}) ratio {ratio:.2f} | one process "
                  f"{t_lib:.2f} s ratio {t_lib / t_cat:.2f} | xorriso alone {t_xorriso:.2f} s "
                  f"ratio {t_xorriso / t_cat:.2f} | image {size / 1e9:.2f} GB "
                  f"| load {load:.2f}")
            print(f"         CPU seconds: cat {cpu_cat:.2f} | CLI export+burn {cpu_ms:.2f} "
                  f"(ratio {cpu_ms / cpu_cat:.2f}; load-independent, but 2 cores work in "
                  "parallel in the export)")
        print(f"median ratio CLI export+burn / cat: {statistics.median(ratios):.2f} "
              f"(best {min(ratios):.2f}); one process: {statistics.median(lib_ratios):.2f} "
              f"(best {min(lib_ratios):.2f}); target <= 1.6, aim 1.3; load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
