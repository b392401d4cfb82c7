"""Benchmark: `mediasvc import` against `cp -r` of the same media tree, in the same run.

1. A ~1 GB media tree: 2,000 instances of 512x512 (make_corpus), laid out as DICOM/IMn with a
   DICOMDIR written by DCMTK dcmmkdir (a file-set as it comes on a disc). Measured: `cp -r`
   of the tree, `cp -r` followed by `sync` (the same durability the store gives), and
   `mediasvc import` into an empty store (a real process, MDS extraction included), and the
   floor (FLOOR below: read, SHA-256, create, write, nothing else), each repeated, in rotated
   order, best and median kept; ratios are throughput import / throughput cp.
2. 10,000 small instances (64x64) with a DICOMDIR: instances per second of `mediasvc import`.

Run by hand (it writes several GB under the work folder and takes minutes):
    python bench/bench_import.py [--work DIR] [--repeat 3] [--skip-big] [--skip-small]
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

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))


def make_tree(work: Path, name: str, *corpus_args: str) -> Path:
    """make_corpus output hard-linked as DICOM/IMn, plus a DICOMDIR by dcmmkdir."""
    tree = work / name
    if (tree / "DICOMDIR").is_file():
        return tree
    src = work / f"{name}-src"
    if not src.is_dir():
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(src),
                        *corpus_args], check=True)
    (tree / "DICOM").mkdir(parents=True, exist_ok=True)
    for n, f in enumerate(sorted(src.rglob("*.dcm")), start=1):
        target = tree / "DICOM" / f"IM{n}"
        if not target.exists():
            os.link(f, target)
    subprocess.run(["dcmmkdir", "+r", "+id", ".", "--fileset-id", "BENCH", "-Pgp", "DICOM"],
                   cwd=tree, check=True, capture_output=True)
    return tree


def tree_bytes(tree: Path) -> int:
    return sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())


def timed(cmd: list[str], *, after: list[str] | None = None) -> float:
    subprocess.run(["sync"], check=True)   # start each run without others' dirty pages
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if after:
        subprocess.run(after, check=True)
    return time.perf_counter() - t0


# The least work an import into a content-addressed store of one file per instance does: read
# each file, SHA-256 it, create a file and write it - in as many processes as there are CPUs,
# nothing else (no DICOM parse, no MDS, no index, no durability). Measured beside cp -r, it
# tells how much of the gap to cp is the work itself on this machine (file creation costs
# ~0.7 ms of kernel time here) and how much is mediasvc.
FLOOR = """
import hashlib, os, sys
from multiprocessing import Pool
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
def one(p):
    data = open(p, 'rb').read()
    h = hashlib.sha256(data).hexdigest()
    d = out / h[:2]
    d.mkdir(exist_ok=True)
    fd = os.open(d / h, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
if __name__ == '__main__':
    out.mkdir()
    with Pool(os.cpu_count()) as pool:
        pool.map(one, [str(p) for p in src.rglob('*') if p.is_file()], chunksize=16)
"""


# Why the outputs of every run are kept until the end (it takes a few GB more): on ext4
# without a journal (this machine's root file system), creating a file skips every free inode
# of its group deleted in the last 5 s, or 305 s once the inode table block is dirty again
# (fs/ext4/ialloc.c, recently_deleted()), one cached block lookup each. After a 2,000-file
# tree was deleted, each create in those groups scans past its inodes: measured with perf,
# 20-25 % of a copy's CPU time was recently_deleted(), and the file creates of whichever
# contender ran next cost 10-40x more. A store does not import right after deleting
# thousands of files, and the contenders must not pay for each other's deletes.
FRESH_DELETES = 305


def import_cmd(tree: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "mediasvc", "import", str(tree), "--store", str(store),
            "--json", "--no-progress"]


def bench_big(work: Path, repeat: int, outputs: list[Path]) -> None:
    tree = make_tree(work, "big", "--patients", "4", "--studies", "1", "--series", "5",
                     "--images", "100", "--rows", "512", "--cols", "512")
    size = tree_bytes(tree)
    n = len(list((tree / "DICOM").iterdir()))
    print(f"big tree: {n} instances, {size / 1e9:.2f} GB")
    subprocess.run(["cat", *map(str, (tree / "DICOM").iterdir())], stdout=subprocess.DEVNULL,
                   check=True)   # warm the page cache for every contender alike
    cp: list[float] = []
    cp_sync: list[float] = []
    imp: list[float] = []
    floor: list[float] = []
    contenders = [("cp", cp), ("cp+sync", cp_sync), ("import", imp), ("floor", floor)]
    for r in range(repeat):
        # Rotate the order: whoever runs after a big delete or write-back is not always the same.
        k = r % len(contenders)
        for name, runs in contenders[k:] + contenders[:k]:
            dest = work / f"out-{name}-{r}"
            if name == "cp":
                runs.append(timed(["cp", "-r", str(tree), str(dest)]))
            elif name == "cp+sync":
                runs.append(timed(["cp", "-r", str(tree), str(dest)], after=["sync"]))
            elif name == "floor":
                runs.append(timed([sys.executable, "-c", FLOOR, str(tree), str(dest)]))
            else:
                runs.append(timed(import_cmd(tree, dest)))
            outputs.append(dest)   # removed at the end, see FRESH_DELETES
            print(f"  run {r + 1}: {name:8s} {runs[-1]:6.2f} s  "
                  f"{size / runs[-1] / 1e6:7.1f} MB/s", flush=True)
    for label, ref in (("cp -r", cp), ("cp -r && sync", cp_sync)):
        best = min(ref) / min(imp)
        med = statistics.median(ref) / statistics.median(imp)
        print(f"import throughput / {label} throughput: best {best:.2f}x, median {med:.2f}x")
    print(f"floor (read + SHA-256 + create + write, {os.cpu_count()} processes) / cp -r "
          f"throughput: best {min(cp) / min(floor):.2f}x, median "
          f"{statistics.median(cp) / statistics.median(floor):.2f}x; import / floor: median "
          f"{statistics.median(floor) / statistics.median(imp):.2f}x")
    print(f"import: {n / min(imp):.0f} instances/s, {size / min(imp) / 1e6:.0f} MB/s (best)")


def bench_small(work: Path, outputs: list[Path]) -> None:
    tree = make_tree(work, "small", "--patients", "10", "--studies", "1", "--series", "10",
                     "--images", "100", "--rows", "64", "--cols", "64")
    n = len(list((tree / "DICOM").iterdir()))
    store = work / "small-store"
    if store.exists():
        shutil.rmtree(store)
        print(f"  removed an old store: waiting {FRESH_DELETES} s (see FRESH_DELETES)")
        time.sleep(FRESH_DELETES)
    seconds = timed(import_cmd(tree, store))
    print(f"small: {n} instances of 64x64 with MDS in {seconds:.1f} s: "
          f"{n / seconds:.0f} instances/s")
    again = timed(import_cmd(tree, store))
    print(f"small, second import (all duplicates): {n / again:.0f} instances/s")
    outputs.append(store)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (kept if given)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    outputs: list[Path] = []   # deleted only when every run is over (FRESH_DELETES)
    try:
        if not args.skip_big:
            bench_big(work, args.repeat, outputs)
        if not args.skip_small:
            bench_small(work, outputs)
    finally:
        for dest in outputs:
            shutil.rmtree(dest, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
