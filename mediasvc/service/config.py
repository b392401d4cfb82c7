"""The service configuration (TOML, validated through mediasvc.config.Table) and job.toml.

Without a file the embedded default applies: everything under one root (``./var`` or
``--root``), so that ``mediasvc serve`` alone starts a working service. A file may set the root
and override any part; relative paths are taken from the root. systemd/mediasvc.example.toml
shows every key.

Layout under the root (issue 6)::

    drop/export/<PROFILE>/<job>/   a study to put on a medium of that profile
    drop/print/<PRINTER>/<job>/    images to print on that printer
    drop/import/<ISO or folder>    a medium to import into the store
    spool/<uid>/                   claimed jobs (input/, work/, out/) until finished
    done/<job>/  failed/<job>/     results, each with report.json and report.txt
    store/                         the local store (import)
    mediasvc.db                    the job queue (SQLite, WAL)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediasvc.config import Table, load_toml
from mediasvc.errors import ConfigError
from mediasvc.jobqueue import Priority
from mediasvc.service.ingress_config import Forward, Ingress, parse_forward, parse_ingress
from mediasvc.service.webconfig import WebConfig, parse_web

OBSERVERS = ("auto", "inotify", "polling")
BUILTIN_TARGETS = ("iso", "staging")
TARGET_SCHEMES = ("iso", "folder", "drive", "ptburn", "epson")


@dataclass(frozen=True)
class Burner:
    """A named burn target: ``drive:/dev/sr0``, ``ptburn:/hot``, ``epson:/hot``, ``folder:/x``."""

    name: str
    target: str
    copies: int = 1
    verify: bool = True

    @property
    def resource(self) -> str:
        # One burn per drive / publisher at a time: the resource is the device or hot folder.
        return f"burner:{self.target}"


@dataclass(frozen=True)
class Printer:
    """What the service needs to know of a [printers.NAME] table; the printing package parses
    the rest (capabilities) with its own ``parse_printers`` when it is installed."""

    name: str
    table: dict[str, Any]

    @property
    def resource(self) -> str:
        return f"printer:{self.name}"  # one association per printer at a time


@dataclass(frozen=True)
class ServiceConfig:
    root: Path
    drop: Path
    spool: Path
    done: Path
    failed: Path
    store: Path
    db: Path
    run: Path
    source: Path | None = None            # the config file, None for the embedded default
    observer: str = "auto"
    settle_seconds: float = 10.0
    tick_seconds: float = 0.5
    rescan_seconds: float = 30.0
    workers: int = 2
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 900.0
    max_interruptions: int = 10
    job_timeout_seconds: float = 4 * 3600.0
    keep_input: bool = False
    export_target: str = "iso"
    export_profiles: tuple[str, ...] = ()
    export_link: str = "hardlink"
    on_reject: str = "fail"
    institution: str = ""
    contact: str = ""
    burners: dict[str, Burner] = field(default_factory=dict)
    printers: dict[str, Printer] = field(default_factory=dict)
    printers_table: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    print_layout: str | None = None
    print_on_interrupted: str = "fail"
    web: WebConfig = field(default_factory=WebConfig)
    ingress: Ingress | None = None          # [ingress]: the DICOM listener (ingress package)
    forward: Forward | None = None          # [forward]: service imports go on to this PACS

    @property
    def ingress_dir(self) -> Path:
        # Under the spool's parent folder so that a claimed study moves by rename(2).
        return self.spool.parent / "ingress"

    @property
    def lock_file(self) -> Path:
        return self.run / "mediasvc.lock"

    @property
    def status_file(self) -> Path:
        return self.run / "status.json"

    def dirs(self) -> list[Path]:
        return [self.drop / "export", self.drop / "print", self.drop / "import", self.spool,
                self.done, self.failed, self.store, self.run, self.db.parent]


def default_root() -> Path:
    return Path("var")


def load_service_config(path: Path | None = None, root: Path | None = None) -> ServiceConfig:
    """Read the config file (or the embedded default); ``root`` (--root) overrides its root."""
    if path is None:
        return _parse(Table({}, Path("<embedded default>")), None, root)
    return _parse(load_toml(path), path, root)


_TOP = ("root", "paths", "watch", "jobs", "export", "import", "print", "burners", "printers",
        "limits", "web", "ingress", "forward")


def _parse(t: Table, source: Path | None, root_override: Path | None) -> ServiceConfig:
    t.check_keys(_TOP)
    base = Path(t.str("root", str(default_root())))
    if source is not None and not base.is_absolute():
        base = source.parent / base
    root = (root_override if root_override is not None else base).absolute()

    p = t.table("paths")
    p.check_keys(("drop", "spool", "done", "failed", "store", "db", "run"))

    def path(key: str, default: str) -> Path:
        value = Path(p.str(key, default))
        return value if value.is_absolute() else root / value

    w = t.table("watch")
    w.check_keys(("observer", "settle_seconds", "tick_seconds", "rescan_seconds"))
    j = t.table("jobs")
    j.check_keys(("workers", "max_attempts", "retry_base_seconds", "retry_cap_seconds",
                  "max_interruptions", "timeout_seconds", "keep_input"))
    e = t.table("export")
    e.check_keys(("target", "profiles", "link", "on_reject", "institution", "contact"))
    i = t.table("import")
    i.check_keys(())
    pr = t.table("print")
    pr.check_keys(("layout", "on_interrupted"))

    burners = {}
    bt = t.table("burners")
    for name in list(bt.data):
        b = bt.table(name)
        b.check_keys(("target", "copies", "verify"))
        target = b.str("target")
        if target.split(":", 1)[0] not in TARGET_SCHEMES or ":" not in target:
            raise b.error("target", "must be drive:/dev/srN, ptburn:DIR, epson:DIR, folder:DIR"
                          " or iso:DIR")
        burners[name] = Burner(name, target, b.int("copies", 1, min=1, max=99),
                               b.bool("verify", True))

    pt = t.table("printers")
    printers = {}
    for name in list(pt.data):
        sub = pt.table(name)
        for key in ("ae_title", "host", "port"):
            if key not in sub:
                raise sub.error(key, "required key is missing")
        printers[name] = Printer(name, dict(sub.data))
    _check_printers(pt)

    lt = t.table("limits")
    limits = {key: lt.int(key, min=1) for key in list(lt.data)}

    known = _profile_ids()
    profiles = tuple(e.str_list("profiles", sorted(known)))
    for prof in profiles:
        if prof not in known:
            raise e.error("profiles", f"unknown media profile {prof!r} (known: "
                          f"{', '.join(sorted(known))})")
    target = e.str("target", "iso")
    if target not in BUILTIN_TARGETS and target not in burners:
        raise e.error("target", "must be iso, staging or the name of a [burners.NAME] table")

    ingress = parse_ingress(t, profiles=set(profiles), burners=set(burners), printers=set(printers),
                            builtin_targets=BUILTIN_TARGETS, default_target=target)
    return ServiceConfig(
        ingress=ingress, forward=parse_forward(t),
        root=root, source=source,
        drop=path("drop", "drop"), spool=path("spool", "spool"), done=path("done", "done"),
        failed=path("failed", "failed"), store=path("store", "store"),
        db=path("db", "mediasvc.db"), run=path("run", "run"),
        observer=w.str("observer", "auto", choices=OBSERVERS),
        settle_seconds=w.float("settle_seconds", 10.0, min=0.0, max=3600.0),
        tick_seconds=w.float("tick_seconds", 0.5, min=0.05, max=60.0),
        rescan_seconds=w.float("rescan_seconds", 30.0, min=1.0),
        workers=j.int("workers", 2, min=1, max=32),
        max_attempts=j.int("max_attempts", 5, min=1, max=100),
        retry_base_seconds=j.float("retry_base_seconds", 30.0, min=0.0),
        retry_cap_seconds=j.float("retry_cap_seconds", 900.0, min=0.0),
        max_interruptions=j.int("max_interruptions", 10, min=1),
        job_timeout_seconds=j.float("timeout_seconds", 4 * 3600.0, min=1.0),
        keep_input=j.bool("keep_input", False),
        export_target=target, export_profiles=profiles,
        export_link=e.str("link", "hardlink", choices=("copy", "hardlink", "reflink")),
        on_reject=e.str("on_reject", "fail", choices=("fail", "skip")),
        institution=e.str("institution", ""), contact=e.str("contact", ""),
        burners=burners, printers=printers, printers_table=dict(pt.data), limits=limits,
        print_layout=pr.str("layout", None),
        print_on_interrupted=pr.str("on_interrupted", "fail", choices=("fail", "resume")),
        web=parse_web(t.table("web"), root, [b.target.split(":", 1)[1] for b in burners.values()
                                             if b.target.startswith("drive:")]),
    )


def _profile_ids() -> set[str]:
    from mediasvc.profiles import profiles_dir
    return {p.stem for p in (profiles_dir() / "media").glob("*.toml")}


def _check_printers(pt: Table) -> None:
    """Validate [printers.*] with the printing package's parser when it is there."""
    import importlib

    try:
        module = importlib.import_module("mediasvc.printing.printers")
    except ImportError:
        return
    parse = getattr(module, "parse_printers", None)
    if parse is not None:
        parse(pt)


