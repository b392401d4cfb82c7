"""The network parts of the service configuration: [ingress], [[ingress.route]], [ingress.tls],
[ingress.mcm] and [forward] (docs/service.md, "Network ingress").

Parsed with the rest of the service configuration (service/config.py), so that a bad route
fails `mediasvc serve` at start naming the file, the key and the value, before any listener is
opened. Nothing here imports pynetdicom: the daemon validates, the ingress process listens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mediasvc.config import Table

ACTIONS = ("export", "import", "print", "hold")
# PS3.8 9.3.2: an AE title is 1-16 characters of the default repertoire, no backslash and no
# control characters; leading and trailing spaces are not significant.
_AE = r"[ -\[\]-~]{1,16}"
_NAME = r"[A-Za-z0-9_-]{1,32}"


@dataclass(frozen=True)
class Route:
    """Where instances sent to ``called_ae`` (and optionally of these modalities / stations)
    go: a study that gets no new instance for ``quiet_seconds`` becomes one job."""

    name: str
    called_ae: str
    action: str                          # export | import | print | hold (kept for MCM)
    modality: tuple[str, ...] = ()       # empty: any
    station_name: tuple[str, ...] = ()   # empty: any
    profile: str = ""                    # export: media profile
    target: str = ""                     # export: iso | staging | a [burners.NAME]
    printer: str = ""                    # print
    layout: str = ""                     # print: film layout (profiles/film/)
    quiet_seconds: float = 30.0
    priority: str = "MED"

    def matches(self, called_ae: str, modality: str, station: str) -> bool:
        return (self.called_ae == called_ae
                and (not self.modality or modality in self.modality)
                and (not self.station_name or station in self.station_name))


@dataclass(frozen=True)
class Tls:
    certificate: Path
    private_key: Path
    ca_certificates: Path | None = None   # set: peers must show a certificate it signed
    port: int | None = None               # None: the main port speaks TLS


@dataclass(frozen=True)
class Mcm:
    """Media Creation Management SCP (PS3.4 Annex S) on the ingress AE."""

    called_ae: str
    default_profile: str
    target: str
    hold_hours: float = 72.0


@dataclass(frozen=True)
class Ingress:
    ae_title: str
    port: int
    bind: str = "127.0.0.1"
    allowed_calling_aes: tuple[str, ...] = ()   # empty: any calling AE
    routes: tuple[Route, ...] = ()
    tls: Tls | None = None
    mcm: Mcm | None = None
    quiet_seconds: float = 30.0
    max_instance_bytes: int = 2 * 10**9
    max_association_bytes: int = 50 * 10**9
    min_free_bytes: int = 2 * 10**9
    max_pdu: int = 262_144
    max_associations: int = 16

    @property
    def called_aes(self) -> set[str]:
        """Every Called AE title an association may name (others get A-ASSOCIATE-RJ)."""
        out = {self.ae_title} | {r.called_ae for r in self.routes}
        if self.mcm is not None:
            out.add(self.mcm.called_ae)
        return out

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)


@dataclass(frozen=True)
class Forward:
    """[forward]: imports made by the service are sent to this PACS (C-STORE SCU)."""

    destination: str                  # AE@HOST:PORT
    calling_ae: str = "MEDIASVC"
    retries: int = 2                  # within one run of the import job
    timeout_seconds: float = 30.0


def parse_ingress(t: Table, *, profiles: set[str], burners: set[str], printers: set[str],
                  builtin_targets: tuple[str, ...], default_target: str) -> Ingress | None:
    if "ingress" not in t:
        return None
    i = t.table("ingress")
    i.check_keys(("ae_title", "port", "bind", "allowed_calling_aes", "route", "tls", "mcm",
                  "quiet_seconds", "max_instance_size", "max_association_size", "min_free",
                  "max_pdu", "max_associations"))
    ae_title = i.str("ae_title", "MEDIASVC", pattern=_AE).strip()
    quiet = i.float("quiet_seconds", 30.0, min=0.1, max=86400.0)
    allowed = tuple(a.strip() for a in i.str_list("allowed_calling_aes", []))
    for a in allowed:
        if not re.fullmatch(_AE, a):
            raise i.error("allowed_calling_aes", f"{a!r} is not an AE title (1-16 characters,"
                          " no backslash)")

    def target_ok(tt: Table, key: str, value: str) -> str:
        if value not in builtin_targets and value not in burners:
            raise tt.error(key, "must be iso, staging or the name of a [burners.NAME] table")
        return value

    routes: list[Route] = []
    for r in i.tables("route", []):
        r.check_keys(("name", "called_ae", "modality", "station_name", "action", "profile",
                      "target", "printer", "layout", "quiet_seconds", "priority"))
        name = r.str("name", pattern=_NAME)
        if any(x.name == name for x in routes):
            raise r.error("name", "another route has this name")
        action = r.str("action", choices=ACTIONS)
        profile = target = printer = layout = ""
        if action == "export":
            profile = r.str("profile")
            if profile not in profiles:
                raise r.error("profile", f"not one of [export] profiles ("
                              f"{', '.join(sorted(profiles))})")
            target = target_ok(r, "target", r.str("target", default_target))
        elif action == "print":
            printer = r.str("printer")
            if printer not in printers:
                raise r.error("printer", "no [printers.NAME] table of that name ("
                              f"{', '.join(sorted(printers)) or 'none configured'})")
            layout = r.str("layout", "")
        applies = {"export": ("profile", "target"), "print": ("printer", "layout")}
        for key in ("profile", "target", "printer", "layout"):
            if key in r and key not in applies.get(action, ()):
                raise r.error(key, f"does not apply to action = {action!r}")
        routes.append(Route(
            name=name, called_ae=r.str("called_ae", ae_title, pattern=_AE).strip(),
            action=action, modality=tuple(r.str_list("modality", [])),
            station_name=tuple(r.str_list("station_name", [])), profile=profile,
            target=target, printer=printer, layout=layout,
            quiet_seconds=r.float("quiet_seconds", quiet, min=0.1, max=86400.0),
            priority=r.str("priority", "MED", choices=("HIGH", "MED", "LOW"))))

    tls = None
    if "tls" in i:
        tt = i.table("tls")
        tt.check_keys(("certificate", "private_key", "ca_certificates", "port"))
        paths = {}
        for key in ("certificate", "private_key", "ca_certificates"):
            if key == "ca_certificates" and key not in tt:
                continue
            p = Path(tt.str(key))
            if not p.is_file():
                raise tt.error(key, "no such file")
            paths[key] = p
        tls = Tls(paths["certificate"], paths["private_key"], paths.get("ca_certificates"),
                  tt.int("port", None, min=1, max=65535))

    mcm = None
    if "mcm" in i:
        m = i.table("mcm")
        m.check_keys(("enabled", "called_ae", "default_profile", "target", "hold_hours"))
        if m.bool("enabled", True):
            prof = m.str("default_profile", "STD-GEN-CD")
            if prof not in profiles:
                raise m.error("default_profile", "unknown media profile")
            mcm = Mcm(called_ae=m.str("called_ae", ae_title, pattern=_AE).strip(),
                      default_profile=prof,
                      target=target_ok(m, "target", m.str("target", default_target)),
                      hold_hours=m.float("hold_hours", 72.0, min=0.01))
    return Ingress(
        ae_title=ae_title, port=i.int("port", 11112, min=0, max=65535),
        bind=i.str("bind", "127.0.0.1"), allowed_calling_aes=allowed, routes=tuple(routes),
        tls=tls, mcm=mcm, quiet_seconds=quiet,
        max_instance_bytes=i.size("max_instance_size", 2 * 10**9),
        max_association_bytes=i.size("max_association_size", 50 * 10**9),
        min_free_bytes=i.size("min_free", 2 * 10**9),
        max_pdu=i.int("max_pdu", 262_144, min=4096, max=2**24),
        max_associations=i.int("max_associations", 16, min=1, max=256))


def parse_forward(t: Table) -> Forward | None:
    if "forward" not in t:
        return None
    f = t.table("forward")
    f.check_keys(("destination", "calling_ae", "retries", "timeout_seconds"))
    dest = f.str("destination")
    if not re.fullmatch(r"[^@]{1,16}@(\[[^\]]+\]|[^:@]+):\d{1,5}", dest):
        raise f.error("destination", "must be AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
    return Forward(destination=dest, calling_ae=f.str("calling_ae", "MEDIASVC", pattern=_AE),
                   retries=f.int("retries", 2, min=0, max=20),
                   timeout_seconds=f.float("timeout_seconds", 30.0, min=1.0))
