#!/usr/bin/env python3
"""Benchmark: `mediasvc export` against DCMTK's pipeline, in the same run.

    python bench/bench_export.py [--instances 10000] [--corpus DIR] [--runs 3]

The corpus is make_corpus.py with --patients 10 --studies 2 --series 5 --images N/100
(10,000 instances by default; --rows/--cols set the image size, e.g. 16 x 16 for the
50,000-instance memory run), written to a temp folder unless --corpus names one.
DCMTK's pipeline is what a site does by hand: copy the files into a staging tree under ISO
names, then `dcmmkdir +r`. Both run on a warm page cache, alternately, --runs times; the
medians are compared. Each contender starts settled (settle()): the previous output deleted,
everything written back, the page cache dropped and the corpus read back into it.
Peak memory is the largest resident set over mediasvc's processes (the rusage that os.wait4
returns for the mediasvc process: Linux gives the maximum of its own ru_maxrss and those of
its waited-for descendants, the pool workers), over all runs; dcmmkdir's memory is not mixed
in.
Not a test: run by hand; figures go into the closing notes as ratios.
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

from benchutil import compile_package, drop_outputs

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))


def make(corpus: Path, instances: int, rows: int, cols: int) -> None:
    per_series = max(1, instances // 100)
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(corpus),
                    "--patients", "10", "--studies", "2", "--series", "5",
                    "--images", str(per_series), "--rows", str(rows), "--cols", str(cols)],
                   check=True)


def cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def settle(corpus: Path, outputs: list[Path]) -> None:
    """Before each contender: DCMTK's copy allocates 10,000 inodes, our hard links none, so
    deleting the other's output just before (benchutil.drop_outputs) made DCMTK's copy 4.1 s,
    7.8 s, 9.8 s in one run: a ratio in our favour that was the benchmark's doing."""
    drop_outputs(outputs)
    for p in corpus.iterdir():  # warm the page cache again for the next contender
        p.read_bytes()


def dcmtk(corpus: Path, work: Path) -> float:
    staging = work / "dcmtk"
    t0 = time.perf_counter()
    files = sorted(p for p in corpus.iterdir() if p.is_file())
    for i, src in enumerate(files):
        folder = staging / "DICOM" / f"D{i // 1000:07d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        shutil.copyfile(src, folder / f"I{i:07d}")
    subprocess.run(["dcmmkdir", "+r", "-q", "DICOM"], cwd=staging, check=True)
    elapsed = time.perf_counter() - t0
    return elapsed


def ours(corpus: Path, work: Path, link: str) -> tuple[float, int]:
    out = work / "ours"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mediasvc", "-q", "export", str(corpus),
                             "--out", str(out), "--capacity", "100G", "--link", link],
                            stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"mediasvc export failed ({proc.returncode})")
    return elapsed, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--no-dcmtk", action="store_true",
                    help="only mediasvc (for the memory figure at 50,000 instances)")
    ap.add_argument("--link", choices=("hardlink", "copy"), default="hardlink",
                    help="how mediasvc places files (export's default: hardlink; copy writes "
                         "every byte as DCMTK's pipeline does)")
    args = ap.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp)
        corpus = args.corpus or work / "corpus"
        if not corpus.exists():
            print(f"writing a corpus of {args.instances} instances to {corpus} ...")
            make(corpus, args.instances, args.rows, args.cols)
        n = sum(1 for _ in corpus.iterdir())
        size = sum(p.stat().st_size for p in corpus.iterdir())
        print(f"corpus: {n} files, {size / 1e6:.0f} MB; {os.cpu_count()} CPUs")
        print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
        t_dcmtk, t_ours, c_dcmtk, c_ours, rss = [], [], [], [], 0
        outputs = [work / "dcmtk", work / "ours"]
        for run in range(args.runs):
            settle(corpus, outputs)
            c0 = cpu()
            t_dcmtk.append(0.0 if args.no_dcmtk else dcmtk(corpus, work))
            c1 = cpu()
            settle(corpus, outputs)
            c2 = cpu()  # the settle's own reads are nobody's CPU time
            t, run_rss = ours(corpus, work, args.link)
            rss = max(rss, run_rss)
            c3 = cpu()
            t_ours.append(t)
            c_dcmtk.append(c1 - c0)
            c_ours.append(c3 - c2)
            print(f"run {run + 1}: dcmtk copy+dcmmkdir {t_dcmtk[-1]:.2f} s "
                  f"(cpu {c_dcmtk[-1]:.2f} s), mediasvc export --link {args.link} {t:.2f} s "
                  f"(cpu {c_ours[-1]:.2f} s)")
        md, mo = statistics.median(t_dcmtk), statistics.median(t_ours)
        if md:
            print(f"median wall: dcmtk {md:.2f} s, mediasvc {mo:.2f} s -> ratio {mo / md:.2f}x "
                  f"(target <= 0.5x)")
        print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
        cd, co = statistics.median(c_dcmtk), statistics.median(c_ours)
        print(f"median cpu: dcmtk {cd:.2f} s, mediasvc {co:.2f} s (over {os.cpu_count()} "
              "cores for mediasvc, one for DCMTK)")
        print(f"peak RSS of mediasvc's processes (max over the main process and its pool "
              f"workers, all runs): {rss / 1024:.0f} MB at {n} instances (target <= 300 MB at "
              "50,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
