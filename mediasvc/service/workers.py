"""Job handlers: one per job kind, each calling one function of the package that does the work.

They run inside a runner process (service/runner.py), one per job run, never in the daemon:
a crash, a hang or a memory blow-up in a decoder costs one job run, not the service; a
cancelled or timed-out job is stopped by killing its process group; the daemon itself stays
small (it never imports pydicom or pynetdicom).

Idempotence (the queue redoes a job whose process died): every step writes under a temp name
and renames when complete, then records the step in the queue (``ctx.step``). A redo skips the
recorded steps and throws away the leftovers of an unrecorded one. Steps whose effect a user
would see twice are guarded:
- export: the file-set and the ISO image are files in the spool (temp + rename), redone
  freely. A burn to a drive is recorded as started before it starts; a redo that finds it
  started but not finished does not burn a second disc: it fails the job, asking the operator
  to check the drive (`mediasvc jobs retry` burns again on purpose). A burn to a disc
  publisher is redone: the publisher's claim file (media/burners/publisher.py) makes the redo
  withdraw the job file the publisher had not taken yet and submit it again, or follow the one
  it had taken; volumes already burned are recorded one by one and skipped.
- print: the same rule for the films: a print interrupted after it started is not sent again
  automatically (it may have printed); the job fails with that reason and can be retried.
- import: the store deduplicates by SOP Instance UID and is crash-consistent (store/index.py),
  so a redo adds no row twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mediasvc.durable import fsync_dir
from mediasvc.errors import InputError, JobError, MediasvcError, RejectedFile
from mediasvc.jobqueue import Job, JobQueue
from mediasvc.service.config import ServiceConfig
from mediasvc.service.spool import PROGRESS, JobInput

log = logging.getLogger(__name__)


class TransientError(MediasvcError):
    """A fault that a later attempt may not meet (a drive busy with another program)."""

    transient = True


def _busy(exc: BaseException) -> bool:
    """xorriso's words for a drive held by another process ("Device or resource busy")."""
    import errno

    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.EBUSY:
        return True
    return "busy" in str(exc).lower()


class Interrupted(MediasvcError):
    """A step with a visible effect was interrupted; redoing it might duplicate that effect."""


@dataclass
class JobContext:
    cfg: ServiceConfig
    queue: JobQueue
    job: Job
    owner: str
    entry: Path                  # spool/<uid>
    inp: JobInput
    steps: dict[str, Any] = field(default_factory=dict)
    # Every rejected or unread file of a job that fails (its error names only the first few):
    # the runner puts them into the job's result, so that the report lists them all.
    problems: list[str] = field(default_factory=list)
    _progress_at: float = 0.0

    @property
    def work(self) -> Path:
        p = self.entry / "work"
        p.mkdir(exist_ok=True)
        return p

    @property
    def out(self) -> Path:
        p = self.entry / "out"
        p.mkdir(exist_ok=True)
        return p

    def step(self, name: str, value: Any = True) -> None:
        """Record a finished step: the safe point a redo starts from."""
        self.queue.record_step(self.job.id, self.owner, name, value)
        self.steps[name] = value

    def clear_step(self, name: str) -> None:
        self.queue.clear_step(self.job.id, self.owner, name)
        self.steps.pop(name, None)

    def option(self, key: str, default: Any = None) -> Any:
        return self.inp.options.get(key, default)

    def progress(self, phase: str, done: int, total: int) -> None:
        """Where the run is, for the console's progress bar (spool/<uid>/progress.json).
        Not durable, it is worth nothing after a crash; written at most twice a second."""
        now = time.monotonic()
        if done < total and now - self._progress_at < 0.5:
            return
        self._progress_at = now
        tmp = self.entry / f".{PROGRESS}.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"phase": phase, "done": done, "total": total}))
            os.replace(tmp, self.entry / PROGRESS)

    def device(self, resource: str, state: str, detail: str = "",
               events: list[str] | None = None) -> None:
        """Record what this job saw of a printer or burner (the console shows the last one);
        never a reason for the job to fail."""
        try:
            self.queue.set_device(resource, state, detail, events=events or [],
                                  job_id=self.job.id)
        except JobError as exc:
            log.warning("job %d: cannot record the state of %s: %s", self.job.id, resource, exc)


