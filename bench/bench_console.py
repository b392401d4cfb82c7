#!/usr/bin/env python3
"""How fast the web console answers with a big queue and a big store (issue 11).

    python bench/bench_console.py [--jobs 10000] [--instances 50000] [--requests 200]

Builds a root with --jobs jobs in the queue (most done, some failed, queued and running with
progress) and a store index of --instances instances (rows only: the pages read the index,
not the files), starts `python -m mediasvc.web` on it, signs in, and times each page and API
call over HTTP (median, 95th percentile). References measured in the same run: the same
server answering a static file (the HTTP floor of this stack) and `mediasvc jobs list
--limit 50 --json` (what a terminal user has today). The goal: the queue page under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
from test_service_support import write_config  # noqa: E402
from web_support import USERS, ConsoleProcess, make_users, web_table  # noqa: E402

from mediasvc.service.config import load_service_config  # noqa: E402
from mediasvc.service.daemon import open_queue  # noqa: E402
from mediasvc.store.index import NewInstance, Store  # noqa: E402


def fill_queue(db: Path, spool: Path, n: int) -> None:
    """n jobs and three events each, in one transaction (the queue's own schema)."""
    now = time.time()
    con = sqlite3.connect(db)
    rows, events = [], []
    for i in range(1, n + 1):
        state = ("running" if i > n - 2 else "queued" if i > n - 22 else
                 "failed" if i % 50 == 0 else "done")
        uid = f"bench-{i:06d}"
        payload = json.dumps({"uid": uid, "kind": "export", "group": "STD-GEN-CD",
                              "name": f"job{i}", "origin": f"export/STD-GEN-CD/job{i}"})
        result = json.dumps({"summary": ["ISO image: x.iso"], "problems": []})
        rows.append((i, uid, "export", f"job{i}", 1, state, None, payload, "{}",
                     result if state == "done" else None,
                     "2 of 5 files rejected" if state == "failed" else None, 1, 0, 0, 5, 0,
                     "bench:1:1" if state == "running" else None, 0, now - n + i, now - n + i,
                     now - n + i, None if state in ("queued", "running") else now - n + i))
        events += [(i, now - n + i, s, m) for s, m in (("queued", "submitted"),
                                                       ("running", "claimed"), (state, state))]
        if state == "running":
            (spool / uid).mkdir(parents=True, exist_ok=True)
            (spool / uid / "progress.json").write_text('{"phase": "import", "done": 40, '
                                                       '"total": 100}')
    with con:
        con.executemany(f"INSERT INTO jobs VALUES ({','.join('?' * 22)})", rows)
        con.executemany("INSERT INTO events VALUES (?,?,?,?)", events)
    con.close()


def fill_store(root: Path, n: int) -> None:
    """n instance rows: 25 per series, 4 series per study, one study per patient."""
    with Store.open(root) as store:
        iid = store.begin_import("bench", "", "", "scan")
        batch: list[NewInstance] = []
        for i in range(n):
            series, study = i // 25, i // 100
            batch.append(NewInstance(
                patient_id=f"PID{study:06d}", issuer="", patient_name=f"DOE^PATIENT{study:06d}",
                birth_date="19500101", sex="F", study_uid=f"1.2.3.{study}",
                study_date=f"2026{1 + study % 12:02d}{1 + study % 28:02d}", study_time="090000",
                accession_number=f"ACC{study:06d}", study_id="1", study_description="BENCH",
                series_uid=f"1.2.3.{study}.{series}", modality="CT", series_number=series % 4,
                series_description="", body_part="CHEST", sop_uid=f"1.2.3.{study}.{series}.{i}",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2", instance_number=i % 25,
                transfer_syntax="1.2.840.10008.1.2.1", relpath=f"objects/{i:08d}",
                checksum=f"{i:064x}", source_checksum=f"{i:064x}", size=1000, source_path="x",
                mds={"series.modality": {"value": "CT", "source": "Modality"}}))
            if len(batch) == 5000:
                store.add(batch, import_id=iid, medium_label="", fileset_id="", volume="")
                batch = []
        if batch:
            store.add(batch, import_id=iid, medium_label="", fileset_id="", volume="")


def timed(fn: Callable[[], httpx.Response], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--instances", type=int, default=50_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    console = None
    try:
        root = work / "root"
        cfg_path = write_config(work / "svc.toml", web=web_table(root))
        cfg = load_service_config(cfg_path, root)
        for d in cfg.dirs():
            d.mkdir(parents=True, exist_ok=True)
        open_queue(cfg)  # the schema
        t0 = time.perf_counter()
        fill_queue(cfg.db, cfg.spool, args.jobs)
        fill_store(cfg.store, args.instances)
        print(f"built {args.jobs} jobs and {args.instances} instances in "
              f"{time.perf_counter() - t0:.1f} s")
        make_users(root)
        console = ConsoleProcess(cfg_path, root)
        url = console.start()
        with httpx.Client(base_url=url, timeout=60) as c:
            token = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            c.post("/login", data={"username": "viewer1", "password": USERS["viewer1"][1],
                                   "csrf": token})
            csrf = c.get("/store").text.split('name="csrf" value="')[1].split('"')[0]
            key = c.get("/api/v1/store/studies", params={"limit": 1}).json()["studies"][0]["key"]
            cases: dict[str, Callable[[], httpx.Response]] = {
                "static file (floor)": lambda: c.get("/static/console.css"),
                "queue page /": lambda: c.get("/"),
                "queue page, failed only": lambda: c.get("/", params={"state": "failed"}),
                "queue page, 100th page": lambda: c.get("/", params={"before": 5000}),
                "queue live refresh": lambda: c.get("/partials/queue"),
                "GET /api/v1/jobs": lambda: c.get("/api/v1/jobs"),
                "store page /store": lambda: c.get("/store"),
                "store search by name": lambda: c.post("/store", data={
                    "csrf": csrf, "name": "patient000123"}),
                "study page /study/K": lambda: c.get(f"/study/{key}"),
                "POST /api/v1/store/search": lambda: c.post("/api/v1/store/search", json={
                    "patient_id": "PID0001"}, headers={"X-CSRF-Token": csrf}),
            }
            for fn in cases.values():  # warm: imports, caches, first connections
                fn()
            results = {name: timed(fn, args.requests) for name, fn in cases.items()}
        cli = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mediasvc", "jobs", "list", "--limit", "50",
                            "--json", "--config", str(cfg_path), "--root", str(root)],
                           check=True, capture_output=True, env=dict(os.environ,
                                                                     PYTHONPATH=str(REPO)))
            cli.append((time.perf_counter() - t0) * 1000)
        floor = statistics.median(results["static file (floor)"])
        cli_ms = statistics.median(cli)
        print(f"\n{'request':28} {'median ms':>10} {'p95 ms':>8} {'/floor':>7} {'/cli':>6}")
        for name, ms in results.items():
            med = statistics.median(ms)
            p95 = sorted(ms)[int(len(ms) * 0.95) - 1]
            print(f"{name:28} {med:10.1f} {p95:8.1f} {med / floor:7.1f} {med / cli_ms:6.2f}")
        print(f"{'mediasvc jobs list (cli)':28} {cli_ms:10.1f}")
        queue = statistics.median(results["queue page /"])
        print(f"\nqueue page: median {queue:.1f} ms with {args.jobs} jobs and "
              f"{args.instances} instances: {'under' if queue < 100 else 'OVER'} 100 ms")
        return 0 if queue < 100 else 1
    finally:
        if console is not None:
            console.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
