#!/usr/bin/env python3
"""C-STORE ingest: mediasvc's Storage SCP vs DCMTK storescp receiving the same stream.

    python bench/bench_ingest.py [--instances 2000] [--rows 256] [--senders 1 4] [--runs 3]

The same sender (DCMTK storescu, N of them in parallel, each with its share of the files in
one association) sends the same corpus (../shared/bench/make_corpus.py) to:
- storescp: `storescp --fork -od DIR` (writes each file, no fsync: an acknowledged instance
  may be lost on power failure);
- mediasvc: `mediasvc serve` with an [ingress] route (the quiet period set long, so only the
  ingest is measured): each instance temp-written, fdatasync'ed, renamed into its study folder
  and that folder fsynced before the C-STORE response says Success;
- pynetdicom's floor (bench/pynetdicom_floor_scp.py): a pynetdicom SCP that answers Success
  at once and writes nothing, i.e. what any SCP on pynetdicom can reach at best.
Throughput is instances per second of wall time, from the first sender's start to the last
one's exit; the median of --runs runs per contender, the contenders alternated. The ratio
printed is mediasvc/storescp (target: >= 0.7). Run under flock /tmp/mediasvc-bench.lock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ingress_support import dcmtk, free_port, ingress_config, wait_listening  # noqa: E402
from test_service_support import Service, write_config  # noqa: E402

SHARED = REPO.parent / "shared"
# DCMTK leaves Nagle's algorithm on unless TCP_NODELAY is set: with it on, every C-STORE
# response waits for a delayed ACK (about 40 ms here), and storescp ran at 17 instances/s.
# Both contenders get DCMTK at its best: the sender and storescp run with TCP_NODELAY=1.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
ROUTE = """
[[ingress.route]]
name = "bench"
called_ae = "BENCH"
action = "export"
profile = "STD-GEN-CD"
quiet_seconds = 86400
"""


def corpus(out: Path, instances: int, rows: int) -> list[Path]:
    series = 4
    patients = max(1, instances // (series * 50))
    images = -(-instances // (patients * series))
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(out),
                    "--patients", str(patients), "--studies", "1", "--series", str(series),
                    "--images", str(images), "--rows", str(rows), "--cols", str(rows)],
                   check=True, capture_output=True)
    return sorted(out.rglob("*.dcm"))[:instances]


def send_all(port: int, called: str, files: list[Path], senders: int) -> float:
    shares = [files[i::senders] for i in range(senders)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([dcmtk("storescu"), "-aec", called, "-aet", "MODALITY",
                               "127.0.0.1", str(port), *map(str, share)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=DCMTK_ENV)
             for share in shares]
    outs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - t0
    for p, out in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"storescu failed ({p.returncode}): {out.decode()[-1500:]}")
    return elapsed


def run_storescp(work: Path, files: list[Path], senders: int) -> float:
    out = work / "storescp"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen([dcmtk("storescp"), "--fork", "-aet", "BENCH", "-od", str(out),
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=DCMTK_ENV)
    try:
        time.sleep(0.3)
        elapsed = send_all(port, "BENCH", files, senders)
    finally:
        proc.terminate()
        proc.wait()
    got = sum(1 for _ in out.iterdir())
    if got != len(files):
        raise SystemExit(f"storescp stored {got} of {len(files)}")
    shutil.rmtree(out)
    return elapsed


def run_floor(work: Path, files: list[Path], senders: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "pynetdicom_floor_scp.py"),
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        return send_all(port, "BENCH", files, senders)
    finally:
        proc.terminate()
        proc.wait()


def _wait_port(port: int) -> None:
    import socket

    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def run_mediasvc(work: Path, files: list[Path], senders: int) -> float:
    base = work / "mediasvc"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    port = free_port()
    cfg = write_config(base / "mediasvc.toml",
                       extra=ingress_config(port, routes=ROUTE, mcm=False,
                                            extra='min_free = "1G"'))
    svc = Service(base / "root", cfg, log=base / "serve.log").start()
    try:
        wait_listening(svc.root)
        elapsed = send_all(port, "BENCH", files, senders)
        got = sum(1 for _ in (svc.root / "ingress" / "studies").rglob("*.dcm"))
        svc.stop()
    finally:
        svc.close()
    if got != len(files):
        raise SystemExit(f"mediasvc stored {got} of {len(files)}")
    shutil.rmtree(base)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=256, help="rows = columns, 16-bit")
    ap.add_argument("--senders", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="mediasvc-bench-ingest-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    files = corpus(work / "corpus", args.instances, args.rows)
    mb = sum(f.stat().st_size for f in files) / 1e6
    results = []
    for senders in args.senders:
        times: dict[str, list[float]] = {"storescp": [], "mediasvc": [], "pynetdicom_floor": []}
        for _ in range(args.runs):
            times["storescp"].append(run_storescp(work, files, senders))
            times["mediasvc"].append(run_mediasvc(work, files, senders))
            times["pynetdicom_floor"].append(run_floor(work, files, senders))
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: len(files) / v for k, v in med.items()}
        results.append({"senders": senders, "instances": len(files), "megabytes": round(mb, 1),
                        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
                        "per_second": {k: round(v, 1) for k, v in rate.items()},
                        "ratio_mediasvc_storescp": round(rate["mediasvc"] / rate["storescp"],
                                                         2),
                        "ratio_floor_storescp": round(rate["pynetdicom_floor"]
                                                      / rate["storescp"], 2),
                        "ratio_mediasvc_floor": round(rate["mediasvc"]
                                                      / rate["pynetdicom_floor"], 2)})
        print(json.dumps(results[-1]), flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