def _fresh(path: Path) -> Path:
    """An empty temp folder (leftovers of an interrupted run are thrown away)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _publish(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)
    fsync_dir(final.parent)


# -- export: study -> file-set (PDI staging tree) -> ISO image / staging tree / burner --------

def run_export(ctx: JobContext) -> dict[str, Any]:
    profile_id = ctx.job.payload["group"]
    target = ctx.option("target", ctx.cfg.export_target)
    staging = ctx.work / "staging"
    result: dict[str, Any] = {"profile": profile_id, "target": target}
    summary: list[str] = []
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ctx.progress("file-set", 0, 2)
    if target == "iso" and "fileset" not in ctx.steps:
        # One pass (media/oneshot.py): headers scanned once, the image(s) read the sources
        # where they lie; no staging tree, whatever spanning or transcoding the job needs.
        fs, names = _export_iso(ctx, profile_id)
        timings["iso_seconds"] = round(time.perf_counter() - t0, 3)
        ctx.step("fileset", fs)
        ctx.step("output", names)
    elif "fileset" not in ctx.steps:
        for old in ctx.work.glob("staging.tmp*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp = _fresh(ctx.work / f"staging.tmp{ctx.job.attempts}")
        fs = _export_fileset(ctx, profile_id, tmp)
        timings["fileset_seconds"] = round(time.perf_counter() - t0, 3)
        if staging.exists():
            shutil.rmtree(staging)
        _publish(tmp, staging)
        ctx.step("fileset", fs)
    fs = ctx.steps["fileset"]
    result["fileset"] = fs
    summary.append(f"file-set {fs.get('fileset_id', '')}: {fs.get('placed', 0)} placed, "
                   f"{fs.get('transcoded', 0)} transcoded, {fs.get('duplicate', 0)} duplicate "
                   f"({fs.get('volumes', 1)} volume(s), profile {profile_id})")

    ctx.progress("staging tree" if target == "staging" else "ISO image" if target == "iso"
                 else "burn", 1, 2)
    if target == "staging":
        if "output" not in ctx.steps:
            if staging.exists() or not (ctx.out / "media").exists():  # else: moved, then died
                _publish(staging, ctx.out / "media")
            ctx.step("output", ["media"])
        result["outputs"] = ctx.steps["output"]
        summary.append("staging tree: media/")
    elif target == "iso":
        if "output" not in ctx.steps:  # a job staged by an earlier version, resumed
            t1 = time.perf_counter()
            names = _burn_iso(ctx, staging)
            timings["iso_seconds"] = round(time.perf_counter() - t1, 3)
            ctx.step("output", names)
        result["outputs"] = ctx.steps["output"]
        how = f" (one pass, {fs['one_pass']})" if fs.get("one_pass") else ""
        summary += [f"ISO image: {n}{how}" for n in ctx.steps["output"]]
    else:
        burner = ctx.cfg.burners[target]
        if "burned" not in ctx.steps:
            if "burn_started" in ctx.steps and not _adopts_interrupted(burner.target):
                raise Interrupted(
                    f"the burn to {burner.target} was interrupted (the service stopped while "
                    "it ran): check the drive or publisher for a partly written disc; "
                    "`mediasvc jobs retry` burns again")
            ctx.step("burn_started")
            try:
                burned = _burn_to(ctx, staging, burner.target,
                                  ctx.option("copies", burner.copies),
                                  ctx.option("verify", burner.verify))
            except MediasvcError as exc:
                # The backend stopped and said why: nothing is in doubt (a drive refuses a
                # disc that is not blank, so a half-written one is never written over).
                ctx.device(burner.resource, "error", str(exc))
                ctx.clear_step("burn_started")
                if _busy(exc):
                    raise TransientError(f"{exc} (the drive is busy; retried)") from exc
                raise
            ctx.device(burner.resource, "ok", f"job {ctx.job.id} burned")
            ctx.step("burned", burned)
        result["burn"] = ctx.steps["burned"]
        summary.append(f"burned to {burner.target}")
    result["summary"] = summary
    result["timings"] = timings
    result["problems"] = ctx.inp.notes + fs.get("notes", [])
    return result


def _export_fileset(ctx: JobContext, profile_id: str, out: Path) -> dict[str, Any]:
    """produce() of media/production.py: the PDI volume(s), as `mediasvc export` writes them
    (file-set, README.TXT, INDEX.HTM, optional web content, spanning); rejected inputs refused."""
    from mediasvc.media.production import produce
    from mediasvc.profiles import media_profile

    profile = media_profile(profile_id)
    rep = produce(ctx.inp.files, out, profile, link=ctx.cfg.export_link,
                  **_export_options(ctx))
    return _judge(ctx, profile_id, rep)


def _export_options(ctx: JobContext) -> dict[str, Any]:
    from mediasvc.media.pdi import SiteInfo

    return {"fileset_id": ctx.option("fileset_id"), "web": bool(ctx.option("web", False)),
            "site": SiteInfo(ctx.cfg.institution, ctx.cfg.contact)}


def _judge(ctx: JobContext, profile_id: str, rep: Any) -> dict[str, Any]:
    """The file-set step's record of a ProductionReport; RejectedFile when the job's
    on_reject policy (or nothing accepted) refuses it."""
    verdicts = rep.verdicts
    rejected = [f"{_rel(ctx, v.path)}: {v.reason}" for v in verdicts if v.status == "rejected"]
    if rejected and (ctx.cfg.on_reject == "fail" or not rep.volumes):
        ctx.problems = ctx.inp.notes + rejected + rep.notes
        shown = "; ".join(rejected[:5]) + (f"; and {len(rejected) - 5} more"
                                            if len(rejected) > 5 else "")
        raise RejectedFile(ctx.job.payload["origin"],
                           f"{len(rejected)} of {len(ctx.inp.files)} files rejected for "
                           f"{profile_id}: {shown}")
    counts = {s: rep.count(s) for s in ("placed", "transcoded", "duplicate", "rejected")}
    return {"fileset_id": ",".join(v.fileset_id for v in rep.volumes), **counts,
            "volumes": len(rep.volumes), "splits": rep.split_notes,
            "notes": rejected + rep.notes,
            "transcoded_files": [f"{_rel(ctx, v.path)}: {v.reason}" for v in verdicts
                                 if v.status == "transcoded"]}


def _burn_iso(ctx: JobContext, staging: Path) -> list[str]:
    """ISO image(s) into out/, then renamed to the job's name (make_iso writes NAME.part and
    renames it when complete). The images are made under a neutral name first: job folder
    names are sometimes built from patient names and must not reach the INFO logs."""
    from mediasvc.media.burners import parse_target
    from mediasvc.media.burning import burn

    made = _attempt_folder(ctx)
    report = burn(staging, parse_target(f"iso:{made / 'DISC.iso'}"), verify=True)
    return _move_images(ctx, [Path(c.target.split(":", 1)[1]) for c in report.copies])


def _attempt_folder(ctx: JobContext) -> Path:
    """A folder per attempt: nothing left of an interrupted attempt can write into this one."""
    for old in ctx.work.glob("iso.*"):
        shutil.rmtree(old, ignore_errors=True)
    made = ctx.work / f"iso.{ctx.job.attempts}"
    made.mkdir()
    return made


def _export_iso(ctx: JobContext, profile_id: str) -> tuple[dict[str, Any], list[str]]:
    """Sources -> ISO image(s) in one pass (export_iso of media/oneshot.py), each read back
    against its sources; the file-set step's record and the images' names in out/."""
    from mediasvc.media.oneshot import export_iso
    from mediasvc.profiles import media_profile

    def accept(rep: Any) -> None:  # before any image is written: refused inputs stop here
        _judge(ctx, profile_id, rep)

    made = _attempt_folder(ctx)
    done = export_iso(ctx.inp.files, made / "DISC.iso", media_profile(profile_id), verify=True,
                      accept=accept, **_export_options(ctx))
    fs = {**_judge(ctx, profile_id, done.report), "one_pass": done.writer}
    return fs, _move_images(ctx, [i.path for i in done.images])


def _move_images(ctx: JobContext, images: list[Path]) -> list[str]:
    """The images (DISC.iso, DISC-VOL001.iso ...) into out/ under the job's name."""
    label = _safe_name(ctx.option("label") or ctx.job.name)
    names = []
    for image in images:
        final = label + image.name.removeprefix("DISC")
        os.replace(image, ctx.out / final)
        names.append(final)
    fsync_dir(ctx.out)
    return names


