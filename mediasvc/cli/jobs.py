"""`mediasvc jobs list|show|retry|cancel`: the service's job queue."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mediasvc.cli.serve import add_config_args
from mediasvc.errors import UsageError
from mediasvc.service.config import load_service_config


def register(sub: Any) -> None:
    parser = sub.add_parser("jobs", help="list, show, retry or cancel service jobs")
    jsub = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    p = jsub.add_parser("list", help="jobs, newest first")
    add_config_args(p)
    p.add_argument("--state", action="append",
                   choices=("queued", "running", "done", "failed", "retrying", "cancelled"))
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    for name, text in (("show", "one job with its history"),
                       ("retry", "requeue a failed, cancelled or retrying job"),
                       ("cancel", "cancel a waiting job, or stop a running one")):
        p = jsub.add_parser(name, help=text)
        add_config_args(p)
        p.add_argument("job", type=int)
        p.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def run(args: argparse.Namespace) -> int:
    from mediasvc.service import spool
    from mediasvc.service.daemon import open_queue

    cfg = load_service_config(args.config, args.root)
    if not cfg.db.exists():
        raise UsageError(f"no job database at {cfg.db} (has `mediasvc serve` run on this root?)")
    q = open_queue(cfg)
    cmd = args.jobs_command
    if cmd == "list":
        jobs = q.list_jobs(args.state, limit=args.limit)
        if args.json:
            print(json.dumps([j.as_dict() for j in jobs], indent=2))
            return 0
        print(f"{'ID':>5}  {'KIND':7} {'STATE':9} {'PRIO':4} {'UPDATED':19}  NAME / REASON")
        for j in jobs:
            tail = j.name + (f"  -- {j.error}" if j.error else "")
            print(f"{j.id:>5}  {j.kind:7} {j.state.value:9} {j.priority.name:4} "
                  f"{_when(j.updated)}  {tail}")
        return 0
    job = q.get(args.job)
    if cmd == "retry":
        job = spool.restore_for_retry(cfg, q, job)
    elif cmd == "cancel":
        job = q.cancel(job.id)
        if job.state.value == "cancelled":
            spool.finalize(cfg, q, job)
    history = q.history(job.id)
    if args.json:
        d = job.as_dict()
        d["history"] = [{"at": e.at, "state": e.state, "message": e.message} for e in history]
        print(json.dumps(d, indent=2))
        return 0
    print(f"job {job.id}: {job.kind} {job.name}  [{job.state.value}, priority "
          f"{job.priority.name}]")
    if job.payload.get("group"):
        print(f"  for:       {job.payload['group']}")
    if job.resource:
        print(f"  resource:  {job.resource}")
    print(f"  attempts:  {job.attempts} (failures {job.failures}, interrupted "
          f"{job.interruptions}x, at most {job.max_attempts})")
    if job.error:
        print(f"  reason:    {job.error}")
    if job.steps:
        print(f"  steps:     {', '.join(job.steps)}")
    if cmd == "show":
        for e in history:
            print(f"  {_when(e.at)}  {e.state:9}  {e.message}")
    return 0
