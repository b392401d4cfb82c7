"""report.json and report.txt of a finished job (done/<job>/ and failed/<job>/).

Reports are files on the burner host (umask 0027), not logs: they may name files and carry the
handler's per-file verdicts. Written to a temp name, fsynced and renamed, like every result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mediasvc.durable import atomic_write as write_atomic
from mediasvc.jobqueue import Job, JobQueue


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) \
        + f".{int((t % 1) * 1000):03d}"


def build_report(q: JobQueue, job: Job) -> dict[str, Any]:
    p = job.payload
    settled = p.get("settled_at")
    report: dict[str, Any] = {
        "job": job.id,
        "uid": job.uid,
        "kind": job.kind,
        "name": job.name,
        "group": p.get("group"),
        "state": job.state.value,
        "reason": job.error,
        "priority": job.priority.name,
        "attempts": job.attempts,
        "interruptions": job.interruptions,
        "origin": p.get("origin"),
        "times": {
            "settled": _iso(settled),
            "submitted": _iso(job.created),
            "started": _iso(job.started),
            "finished": _iso(job.finished),
            "settle_to_finish_seconds": (round(job.finished - settled, 3)
                                         if job.finished and settled else None),
        },
        "options": p.get("options", {}),
        "result": job.result or {},
        "received": _received(p),
        "history": [{"at": _iso(e.at), "state": e.state, "message": e.message}
                    for e in q.history(job.id)],
    }
    return report


def _received(payload: dict[str, Any]) -> dict[str, Any] | None:
    """What a network job was made of (ingress route or MCM request), for the report."""
    if "ingress" in payload:
        ing = payload["ingress"]
        return {"by": "C-STORE", "route": ing.get("route"), "study_uid": ing.get("study_uid"),
                "calling_ae": ing.get("calling_ae"), "instances": ing.get("instances"),
                "follows_jobs": ing.get("follows", []), "note": ing.get("note", "")}
    if "mcm" in payload:
        m = payload["mcm"]
        return {"by": "Media Creation Management request", "request": m.get("request"),
                "instances": m.get("instances"), "label_text": m.get("label_text", "")}
    return None


def render_text(report: dict[str, Any]) -> str:
    lines = [
        f"mediasvc job {report['job']}: {report['kind']} {report['name']!s}",
        f"state:    {report['state'].upper()}",
    ]
    if report.get("reason"):
        lines.append(f"reason:   {report['reason']}")
    if report.get("group"):
        what = {"export": "profile", "print": "printer"}.get(report["kind"], "group")
        lines.append(f"{what + ':':9} {report['group']}")
    t = report["times"]
    lines.append(f"settled:  {t['settled']}")
    lines.append(f"finished: {t['finished']}")
    if t.get("settle_to_finish_seconds") is not None:
        lines.append(f"took:     {t['settle_to_finish_seconds']:.1f} s from settling")
    lines.append(f"attempts: {report['attempts']} (interrupted {report['interruptions']}x)")
    rec = report.get("received")
    if rec:
        lines.append(f"received: {rec.get('instances')} instance(s) by {rec['by']}"
                     + (f" on route {rec['route']} from {rec.get('calling_ae') or '?'}"
                        if rec.get("route") else ""))
        if rec.get("note"):
            lines.append(f"note:     {rec['note']}")
    result = report.get("result") or {}
    summary = result.get("summary")
    if isinstance(summary, list) and summary:
        lines.append("")
        lines += [str(s) for s in summary]
    problems = result.get("problems")
    if isinstance(problems, list) and problems:
        lines.append("")
        lines.append("problems:")
        lines += [f"  {s}" for s in problems[:200]]
        if len(problems) > 200:
            lines.append(f"  ... and {len(problems) - 200} more (report.json has all)")
    lines.append("")
    lines.append("history:")
    lines += [f"  {h['at']}  {h['state']:9}  {h['message']}" for h in report["history"]]
    return "\n".join(lines) + "\n"


def write_reports(directory: Path, report: dict[str, Any]) -> None:
    write_atomic(directory / "report.json",
                 (json.dumps(report, indent=2, sort_keys=False) + "\n").encode())
    write_atomic(directory / "report.txt", render_text(report).encode())


def read_report_uid(directory: Path) -> str | None:
    try:
        data = json.loads((directory / "report.json").read_text())
    except (OSError, ValueError):
        return None
    uid = data.get("uid") if isinstance(data, dict) else None
    return uid if isinstance(uid, str) else None