def _adopts_interrupted(target: str) -> bool:
    """A disc publisher keeps a claim per volume (burners/publisher.py): a burn cut off by a
    crash is run again and then withdraws the job file the publisher had not taken, or
    follows the one it had; no second disc. A drive has no such record: Interrupted."""
    return target.partition(":")[0] in ("ptburn", "epson")


def _burn_to(ctx: JobContext, staging: Path, target: str, copies: int,
             verify: bool) -> dict[str, Any]:
    from mediasvc.media.burners import parse_target
    from mediasvc.media.burning import burn

    # Volumes burned by an attempt that was then cut off are recorded one by one, so that a
    # redo of a spanned set burns only the volumes still to do.
    done: dict[int, dict[str, Any]] = {
        int(name.rsplit("_", 1)[1]): value for name, value in ctx.steps.items()
        if name.startswith("burned_volume_")}

    def record(entry: dict[str, Any]) -> None:
        ctx.step(f"burned_volume_{entry['volume']}", entry)
        done[int(entry["volume"])] = entry

    report = burn(staging, parse_target(target), copies=copies, verify=verify,
                  claim=f"mediasvc-job-{ctx.job.id}", skip=set(done), on_volume=record)
    return {"target": report.target, "volumes": [done[n] for n in sorted(done)]}


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep[:64] or "media"


