"""What the console shows, as plain data (the API returns it as JSON, the pages render it).

Everything is read from where the service keeps it: the job queue (jobs, history, the last
status of printers and burners), run/status.json, spool/<uid>/progress.json of running jobs,
the reports under done/ and failed/, the store's index (read-only) and the MDS code. Nothing
here writes; actions.py does, through the service's own functions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mediasvc.errors import JobError, StoreError
from mediasvc.jobqueue import FINAL_STATES, Job, JobQueue, State
from mediasvc.service.config import ServiceConfig
from mediasvc.service.reports import build_report
from mediasvc.service.spool import PROGRESS
from mediasvc.store.index import Store, StudyRow

ACTIVE = (State.RUNNING, State.QUEUED, State.RETRYING)


class NotFound(Exception):
    """The job, study or series asked for does not exist (HTTP 404)."""


# -- the queue --------------------------------------------------------------------------------

def open_queue(cfg: ServiceConfig) -> JobQueue:
    from mediasvc.service.daemon import open_queue as service_queue

    return service_queue(cfg)


def job_summary(cfg: ServiceConfig, job: Job) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": job.id, "kind": job.kind, "name": job.name, "group": job.payload.get("group"),
        "state": job.state.value, "priority": job.priority.name, "resource": job.resource,
        "error": job.error, "attempts": job.attempts, "created": job.created,
        "updated": job.updated, "started": job.started, "finished": job.finished,
        "cancel_requested": job.cancel_requested,
        "retry_at": job.not_before if job.state is State.RETRYING else None,
        "progress": progress(cfg, job) if job.state is State.RUNNING else None}
    return d


def progress(cfg: ServiceConfig, job: Job) -> dict[str, Any] | None:
    """How far a running job is (written by its runner), or None when it has not said."""
    try:
        data = json.loads((cfg.spool / job.uid / PROGRESS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    total = max(int(data.get("total", 0) or 0), 0)
    done = min(max(int(data.get("done", 0) or 0), 0), total)
    return {"phase": str(data.get("phase", "")), "done": done, "total": total,
            "percent": round(100 * done / total) if total else None}


def queue_view(cfg: ServiceConfig, q: JobQueue, *, states: list[str] | None = None,
               kind: str | None = None, before: int | None = None,
               limit: int = 50) -> dict[str, Any]:
    """Counts, the active jobs, and one page of all jobs (newest first, filtered)."""
    active = sorted(q.list_jobs(ACTIVE, limit=500), key=lambda j: (j.state is not State.RUNNING,
                                                                    j.priority, j.id))
    page = q.list_jobs(states, kind=kind, before=before, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return {"service": service_status(cfg), "counts": q.counts(),
            "active": [job_summary(cfg, j) for j in active],
            "jobs": [job_summary(cfg, j) for j in page],
            "next_before": page[-1].id if more and page else None}


def service_status(cfg: ServiceConfig) -> dict[str, Any]:
    from mediasvc.service.daemon import service_pid

    pid = service_pid(cfg)
    status: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(cfg.status_file.read_text())
    return {"running": pid is not None, "pid": pid,
            "since": status.get("started") if pid else None,
            "updated": status.get("updated"), "stopping": bool(status.get("stopping")),
            "workers": cfg.workers}


def get_job(q: JobQueue, job_id: int) -> Job:
    try:
        return q.get(job_id)
    except JobError as exc:
        raise NotFound(str(exc)) from exc


def job_detail(cfg: ServiceConfig, q: JobQueue, job_id: int) -> dict[str, Any]:
    """One job with its report: the published report.json once it is finished, else the
    report as it would be written now (same function)."""
    job = get_job(q, job_id)
    report = _published_report(cfg, job) if job.state in FINAL_STATES else None
    if report is None:
        report = build_report(q, job)
    result = report.get("result") or {}
    problems = [str(p) for p in result.get("problems") or []]
    return {"job": job_summary(cfg, job), "report": report,
            "problems": [_split_problem(p) for p in problems],
            "summary": [str(s) for s in result.get("summary") or []],
            "can_cancel": job.state not in FINAL_STATES and not job.cancel_requested,
            "can_retry": job.state in (State.FAILED, State.CANCELLED, State.RETRYING)}


def _published_report(cfg: ServiceConfig, job: Job) -> dict[str, Any] | None:
    base = cfg.done if job.state is State.DONE else cfg.failed
    for folder in (base / job.name, base / f"{job.name}-{job.id}"):
        try:
            data = json.loads((folder / "report.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("uid") == job.uid:
            return data
    return None


def _split_problem(text: str) -> dict[str, str]:
    """'path/of/file.dcm: reason' -> file and reason (a problem without a file: reason only)."""
    head, sep, tail = text.partition(": ")
    if sep and " " not in head.strip():
        return {"file": head, "reason": tail}
    return {"file": "", "reason": text}


# -- folders, ingress, devices ----------------------------------------------------------------

def drop_folders(cfg: ServiceConfig) -> list[dict[str, Any]]:
    """Every drop folder with what waits in it now (not yet claimed)."""
    out = []
    folders: list[tuple[str, str | None, Path]] = [
        ("export", p, cfg.drop / "export" / p) for p in cfg.export_profiles]
    folders += [("print", n, cfg.drop / "print" / n) for n in sorted(cfg.printers)]
    folders.append(("import", None, cfg.drop / "import"))
    for kind, group, path in folders:
        try:
            waiting = sum(1 for e in path.iterdir() if not e.name.startswith("."))
        except OSError:
            waiting = 0
        out.append({"kind": kind, "group": group, "path": str(path), "waiting": waiting})
    return out


def ingress(cfg: ServiceConfig) -> dict[str, Any]:
    """Network ingress as the ingress process left it (mediasvc.ingress.state.snapshot):
    routes, studies waiting for their quiet period, Media Creation Management requests with
    their PS3.4 Annex S status, forward status per study, the listener's health."""
    from mediasvc.ingress.state import snapshot

    return snapshot(cfg)