# -- job.toml ---------------------------------------------------------------------------------

JOB_KEYS = {
    "export": ("label", "target", "copies", "web", "priority", "fileset_id", "verify"),
    "print": ("priority", "layout", "format", "film_size", "copies", "color", "text", "label"),
    "import": ("priority", "label"),
}


@dataclass(frozen=True)
class JobOptions:
    values: dict[str, Any]
    priority: Priority


def parse_job_toml(path: Path, kind: str) -> JobOptions:
    """An optional job.toml in a job folder; unknown keys fail the job naming the key."""
    t = load_toml(path)
    t.check_keys(JOB_KEYS[kind])
    values: dict[str, Any] = {}
    for key in JOB_KEYS[kind]:
        if key not in t:
            continue
        if key in ("copies",):
            values[key] = t.int(key, min=1, max=99)
        elif key in ("web", "verify", "color"):
            values[key] = t.bool(key)
        elif key == "priority":
            values[key] = t.str(key, choices=("HIGH", "MED", "LOW"))
        elif key == "fileset_id":
            values[key] = t.str(key, pattern=r"[A-Z0-9_ ]{1,16}")
        else:
            values[key] = t.str(key)
    return JobOptions(values, Priority.parse(values.get("priority", "MED")))


def check_job_options(cfg: ServiceConfig, kind: str, opts: JobOptions, path: Path) -> None:
    """Cross-checks against the service config (a burner that does not exist, ...)."""
    target = opts.values.get("target")
    if kind == "export" and target is not None and target not in BUILTIN_TARGETS \
            and target not in cfg.burners:
        raise ConfigError(path, "target", target, "must be iso, staging or a configured burner"
                          f" ({', '.join(sorted(cfg.burners)) or 'none configured'})")
