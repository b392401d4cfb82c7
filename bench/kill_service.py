#!/usr/bin/env python3
"""Kill test of `mediasvc serve`: SIGKILL at random moments during a stream of jobs.

    python bench/kill_service.py [--jobs 24] [--kills 24] [--seed N] [--keep DIR]

A feeder drops a stream of jobs (export studies to STD-GEN-CD ISO images or staging trees,
and import study folders into the store) while a killer SIGKILLs the service at random
moments (during start-up recovery, claims, file-set writing, ISO mastering, imports,
publishing) and restarts it at once. When every kill is done and every job dropped, the
service runs until the queue is empty. Then it checks:
- every job ended in done/ exactly once (one done/<job>/, no second copy, nothing in failed/,
  one queue row per job, state done), the drop folders and the spool are empty;
- no input lost, no broken DICOMDIR: each ISO is read back with xorriso (each staging tree
  read in place), its DICOMDIR passes dciodvfy with 0 errors and lists exactly the SOP
  instances of the dropped study;
- the store holds every imported instance exactly once (no duplicate rows) and its own
  consistency check finds nothing.
Exit status 0 when all holds; a JSON summary on stdout. tests/test_service_kill.py runs a short
form of it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_service_support import Service, write_config  # noqa: E402

SHARED = REPO.parent / "shared"


def make_studies(out: Path, n: int, images: int, seed: int) -> list[list[Path]]:
    import pydicom

    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out),
                    "--patients", str(n), "--studies", "1", "--series", "1",
                    "--images", str(images), "--rows", "64", "--cols", "64",
                    "--seed", str(seed)], check=True, capture_output=True)
    by_study: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(out.rglob("*.dcm")):
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
        by_study[uid].append(f)
    return [by_study[k] for k in sorted(by_study)]


def sop_uids(files: list[Path]) -> set[str]:
    import pydicom

    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def drop(job_dir: Path, files: list[Path], job_toml: str | None = None) -> None:
    """Copy the files into a hidden folder, then rename it in with a .ready marker."""
    tmp = job_dir.with_name("." + job_dir.name)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    if job_toml:
        (tmp / "job.toml").write_text(job_toml)
    (tmp / ".ready").touch()
    tmp.rename(job_dir)


def check(root: Path, jobs: dict[str, tuple[str, list[Path]]], work: Path) -> list[str]:
    problems: list[str] = []
    done = {p.name for p in (root / "done").iterdir()}
    failed = {p.name for p in (root / "failed").iterdir()}
    for name in sorted(jobs):
        if name not in done:
            problems.append(f"{name}: not in done/"
                            + (" (in failed/)" if name in failed else ""))
        extra = [d for d in done if d.startswith(name + "-")]
        if extra:
            problems.append(f"{name}: done more than once: {extra}")
    if failed:
        problems.append(f"failed/: {sorted(failed)}")
    for d in ("spool",):
        left = [p.name for p in (root / d).iterdir()]
        if left:
            problems.append(f"{d}/ not empty: {left}")
    for sub in ("export/STD-GEN-CD", "import"):
        left = [p.name for p in (root / "drop" / sub).iterdir()]
        if left:
            problems.append(f"drop/{sub} not empty: {left}")
    with sqlite3.connect(root / "mediasvc.db") as db:
        rows = db.execute("SELECT name, state FROM jobs").fetchall()
    per_name: dict[str, list[str]] = defaultdict(list)
    for name, state in rows:
        per_name[name].append(state)
    for name in jobs:
        if per_name.get(name) != ["done"]:
            problems.append(f"{name}: queue rows {per_name.get(name)}")
    expected_store: set[str] = set()
    for name, (kind, files) in sorted(jobs.items()):
        if kind == "import":
            expected_store |= sop_uids(files)
            continue
        media = root / "done" / name / "media"
        if kind == "staging":
            out = media
            if not (media / "DICOMDIR").is_file():
                problems.append(f"{name}: no staging tree in done/{name}/media")
                continue
        else:
            isos = list((root / "done" / name).glob("*.iso"))
            if len(isos) != 1:
                problems.append(f"{name}: {len(isos)} ISO images")
                continue
            out = work / "check" / name
            r = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(isos[0]),
                                "-extract", "/", str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"{name}: xorriso cannot read the ISO: {r.stderr[-300:]}")
                continue
        v = subprocess.run(["dciodvfy", str(out / "DICOMDIR")], capture_output=True, text=True)
        errors = [x for x in (v.stdout + v.stderr).splitlines() if x.startswith("Error")]
        if errors:
            problems.append(f"{name}: dciodvfy: {errors[:3]}")
        import pydicom

        ds = pydicom.dcmread(out / "DICOMDIR")
        listed = {str(r.ReferencedSOPInstanceUIDInFile) for r in ds.DirectoryRecordSequence
                  if r.DirectoryRecordType == "IMAGE"}
        if listed != sop_uids(files):
            problems.append(f"{name}: the DICOMDIR lists {len(listed)} instances, "
                            f"{len(files)} were dropped")
        if kind != "staging":
            shutil.rmtree(out)
    from mediasvc.store.index import Store

    with Store.open(root / "store") as store:
        dup = store.db.execute("SELECT sop_uid, COUNT(*) FROM instances GROUP BY "
                               "sop_uid HAVING COUNT(*) > 1").fetchall()
        held = {r[0] for r in store.db.execute("SELECT sop_uid FROM instances")}
        store_problems = store.check(rehash=True)
    if dup:
        problems.append(f"store: duplicate rows for {len(dup)} SOP instances")
    if held != expected_store:
        problems.append(f"store: holds {len(held)} instances, {len(expected_store)} expected")
    problems += [f"store check: {p}" for p in store_problems]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--kills", type=int, default=24)
    ap.add_argument("--images", type=int, default=4, help="instances per study")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--min-gap", type=float, default=0.3, help="seconds between kills, min")
    ap.add_argument("--max-gap", type=float, default=2.0, help="seconds between kills, max")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mediasvc-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    studies = make_studies(work / "corpus", args.jobs, args.images, seed % 100000)
    jobs: dict[str, tuple[str, list[Path]]] = {}
    for i, files in enumerate(studies):
        kind = ("export", "staging", "import", "export")[i % 4]
        jobs[f"k{i:03d}"] = (kind, files)
    cfg = write_config(work / "mediasvc.toml", settle=0.3, workers=2)
    svc = Service(root, cfg, log=work / "serve.log")
    svc.start()
    start = time.monotonic()
    kills = 0
    fed = threading.Event()

    def feeder() -> None:
        for name, (kind, files) in jobs.items():
            base = root / "drop" / ("import" if kind == "import" else "export/STD-GEN-CD")
            drop(base / name, files, 'target = "staging"\n' if kind == "staging" else None)
            time.sleep(rnd.uniform(0.05, 0.4))
        fed.set()

    t = threading.Thread(target=feeder)
    t.start()
    try:
        while kills < args.kills:
            time.sleep(rnd.uniform(args.min_gap, args.max_gap))
            svc.kill()
            kills += 1
            svc.start(wait_ready=rnd.random() < 0.7)  # sometimes kill during recovery
        t.join()
        svc.wait_ready(120)  # the last restart may not have been waited for
        svc.wait_for(lambda: len(list((root / "done").iterdir())) + len(
            list((root / "failed").iterdir())) >= len(jobs) and not any(
            (root / "spool").iterdir()), 300, "every job to finish")
        code = svc.stop()
    finally:
        svc.close()
    elapsed = time.monotonic() - start
    problems = check(root, jobs, work)
    if code != 0:
        problems.append(f"the service exited with {code} on SIGTERM")
    with sqlite3.connect(root / "mediasvc.db") as db:
        interrupted = db.execute("SELECT COUNT(*), COALESCE(SUM(interruptions), 0) FROM jobs "
                                 "WHERE interruptions > 0").fetchone()
    summary = {"seed": seed, "jobs": len(jobs), "kills": kills,
               "jobs_interrupted": interrupted[0], "interruptions": interrupted[1],
               "seconds": round(elapsed, 1), "problems": problems, "work": str(work)}
    print(json.dumps(summary, indent=2))
    if not problems and args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
