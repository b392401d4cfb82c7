#!/usr/bin/env python3
"""C-STORE ingest: mediasvc's Storage SCP vs DCMTK storescp receiving the same stream.

    python bench/bench_ingest.py [--instances 2000] [--rows 256] [--senders 1 4] [--runs 3]

The same sender (DCMTK storescu, N of them in parallel, each with its share of the files in
one association) sends the same corpus (../shared/bench/make_corpus.py) to:
- storescp: `storescp --fork -od DIR` (writes each file, no fsync: an acknowledged instance
  may be lost on power failure);
- mediasvc: `mediasvc serve` with an [ingress] route (the quiet period set long, so only the
  ingest is measured): each instance in an fdatasync'ed journal record and under its final
  name before the C-STORE response says Success (mediasvc/ingress/receive.py);
- pynetdicom's floor (bench/pynetdicom_floor_scp.py), an SCP that answers Success at once and
  writes nothing: as pynetdicom comes ("floor"), with mediasvc's pynetdicom settings
  ("floor_tuned": mediasvc can at best reach this), and that in 2 processes on one port
  ("floor_tuned_2proc", SO_REUSEPORT: what a multi-process listener could reach).
Throughput is instances per second of wall time, from the first sender's start to the last
one's exit; the median of --runs runs per contender, the contenders alternated. Printed per
sender count, as one JSON line: the ratios mediasvc/storescp (target: >= 0.7) and
floor/storescp, the CPU seconds of mediasvc's listener per instance, and the load average
before and after. Run under flock /tmp/mediasvc-bench.lock.
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


def run_floor(work: Path, files: list[Path], senders: int, *args: str) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "pynetdicom_floor_scp.py"),
                             str(port), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, its finished threads included (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mediasvc(work: Path, files: list[Path], senders: int,
                 cpu: list[float] | None = None) -> float:
    base = work / "mediasvc"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    port = free_port()
    cfg = write_config(base / "mediasvc.toml",
                       extra=ingress_config(port, routes=ROUTE, mcm=False,
                                            extra='min_free = "1G"'))
    svc = Service(base / "root", cfg, log=base / "serve.log").start()
    try:
        pid = int(wait_listening(svc.root)["pid"])
        before = _cpu_seconds(pid)
        elapsed = send_all(port, "BENCH", files, senders)
        if cpu is not None:
            cpu.append(_cpu_seconds(pid) - before)
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
    floors = {"pynetdicom_floor": (), "floor_tuned": ("--tuned",),
              "floor_tuned_2proc": ("--tuned", "--processes", "2")}
    for senders in args.senders:
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        times: dict[str, list[float]] = {"storescp": [], "mediasvc": [],
                                         **{k: [] for k in floors}}
        cpu: list[float] = []
        for _ in range(args.runs):
            times["storescp"].append(run_storescp(work, files, senders))
            times["mediasvc"].append(run_mediasvc(work, files, senders, cpu))
            for name, fargs in floors.items():
                times[name].append(run_floor(work, files, senders, *fargs))
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: len(files) / v for k, v in med.items()}

        def ratio(a: str, b: str, rate: dict[str, float] = rate) -> float:
            return round(rate[a] / rate[b], 2)

        results.append({
            "senders": senders, "instances": len(files), "megabytes": round(mb, 1),
            "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "per_second": {k: round(v, 1) for k, v in rate.items()},
            "ratio_mediasvc_storescp": ratio("mediasvc", "storescp"),
            "ratio_floor_storescp": ratio("pynetdicom_floor", "storescp"),
            "ratio_floor_tuned_storescp": ratio("floor_tuned", "storescp"),
            "ratio_floor_tuned_2proc_storescp": ratio("floor_tuned_2proc", "storescp"),
            "ratio_mediasvc_floor_tuned": ratio("mediasvc", "floor_tuned"),
            "mediasvc_cpu_ms_per_instance": round(statistics.median(cpu) / len(files) * 1e3,
                                                  2),
            "loadavg_before": load_before,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]})
        print(json.dumps(results[-1]), flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
