#!/usr/bin/env python3
"""Kill test of network ingress: SIGKILL `mediasvc serve` while DCMTK storescu sends.

    python bench/kill_ingress.py [--studies 6] [--kills 20] [--seed N] [--keep DIR]

A sender sends studies (3 series each) with storescu, one association per study; when the
service dies under it, it sends again what was not acknowledged (as a modality does). A killer
SIGKILLs the service at random moments (0.4-1.5 s apart; after 30 % of the restarts the next
kill does not wait for READY) and restarts it at once. Then the service runs until every
study was made into a medium, and the check:
- every instance storescu saw acknowledged with Success is on a medium (a staging tree's
  DICOMDIR under done/) exactly once, across all media; nothing else is on them;
- every DICOMDIR passes dciodvfy; failed/, the spool and the study folders are empty.
Exit status 0 when all holds; a JSON summary on stdout. tests/test_ingress_kill.py runs it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ingress_support import (  # noqa: E402
    dcmtk,
    free_port,
    ingress_config,
)
from test_service_support import Service, write_config  # noqa: E402

SHARED = REPO.parent / "shared"
ROUTE = """
[[ingress.route]]
name = "cd"
called_ae = "BURN_CD"
action = "export"
profile = "STD-GEN-CD"
target = "staging"
"""


def make_studies(out: Path, n: int, images: int, seed: int) -> list[list[Path]]:
    import pydicom

    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out),
                    "--patients", str(n), "--studies", "1", "--series", "3",
                    "--images", str(images), "--rows", "64", "--cols", "64",
                    "--seed", str(seed)], check=True, capture_output=True)
    by: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(out.rglob("*.dcm")):
        by[str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)].append(f)
    return [by[k] for k in sorted(by)]


def send(port: int, files: list[Path]) -> set[Path]:
    """One storescu association; the files it saw acknowledged with Success."""
    r = subprocess.run([dcmtk("storescu"), "-v", "-aec", "BURN_CD", "-aet", "MODALITY",
                        "-to", "10", "-ta", "10", "-td", "10", "127.0.0.1", str(port),
                        *map(str, files)], capture_output=True, text=True, timeout=120)
    acked: set[Path] = set()
    current: Path | None = None
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"I: Sending file: (.*)$", line)
        if m:
            current = Path(m.group(1))
        elif "Received Store Response (Success)" in line and current is not None:
            acked.add(current)
            current = None
    return acked


def media_sops(root: Path) -> tuple[Counter[str], list[str]]:
    import pydicom

    seen: Counter[str] = Counter()
    problems: list[str] = []
    for dicomdir in sorted((root / "done").glob("*/media/DICOMDIR")):
        v = subprocess.run(["dciodvfy", str(dicomdir)], capture_output=True, text=True)
        errors = [x for x in (v.stdout + v.stderr).splitlines() if x.startswith("Error")]
        if errors:
            problems.append(f"{dicomdir.parent.parent.name}: dciodvfy: {errors[:3]}")
        ds = pydicom.dcmread(dicomdir)
        for r in ds.DirectoryRecordSequence:
            if r.DirectoryRecordType == "IMAGE":
                seen[str(r.ReferencedSOPInstanceUIDInFile)] += 1
    return seen, problems


def main(argv: list[str] | None = None) -> int:
    import pydicom

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--studies", type=int, default=6)
    ap.add_argument("--images", type=int, default=4, help="per series (3 series a study)")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--min-gap", type=float, default=0.4)
    ap.add_argument("--max-gap", type=float, default=1.5)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rnd = random.Random(seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mediasvc-kill-ingress-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    studies = make_studies(work / "corpus", args.studies, args.images, seed % 100000)
    port = free_port()
    cfg = write_config(work / "mediasvc.toml", settle=0.3, workers=2,
                       extra=ingress_config(port, quiet=1.0, routes=ROUTE, mcm=False))
    svc = Service(root, cfg, log=work / "serve.log")
    svc.start()
    acked: set[Path] = set()
    associations = 0
    done_sending = threading.Event()

    def sender() -> None:
        nonlocal associations
        for files in studies:
            todo = list(files)
            while todo:
                associations += 1
                got = send(port, todo)
                acked.update(got)
                todo = [f for f in todo if f not in got]
                if todo:
                    time.sleep(0.2)   # the service is restarting
        done_sending.set()

    t = threading.Thread(target=sender)
    start = time.monotonic()
    t.start()
    kills = 0
    try:
        while kills < args.kills and not done_sending.is_set():
            time.sleep(rnd.uniform(args.min_gap, args.max_gap))
            svc.kill()
            kills += 1
            svc.start(wait_ready=rnd.random() < 0.7)
        t.join()
        svc.wait_ready(120)
        want = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in acked}

        def finished() -> bool:
            if any((root / "spool").iterdir()):
                return False
            if any((root / "ingress" / "studies").rglob("*.dcm")):
                return False
            seen, _ = media_sops(root)
            return want <= set(seen)

        svc.wait_for(finished, 300, "every acknowledged instance to be on a medium")
        code = svc.stop()
    finally:
        svc.close()
    elapsed = time.monotonic() - start
    seen, problems = media_sops(root)
    sent_all = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                for s in studies for f in s}
    missing = want - set(seen)
    twice = sorted(s for s, n in seen.items() if n > 1)
    if missing:
        problems.append(f"{len(missing)} acknowledged instance(s) on no medium")
    if twice:
        problems.append(f"{len(twice)} instance(s) on more than one medium / twice")
    if set(seen) - sent_all:
        problems.append("media hold instances that were never sent")
    if set(seen) != sent_all:
        problems.append(f"media hold {len(seen)} of the {len(sent_all)} instances sent")
    failed = [p.name for p in (root / "failed").iterdir()]
    if failed:
        problems.append(f"failed/: {failed}")
    if code != 0:
        problems.append(f"the service exited with {code} on SIGTERM")
    media = len(list((root / "done").glob("*/media/DICOMDIR")))
    summary = {"seed": seed, "studies": len(studies), "instances": len(sent_all),
               "acknowledged": len(want), "kills": kills, "associations": associations,
               "media": media, "seconds": round(elapsed, 1), "problems": problems,
               "work": str(work)}
    print(json.dumps(summary, indent=2))
    if not problems and args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
