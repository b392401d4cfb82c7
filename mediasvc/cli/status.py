"""`mediasvc status [--json]`: is the service running, and what its queue holds."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mediasvc.cli.serve import add_config_args
from mediasvc.service.config import load_service_config


def register(sub: Any) -> None:
    parser = sub.add_parser("status", help="service and queue status")
    add_config_args(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mediasvc.jobqueue import State
    from mediasvc.service.daemon import open_queue, queue_status_line, service_pid

    cfg = load_service_config(args.config, args.root)
    pid = service_pid(cfg)
    daemon: dict[str, Any] = {}
    if cfg.status_file.exists():
        try:
            daemon = json.loads(cfg.status_file.read_text())
        except (OSError, ValueError):
            daemon = {}
    q = open_queue(cfg) if cfg.db.exists() else None
    counts = q.counts() if q else {s.value: 0 for s in State}
    waiting = q.list_jobs([State.QUEUED, State.RETRYING, State.RUNNING]) if q else []
    active: list[dict[str, Any]] = [{"id": j.id, "kind": j.kind, "state": j.state.value,
               "priority": j.priority.name, "resource": j.resource, "error": j.error,
               "retry_at": j.not_before if j.state is State.RETRYING else None}
              for j in sorted(waiting, key=lambda j: (j.priority, j.id))]
    out: dict[str, Any] = {
        "running": pid is not None,
        "pid": pid,
        "root": str(cfg.root),
        "observer": daemon.get("observer") if pid else None,
        "since": daemon.get("started") if pid else None,
        "counts": counts,
        "active": active,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if pid:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(out["since"] or 0))
        print(f"mediasvc: running (pid {pid}, since {since}, {out['observer']}) on {cfg.root}")
    else:
        print(f"mediasvc: not running on {cfg.root}")
    print(f"jobs: {queue_status_line(counts)}, {counts['cancelled']} cancelled")
    for a in active:
        extra = ""
        if a["retry_at"]:
            extra = f"  retry in {max(a['retry_at'] - time.time(), 0):.0f} s: {a['error']}"
        print(f"  #{a['id']:<5} {a['kind']:7} {a['state']:9} {a['priority']:4}{extra}")
    return 0