def _device_queue(q: JobQueue, resource: str) -> dict[str, Any]:
    jobs = [j for j in q.list_jobs(ACTIVE, limit=500) if j.resource == resource]
    running = [j.id for j in jobs if j.state is State.RUNNING]
    return {"busy": bool(running), "running": running,
            "waiting": sum(1 for j in jobs if j.state is not State.RUNNING)}


def printers(cfg: ServiceConfig, q: JobQueue) -> list[dict[str, Any]]:
    seen = q.devices()
    out = []
    for name, p in sorted(cfg.printers.items()):
        last = seen.get(p.resource)
        out.append({"name": name, "ae_title": p.table.get("ae_title"),
                    "host": p.table.get("host"), "port": p.table.get("port"),
                    "color": bool(p.table.get("color", False)),
                    "last": last, **_device_queue(q, p.resource)})
    return out


BURNER_KINDS = {"drive": "drive", "ptburn": "publisher", "epson": "publisher",
                "folder": "folder", "iso": "image"}


def burners(cfg: ServiceConfig, q: JobQueue) -> list[dict[str, Any]]:
    seen = q.devices()
    return [{"name": name, "target": b.target, "kind": BURNER_KINDS[b.target.split(":")[0]],
             "copies": b.copies, "verify": b.verify, "default": name == cfg.export_target,
             "last": seen.get(b.resource), **_device_queue(q, b.resource)}
            for name, b in sorted(cfg.burners.items())]


def import_sources(cfg: ServiceConfig) -> dict[str, Any]:
    """The media the console may import: the configured devices, and what the allowed
    folders hold (one level: ISO images and folders)."""
    folders = []
    for folder in cfg.web.import_folders:
        try:
            entries = sorted(str(e) for e in folder.iterdir() if not e.name.startswith(".")
                             and (e.is_dir() or e.suffix.lower() in (".iso", ".img")))
        except OSError:
            entries = []
        folders.append({"path": str(folder), "entries": entries[:200]})
    return {"devices": list(cfg.web.import_devices), "folders": folders}


def layouts() -> list[dict[str, Any]]:
    from mediasvc.printing.layouts import film_layouts

    return [{"name": name, "format": lay.display_format.text, "film_size": lay.film_size,
             "orientation": lay.orientation} for name, lay in film_layouts().items()]


# -- the store --------------------------------------------------------------------------------

@contextlib.contextmanager
def store(cfg: ServiceConfig) -> Iterator[Store | None]:
    """The store's index, read-only; None while nothing was ever imported."""
    try:
        s = Store.open_readonly(cfg.store)
    except StoreError:
        yield None
        return
    try:
        yield s
    finally:
        s.close()


def study_summary(key: int, st: StudyRow) -> dict[str, Any]:
    d = asdict(st)
    d["key"] = key
    d["modalities"] = list(st.modalities)
    return d


