"""`mediasvc import MEDIA`: read a patient's disc, USB stick or ISO image into the local store."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mediasvc.errors import UsageError
from mediasvc.store.index import DEFAULT_ROOT, Store

if TYPE_CHECKING:
    from mediasvc.store.importer import ImportReport
    from mediasvc.store.reconcile import Reconciler


def default_store() -> Path:
    return Path(os.environ.get("MEDIASVC_STORE", str(DEFAULT_ROOT)))


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=None, metavar="DIR",
                        help=f"store root (default: $MEDIASVC_STORE or ./{DEFAULT_ROOT})")


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="import a medium (folder, ISO image, drive) into the store",
                       description="Import every instance of a DICOM medium into the local "
                       "store: through its DICOMDIR, or by scanning it when there is none.")
    p.add_argument("media", type=Path, metavar="MEDIA",
                   help="a folder (mounted disc, USB stick), an ISO image file or a block device")
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--label", help="medium label to record (default: volume ID / folder name)")
    rec = p.add_argument_group("reconciliation (IHE Import Reconciliation Workflow)")
    rec.add_argument("--patient-id", help="coerce this local Patient ID on every instance")
    rec.add_argument("--patient-name", help="... and this Patient's Name (with --patient-id)")
    rec.add_argument("--issuer", help="... and this Issuer of Patient ID (with --patient-id)")
    rec.add_argument("--mapping", type=Path, metavar="FILE",
                     help="TOML or CSV file mapping old Patient IDs to local identities")
    p.add_argument("--forward", metavar="AE@HOST:PORT",
                   help="send the medium's instances to this PACS by C-STORE after the import")
    p.add_argument("--retries", type=int, default=3, help="forward retries (default 3)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="service configuration: its store and its [forward] PACS apply "
                   "(what the udev unit uses, so a disc inserted is forwarded like a drop)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _load_importer() -> None:
    """Import the importer (pydicom with it) without ``requests``: pydicom's data manager
    imports it if installed (0.05-0.1 s here, a tenth of the start-up) only to download
    pydicom's own test files, which an import never does. Only when nothing has imported
    either yet (the CLI process); afterwards ``requests`` can be imported as usual."""
    if "requests" in sys.modules or "pydicom" in sys.modules:
        import mediasvc.store.importer  # noqa: F401
        return
    sys.modules["requests"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import mediasvc.store.importer  # noqa: F401
    finally:
        if sys.modules.get("requests", 0) is None:
            del sys.modules["requests"]


def reconciler_from(args: argparse.Namespace) -> Reconciler | None:
    from mediasvc.store.reconcile import Identity, Reconciler, load_mapping

    if args.mapping and args.patient_id:
        raise UsageError("give either --patient-id or --mapping, not both")
    if (args.patient_name or args.issuer) and not args.patient_id:
        raise UsageError("--patient-name and --issuer need --patient-id")
    if args.patient_id:
        return Reconciler(fixed=Identity(args.patient_id, args.patient_name, args.issuer))
    if args.mapping:
        return Reconciler(mapping=load_mapping(args.mapping))
    return None


class ProgressBar:
    """A one-line bar on a terminal's stderr; silent when stderr is not a TTY."""

    def __init__(self, stream: TextIO = sys.stderr, min_seconds: float = 1.0) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.start = time.monotonic()
        self.min_seconds = min_seconds   # short imports show no bar at all
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.start < self.min_seconds:
            return
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(now - self.start, 1e-6)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                          f"files, {rate:.0f}/s ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    _load_importer()
    from mediasvc.store.importer import import_media

    reconciler = reconciler_from(args)
    dest = None
    if args.config is not None:
        from mediasvc.service.config import load_service_config

        svc = load_service_config(args.config)
        args.store = args.store or svc.store
        if not args.forward and svc.forward is not None:
            args.forward = svc.forward.destination
    if args.forward:
        # Imported here: pynetdicom costs a tenth of a second of start-up an import without
        # --forward does not need.
        from mediasvc.store.forward import Destination, forward, raise_if_down
        dest = Destination.parse(args.forward)
    bar = ProgressBar() if not args.no_progress else None
    with Store.open(args.store or default_store()) as store:
        try:
            report = import_media(store, args.media, reconciler=reconciler, label=args.label,
                                  progress=bar)
        finally:
            if bar is not None:
                bar.close()
        fwd = None
        if dest is not None:
            fwd = forward(store, dest, report.instance_ids(), retries=args.retries)
        if args.json:
            out = report.to_dict()
            if fwd is not None:
                out["forward"] = fwd.to_dict()
            sys.stdout.write(report_json(out))
        else:
            print_report(report, verbose=args.verbose)
            if fwd is not None:
                print(f"forward to {fwd.destination}: {len(fwd.sent)} sent, "
                      f"{len(fwd.failed)} failed, {fwd.pending} pending")
                for f in fwd.failed:
                    print(f"  failed    {f['sop_instance_uid']}: {f['reason']}")
        if fwd is not None:
            raise_if_down(fwd, str(store.root))
            if not fwd.ok:
                return 1
    return 0 if report.clean else 1


def report_json(out: dict[str, Any]) -> str:
    """The report as indented JSON, each instance on one line: json's C encoder serves only
    unindented output, and its Python one took 0.07 s for 2,000 instances, after the import."""
    rest = {k: v for k, v in out.items() if k != "instances"}
    rest["instances"] = []
    text = json.dumps(rest, indent=2)
    rows = ",\n".join(f"    {json.dumps(i)}" for i in out.get("instances", []))
    if rows:
        assert text.endswith('"instances": []\n}')
        text = text[: -len("[]\n}")] + f"[\n{rows}\n  ]\n}}"
    return text + "\n"


def print_report(report: ImportReport, verbose: int = 0) -> None:
    from mediasvc.store.importer import NOT_READ

    where = f"label {report.medium_label!r}"
    if report.fileset_id:
        where += f", file-set ID {report.fileset_id!r}"
    how = {"dicomdir": "through its DICOMDIR", "scan": "by scanning the medium"}.get(
        report.method.lower(), f"by {report.method}")
    print(f"import of {report.media} ({where}) {how} into {report.store}")
    counts = report.counts()
    print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for problem in report.problems:
        print(f"  problem   {problem}")
    listed = [o for o in report.outcomes
              if verbose >= 1 or o.status not in ("imported", "duplicate")]
    limit = len(listed) if verbose >= 1 else 50
    for o in listed[:limit]:
        reason = f": {o.reason}" if o.reason and o.reason != o.status else ""
        print(f"  {o.status:<9} {o.source}{reason}")
    if len(listed) > limit:
        print(f"  ... and {len(listed) - limit} more (all of them with -v or --json)")
    not_read = sum(counts[s] for s in NOT_READ)
    if report.complete:
        print("complete: every referenced file was read")
    else:
        print(f"INCOMPLETE: {not_read} referenced file(s) could not be read; "
              "keep the medium and check it")
