#!/usr/bin/env python3
"""Latency of `mediasvc serve`: from the settle point of a dropped study to its finished ISO.

    python bench/bench_latency.py [--images 100] [--rows 512] [--runs 5] [--settle 2]

A 100-instance study (make_corpus, 512x512 CT by default) is dropped into
drop/export/STD-GEN-CD/ RUNS times (copied under a hidden name, then renamed in, so the settle
point is known: rename time + settle_seconds). Measured per run:
- service: settle point -> done/<job>/report.json present (ISO finished, published, reported),
  seen from outside; and the service's own figure (report: settle -> finished);
In the same run, the same study to an ISO without the service:
- cli:   `mediasvc export SRC --profile STD-GEN-CD --out DIR` + `mediasvc burn DIR --to iso:`
         (two processes: what the service does, minus the queue, spool and report);
- dcmtk: the reference pipeline: copy the files into a staging tree under ISO names,
         `dcmmkdir +r`, then `xorriso -as mkisofs` (no README/INDEX, no read-back).
Prints medians and the ratios service/cli and service/dcmtk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_service_support import Service, write_config  # noqa: E402

SHARED = REPO.parent / "shared"


def run_service(svc: Service, src: list[Path], name: str,
                settle: float) -> tuple[float, float, dict[str, float]]:
    base = svc.root / "drop" / "export" / "STD-GEN-CD"
    tmp = base / f".{name}"
    tmp.mkdir()
    for f in src:
        shutil.copyfile(f, tmp / f.name)
    tmp.rename(base / name)
    settle_point = time.time() + settle
    report = svc.root / "done" / name / "report.json"
    svc.wait_for(report.is_file, 600, f"{name} to finish")
    seen = time.time() - settle_point
    data = json.loads(report.read_text())
    parts = dict(data["result"].get("timings", {}))
    parts["runner_seconds"] = data["result"].get("runner_seconds", 0.0)
    return seen, float(data["times"]["settle_to_finish_seconds"]), parts


def run_cli(src_dir: Path, work: Path) -> float:
    out, iso = work / "cli-staging", work / "cli.iso"
    shutil.rmtree(out, ignore_errors=True)
    iso.unlink(missing_ok=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mediasvc", "-q", "export", str(src_dir), "--profile",
                    "STD-GEN-CD", "--out", str(out)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "mediasvc", "-q", "burn", str(out), "--to",
                    f"iso:{iso}", "--verify"], check=True, capture_output=True)
    return time.perf_counter() - t


def run_dcmtk(src: list[Path], work: Path) -> float:
    stage, iso = work / "dcmtk-staging", work / "dcmtk.iso"
    shutil.rmtree(stage, ignore_errors=True)
    iso.unlink(missing_ok=True)
    t = time.perf_counter()
    (stage / "DICOM").mkdir(parents=True)
    for i, f in enumerate(src):
        shutil.copyfile(f, stage / "DICOM" / f"I{i:07d}")
    subprocess.run(["dcmmkdir", "+r", "-Pgp", "+D", "DICOMDIR", "DICOM"], check=True,
                   capture_output=True, cwd=stage)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), str(stage)],
                   check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=2.0)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mediasvc-latency-"))
    try:
        src_dir = work / "study"
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), str(src_dir),
                        "--patients", "1", "--studies", "1", "--series", "2", "--images",
                        str(args.images // 2), "--rows", str(args.rows), "--cols",
                        str(args.rows)], check=True, capture_output=True)
        src = sorted(src_dir.rglob("*.dcm"))
        size = sum(f.stat().st_size for f in src)
        cfg = write_config(work / "mediasvc.toml", settle=args.settle, workers=2)
        svc = Service(work / "root", cfg, log=work / "serve.log").start()
        seen, own, cli, dcmtk = [], [], [], []
        parts: dict[str, list[float]] = {}
        try:
            for i in range(args.runs):
                s, o, p = run_service(svc, src, f"lat{i}", args.settle)
                for k, v in p.items():
                    parts.setdefault(k, []).append(v)
                seen.append(s)
                own.append(o)
                cli.append(run_cli(src_dir, work))
                dcmtk.append(run_dcmtk(src, work))
            svc.stop()
        finally:
            svc.close()
        med = {k: statistics.median(v) for k, v in
               (("service", seen), ("service_own", own), ("cli", cli), ("dcmtk", dcmtk))}
        print(f"study: {len(src)} instances, {size / 1e6:.1f} MB ({args.rows}x{args.rows}); "
              f"{args.runs} runs, settle {args.settle} s (not counted)")
        print(f"service  settle point -> ISO published: median {med['service']:.2f} s "
              f"(runs {', '.join(f'{x:.2f}' for x in seen)}); its own report: "
              f"{med['service_own']:.2f} s")
        print("         of which (medians): " + ", ".join(
            f"{k.removesuffix('_seconds')} {statistics.median(v):.2f} s"
            for k, v in parts.items()) + " (runner: from its imports to its result)")
        print(f"cli      export + burn --verify:          median {med['cli']:.2f} s")
        print(f"dcmtk    copy + dcmmkdir + xorriso:        median {med['dcmtk']:.2f} s")
        print(f"ratio service/cli {med['service'] / med['cli']:.2f}x, "
              f"service/dcmtk {med['service'] / med['dcmtk']:.2f}x")
        print(json.dumps({k: round(v, 3) for k, v in med.items()}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