def _rel(ctx: JobContext, path: str) -> str:
    try:
        return str(Path(path).relative_to(ctx.entry / "input"))
    except ValueError:
        return path


# -- import: ISO image or folder -> store ------------------------------------------------------

def run_import(ctx: JobContext) -> dict[str, Any]:
    """import_media() of store/importer.py; then, with [forward], the instances go on to the
    PACS (store/forward.py). Recorded as a step, so that a retry after a PACS outage (a
    transient failure: the queue's backoff) only sends what is still pending."""
    from mediasvc.store.index import Store

    if "imported" not in ctx.steps:
        with Store.open(ctx.cfg.store) as store:
            d, ids = _import(ctx, store)
        ctx.step("imported", {"result": d, "ids": ids})
    d = dict(ctx.steps["imported"]["result"])
    ctx.problems = d["problems"]
    fwd = ctx.cfg.forward
    if fwd is not None:
        from mediasvc.store.forward import Destination, forward

        with Store.open(ctx.cfg.store) as store:
            rep = forward(store, Destination.parse(fwd.destination),
                          ctx.steps["imported"]["ids"], retries=fwd.retries,
                          calling_ae=fwd.calling_ae, timeout=fwd.timeout_seconds)
        d["forward"] = rep.to_dict()
        d["summary"] = d["summary"] + [
            f"forward to {rep.destination}: {len(rep.sent)} sent, {rep.pending} pending, "
            f"{len(rep.failed)} refused"]
        d["problems"] = d["problems"] + [f"forward: {f['sop_instance_uid']}: {f['reason']}"
                                         for f in rep.failed]
        ctx.problems = d["problems"]
        if rep.pending:
            raise TransientError(
                f"imported, but the forward to {rep.destination} failed: {rep.error}; "
                f"{rep.pending} instance(s) stay queued (retried; or `mediasvc store forward "
                f"{rep.destination} --store {ctx.cfg.store}`)")
    return d


