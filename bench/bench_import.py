"""Benchmark: `mediasvc import` against `cp -r` of the same media tree, in the same run.

1. A ~1 GB media tree: 2,000 instances of 512x512 (make_corpus), laid out as DICOM/IMn with a
   DICOMDIR written by DCMTK dcmmkdir (a file-set as it comes on a disc). Measured: `cp -r`
   of the tree, `cp -r` followed by `sync` (the same durability the store gives), and
   `mediasvc import` into an empty store (a real process, MDS extraction included), and the
   floor (FLOOR below: read, SHA-256, create, write, nothing else) and the hashing alone
   (HASH), each repeated, in rotated order, each run from the same settled start (settle),
   best and median kept; ratios are throughput import / throughput cp.
2. 10,000 small instances (64x64) with a DICOMDIR: instances per second of `mediasvc import`.

Run by hand (it writes several GB under the work folder and takes minutes):
    python bench/bench_import.py [--work DIR] [--repeat 3] [--skip-big] [--skip-small]
                                 [--prefault] [--cold] [--medium-mbps N]
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

from benchutil import compile_package, drop_outputs

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


# --medium-mbps N: every contender reads the disk at no more than N MB/s (cgroup v1 blkio
# throttle on the device holding the tree; root only), as from a USB stick or an optical
# drive (CD 52x: about 7.8 MB/s, DVD 16x: about 22 MB/s). With --cold, the time of reading the
# medium then decides, as it does at a burner host's front desk.
SLOW_CGROUP = Path("/sys/fs/cgroup/blkio/mediasvc-bench-medium")
medium_mbps = 0


def limit_reads(tree: Path, mbps: int) -> None:
    dev = os.stat(tree).st_dev
    SLOW_CGROUP.mkdir(exist_ok=True)
    (SLOW_CGROUP / "blkio.throttle.read_bps_device").write_text(
        f"{os.major(dev)}:{os.minor(dev)} {mbps * 1_000_000}\n")


def _join_slow_cgroup() -> None:
    (SLOW_CGROUP / "cgroup.procs").write_text(f"{os.getpid()}\n")


def timed(cmd: list[str], *, after: list[str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   preexec_fn=_join_slow_cgroup if medium_mbps else None)
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


# Every run starts alike (settle): the previous outputs deleted, everything written back,
# the page cache dropped, the source read back into it. Without that, this machine (a VM on
# ext4 without a journal) gives the same cp -r anywhere from 0.4 to 2.8 s:
# - a new page-cache page costs little when it reuses memory freed a moment ago, and a host
#   page fault when the VM handed that memory back to its host (free page reporting): cp -r
#   after a big delete ran at 2.2 GB/s, after other runs had filled memory at 0.4 GB/s;
# - creating a file skips every free inode of its group deleted in the last 5 s, or 305 s
#   once the inode table block is dirty again, while that block is cached (fs/ext4/ialloc.c,
#   recently_deleted()): after a 2,000-file delete, 20-25 % of a copy's CPU time went there
#   (perf). Dropping the page cache after the delete removes both effects.
# --prefault: after settling, a process touches and frees PREFAULT bytes just before the run,
# so that the memory the run then gets is memory the VM holds already: the condition of a
# bare-metal host, where cp -r copies at memory speed (measured here: 0.43-0.98 s instead of
# 1.8-2.8 s). mediasvc writes the store by direct I/O and needs little new memory, so this
# helps cp -r much more than the import; both conditions are worth a look.
PREFAULT = 3 << 30
prefault = False
# --cold: the source is not read back into the page cache after settling, as with a medium
# just inserted: both read it from the disk.
cold = False


def settle(tree: Path, outputs: list[Path], keep: tuple[Path, ...] = ()) -> None:
    drop_outputs(d for d in outputs if d not in keep)
    outputs[:] = [d for d in outputs if d in keep]
    if not cold:   # the source in the page cache for every contender alike
        subprocess.run(["cat", *map(str, (tree / "DICOM").iterdir())],
                       stdout=subprocess.DEVNULL, check=True)
    # ... and the programs: cp is in the cache after one run, mediasvc's Python modules
    # (pydicom, numpy: 0.3 s to import warm, seconds cold) are on a host in use.
    subprocess.run([sys.executable, "-c", "import mediasvc.cli.import_, multiprocessing.pool"],
                   check=True)
    if prefault:
        subprocess.run([sys.executable, "-c", f"bytearray({PREFAULT})"], check=True)


# Reading every byte and hashing it with SHA-256, in as many processes as there are CPUs:
# what any import that checksums every instance (the issue asks for a checksum) does at least.
HASH = """
import hashlib, os, sys
from multiprocessing import Pool
from pathlib import Path
def one(p):
    hashlib.sha256(open(p, 'rb').read()).digest()
if __name__ == '__main__':
    with Pool(os.cpu_count()) as pool:
        pool.map(one, [str(p) for p in Path(sys.argv[1]).rglob('*') if p.is_file()],
                 chunksize=16)