def find_studies(cfg: ServiceConfig, criteria: dict[str, str], limit: int,
                 offset: int) -> dict[str, Any]:
    with store(cfg) as s:
        if s is None:
            return {"studies": [], "total": 0, "offset": offset, "limit": limit,
                    "totals": {}}
        rows, total = s.find_studies(**criteria, limit=limit, offset=offset)
        return {"studies": [study_summary(k, st) for k, st in rows], "total": total,
                "offset": offset, "limit": limit, "totals": s.totals()}


def patients(cfg: ServiceConfig, limit: int, offset: int) -> dict[str, Any]:
    with store(cfg) as s:
        if s is None:
            return {"patients": [], "total": 0, "offset": offset, "limit": limit}
        rows, total = s.patients_page(limit, offset)
        return {"patients": rows, "total": total, "offset": offset, "limit": limit}


def study_detail(cfg: ServiceConfig, key: int) -> dict[str, Any]:
    with store(cfg) as s:
        st = s.study_by_key(key) if s is not None else None
        if s is None or st is None:
            raise NotFound(f"no study {key} in the store")
        series = [{**asdict(se), "key": k} for k, se in s.series_keys(st.study_uid)]
        return {"study": study_summary(key, st), "series": series}


def mds_report(cfg: ServiceConfig, key: int, lang: str = "en") -> list[dict[str, Any]]:
    """The study's minimum data set, as `mediasvc mds --study-uid UID` reports it."""
    from mediasvc.store import mds_report as rep
    from mediasvc.store.mds_def import load_definition

    definition = load_definition()
    if lang not in definition.languages:
        raise ValueError(f"no labels in language {lang!r} (languages: "
                         f"{', '.join(definition.languages)})")
    with store(cfg) as s:
        st = s.study_by_key(key) if s is not None else None
        if s is None or st is None:
            raise NotFound(f"no study {key} in the store")
        studies = rep.studies_from_store(s, st.study_uid)
    return rep.build_report(studies, definition, lang)


def mds_csv(report: list[dict[str, Any]]) -> str:
    from mediasvc.store import mds_report as rep

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rep.CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rep.report_rows(report))
    return out.getvalue()


def series_files(cfg: ServiceConfig, key: int) -> list[Path]:
    with store(cfg) as s:
        se = s.series_by_key(key) if s is not None else None
        if s is None or se is None:
            raise NotFound(f"no series {key} in the store")
        return [i.path for i in s.instances_of(se.series_uid)]


def study_files(cfg: ServiceConfig, key: int, series: list[int] | None) -> list[Path]:
    """The stored files of a study (or of some of its series), in series and instance
    order: what a print of the study sends."""
    with store(cfg) as s:
        st = s.study_by_key(key) if s is not None else None
        if s is None or st is None:
            raise NotFound(f"no study {key} in the store")
        chosen = [se for k, se in s.series_keys(st.study_uid) if series is None or k in series]
        if series is not None and len(chosen) != len(set(series)):
            raise NotFound(f"series {sorted(set(series))} are not all of study {key}")
        return [i.path for se in chosen for i in s.instances_of(se.series_uid)]


def thumbnail(cfg: ServiceConfig, key: int, size: int = 128) -> bytes | None:
    """A PNG of the series' middle image, from the File-set Creator's icon renderer
    (fileset/icons.py), cached under run/thumbs/ by the file's checksum (store files never
    change). None when the series has no image that renders."""
    with store(cfg) as s:
        se = s.series_by_key(key) if s is not None else None
        if s is None or se is None:
            raise NotFound(f"no series {key} in the store")
        instances = s.instances_of(se.series_uid)
    cache = cfg.run / "thumbs"
    for inst in instances[len(instances) // 2:] + instances[:len(instances) // 2]:
        hit = cache / f"{inst.checksum}-{size}.png"
        with contextlib.suppress(OSError):
            return hit.read_bytes()
        png = _render_png(inst.path, size)
        if png is not None:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = hit.with_name(f".{hit.name}.{time.monotonic_ns()}")
            with contextlib.suppress(OSError):
                tmp.write_bytes(png)
                tmp.replace(hit)
            return png
    return None


def _render_png(path: Path, size: int) -> bytes | None:
    import pydicom
    from PIL import Image

    from mediasvc.fileset.icons import render_gray8

    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:
            return None
        gray = Image.fromarray(render_gray8(ds))
    except Exception:  # a file that does not render gets no thumbnail, not an error page
        return None
    gray.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    gray.save(out, format="PNG")
    return out.getvalue()