def _import(ctx: JobContext, store: Any) -> tuple[dict[str, Any], list[int]]:
    from mediasvc.store.importer import import_media

    meta = ctx.job.payload
    if meta.get("source"):  # a device or a path the console named, read in place (resolved)
        media, label = ctx.inp.files[0], ctx.option("label")
    else:
        media = ctx.entry / "input" / meta["name"] if meta.get("is_file") \
            else ctx.entry / "input"
        label = ctx.option("label") or meta["name"]

    def progress(done: int, total: int) -> None:
        ctx.progress("import", done, total)

    report = import_media(store, media, label=label, progress=progress)
    d = report.to_dict()
    counts = d["counts"]
    d.pop("instances", None)
    d["summary"] = [f"import ({report.method}): " + ", ".join(f"{n} {s}" for s, n in
                                                              counts.items() if n)]
    not_read = [f"{o.source}: {o.status} {o.reason}".strip() for o in report.outcomes
                if o.status not in ("imported", "duplicate")]
    d["problems"] = ctx.inp.notes + report.problems + not_read
    ctx.problems = d["problems"]
    if not report.complete:
        raise InputError(meta["origin"], "incomplete import: "
                         + "; ".join(not_read[:5]) + (" ..." if len(not_read) > 5 else ""))
    if counts.get("imported", 0) + counts.get("duplicate", 0) + counts.get("conflict", 0) == 0:
        raise InputError(meta["origin"], "no DICOM instance could be imported: "
                         + "; ".join((report.problems + not_read)[:5]))
    return d, report.instance_ids()


# -- print: images -> films on a Print SCP -----------------------------------------------------

def run_print(ctx: JobContext) -> dict[str, Any]:
    """print_request() of printing/job.py (after its prepare(): the check and the rendering,
    no network); films already printed are skipped on a resume."""
    from mediasvc.config import Table
    from mediasvc.printing.job import PrintRequest, prepare, print_request
    from mediasvc.printing.printers import parse_printers

    name = ctx.job.payload["group"]
    if "printed" not in ctx.steps:
        done_films = int(ctx.steps.get("films_printed", 0))
        if "print_started" in ctx.steps and ctx.cfg.print_on_interrupted == "fail":
            raise Interrupted(
                f"printing to {name} was interrupted while a film was being sent "
                f"({done_films} film(s) confirmed printed): the next film may have printed; "
                "check the printer, then `mediasvc jobs retry` prints the remaining films")
        source = ctx.cfg.source or Path("<embedded default>")
        printer = parse_printers(Table(ctx.cfg.printers_table, source, "printers."))[name]
        o = ctx.inp.options
        request = PrintRequest(
            files=tuple(str(f) for f in ctx.inp.files if f.name != "job.toml"),
            layout=o.get("layout"), format=o.get("format"), film_size=o.get("film_size"),
            copies=o.get("copies"), priority=o.get("priority"), color=bool(o.get("color")),
            text=o.get("text", ""), label=o.get("label", ""))
        if request.layout is None and request.format is None:
            request = replace(request, layout=ctx.cfg.print_layout)

        # Rendering first (no network): only the association itself is "in flight".
        prepared = prepare(request, printer)

        def on_film(n: int) -> None:
            ctx.step("films_printed", n)
            ctx.progress("films", n, len(prepared.films))

        ctx.progress("films", done_films, len(prepared.films))
        ctx.step("print_started")
        resource = ctx.cfg.printers[name].resource
        try:
            res = print_request(request, printer, skip_films=done_films, on_film=on_film,
                                prepared=prepared)
        except MediasvcError as exc:
            # The SCU stopped and said why (down, busy, refused, bad input): nothing is in
            # doubt; a transient PeerError is retried later, the rest fails the job.
            ctx.device(resource, "error", str(exc))
            ctx.clear_step("print_started")
            raise
        # N-GET Printer (PS3.4 H.4.6.2.1) at the start, N-EVENT-REPORTs during the job.
        ctx.device(resource, res.printer_status or "NORMAL", res.printer_status_info,
                   res.events)
        out = res.as_dict()
        out["films"] = int(ctx.steps.get("films_printed", 0))
        ctx.step("printed", out)
    result = dict(ctx.steps["printed"])
    warnings = result.get("warnings") or []
    result["summary"] = [f"printed {result.get('films', 0)} film(s) on {name}"
                         + (f" with {len(warnings)} warning(s)" if warnings else "")]
    result["problems"] = ctx.inp.notes + [str(w) for w in warnings]
    return result


HANDLERS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "export": run_export,
    "import": run_import,
    "print": run_print,
}