"""


def import_cmd(tree: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "mediasvc", "import", str(tree), "--store", str(store),
            "--json", "--no-progress"]


def bench_big(work: Path, repeat: int, outputs: list[Path]) -> None:
    tree = make_tree(work, "big", "--patients", "4", "--studies", "1", "--series", "5",
                     "--images", "100", "--rows", "512", "--cols", "512")
    size = tree_bytes(tree)
    if medium_mbps:
        limit_reads(tree, medium_mbps)
    n = len(list((tree / "DICOM").iterdir()))
    print(f"big tree: {n} instances, {size / 1e9:.2f} GB")
    cp: list[float] = []
    cp_sync: list[float] = []
    imp: list[float] = []
    floor: list[float] = []
    hashing: list[float] = []
    contenders = [("cp", cp), ("cp+sync", cp_sync), ("import", imp), ("floor", floor),
                  ("hash", hashing)]
    for r in range(repeat):
        # Rotate the order as well: whatever settle leaves, it is not always the same one's.
        k = r % len(contenders)
        for name, runs in contenders[k:] + contenders[:k]:
            dest = work / f"out-{name}-{r}"
            settle(tree, outputs)
            if name == "hash":
                runs.append(timed([sys.executable, "-c", HASH, str(tree)]))
            elif name == "cp":
                runs.append(timed(["cp", "-r", str(tree), str(dest)]))
            elif name == "cp+sync":
                runs.append(timed(["cp", "-r", str(tree), str(dest)], after=["sync"]))
            elif name == "floor":
                runs.append(timed([sys.executable, "-c", FLOOR, str(tree), str(dest)]))
            else:
                runs.append(timed(import_cmd(tree, dest)))
            outputs.append(dest)
            print(f"  run {r + 1}: {name:8s} {runs[-1]:6.2f} s  "
                  f"{size / runs[-1] / 1e6:7.1f} MB/s  (load {os.getloadavg()[0]:.2f})",
                  flush=True)
    for label, ref in (("cp -r", cp), ("cp -r && sync", cp_sync)):
        best = min(ref) / min(imp)
        med = statistics.median(ref) / statistics.median(imp)
        print(f"import throughput / {label} throughput: best {best:.2f}x, median {med:.2f}x")
    print(f"floor (read + SHA-256 + create + write, {os.cpu_count()} processes) / cp -r "
          f"throughput: best {min(cp) / min(floor):.2f}x, median "
          f"{statistics.median(cp) / statistics.median(floor):.2f}x; import / floor: median "
          f"{statistics.median(floor) / statistics.median(imp):.2f}x")
    print(f"hash (read + SHA-256 only, {os.cpu_count()} processes) / cp -r throughput: median "
          f"{statistics.median(cp) / statistics.median(hashing):.2f}x")
    print(f"import: {n / min(imp):.0f} instances/s, {size / min(imp) / 1e6:.0f} MB/s (best)")


def bench_small(work: Path, outputs: list[Path]) -> None:
    tree = make_tree(work, "small", "--patients", "10", "--studies", "1", "--series", "10",
                     "--images", "100", "--rows", "64", "--cols", "64")
    n = len(list((tree / "DICOM").iterdir()))
    store = work / "small-store"
    shutil.rmtree(store, ignore_errors=True)
    settle(tree, outputs)
    seconds = timed(import_cmd(tree, store))
    print(f"small: {n} instances of 64x64 with MDS in {seconds:.1f} s: "
          f"{n / seconds:.0f} instances/s")
    outputs.append(store)
    settle(tree, outputs, keep=(store,))
    again = timed(import_cmd(tree, store))
    print(f"small, second import (all duplicates): {n / again:.0f} instances/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (kept if given)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--prefault", action="store_true",
                    help="memory as a bare-metal host gives it (see PREFAULT)")
    ap.add_argument("--cold", action="store_true",
                    help="source not in the page cache, as a medium just inserted")
    ap.add_argument("--medium-mbps", type=int, default=0,
                    help="reads limited to this many MB/s (see SLOW_CGROUP; use with --cold)")
    args = ap.parse_args()
    compile_package()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    global prefault, cold, medium_mbps
    prefault, cold, medium_mbps = args.prefault, args.cold, args.medium_mbps
    print(f"{'prefaulted' if prefault else 'settled'}{', cold' if cold else ''}"
          f"{f', medium {medium_mbps} MB/s' if medium_mbps else ''} runs; "
          f"work folder {work}; {os.cpu_count()} CPUs; "
          f"/proc/loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    outputs: list[Path] = []   # deleted before the next run (settle) or at the end
    try:
        if not args.skip_big:
            bench_big(work, args.repeat, outputs)
        if not args.skip_small:
            bench_small(work, outputs)
    finally:
        # The machine is shared: a load average above the CPU count makes every figure of
        # the run, the ratios too, say more about the neighbours than about mediasvc.
        print(f"/proc/loadavg after: {Path('/proc/loadavg').read_text().strip()}")
        for dest in outputs:
            shutil.rmtree(dest, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
