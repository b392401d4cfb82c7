"""The ``[web]`` table of the service configuration: the web console (mediasvc/web, docs/web.md).

    [web]
    enabled = true                   # `mediasvc serve` starts the console as a child process
    bind = "127.0.0.1"               # loopback only unless a site opens it on purpose
    port = 8104                      # 0: any free port (the one taken is in run/console.json)
    users = "web-users.toml"         # users with hashed passwords and roles (`mediasvc users`)
    tls_cert = "/etc/mediasvc/tls/console.pem"   # both set: HTTPS only
    tls_key = "/etc/mediasvc/tls/console.key"
    import_devices = ["/dev/sr0"]    # media the console may import (default: the drive burners)
    import_folders = ["/srv/media"]  # ISO images and folders under these may be imported
    session_hours = 12               # a login lasts this long

Relative paths are taken from the service root, like every path of the configuration.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.config import Table

DEFAULT_PORT = 8104


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    users: Path = Path("web-users.toml")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    import_devices: tuple[str, ...] = ()
    import_folders: tuple[Path, ...] = field(default_factory=tuple)
    session_hours: float = 12.0

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def url(self, port: int | None = None) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{'https' if self.tls else 'http'}://{host}:{port or self.port}/"


def parse_web(t: Table, root: Path, drives: list[str]) -> WebConfig:
    """``drives``: the devices of the configured drive burners (importable by default)."""
    t.check_keys(("enabled", "bind", "port", "users", "tls_cert", "tls_key", "import_devices",
                  "import_folders", "session_hours"))

    def path(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else root / p

    bind = t.str("bind", "127.0.0.1")
    if bind != "localhost":
        try:
            ipaddress.ip_address(bind)
        except ValueError as exc:
            raise t.error("bind", "must be an IP address (127.0.0.1, ::1, 0.0.0.0) or "
                          "localhost") from exc
    cert, key = t.str("tls_cert", None), t.str("tls_key", None)
    if (cert is None) != (key is None):
        raise t.error("tls_cert" if cert is None else "tls_key",
                      "tls_cert and tls_key go together (both, or neither)")
    devices = t.str_list("import_devices", drives)
    for dev in devices:
        if not dev.startswith("/dev/"):
            raise t.error("import_devices", f"{dev!r} is not a device under /dev/")
    folders = t.str_list("import_folders", [])
    return WebConfig(
        enabled=t.bool("enabled", True), bind=bind,
        port=t.int("port", DEFAULT_PORT, min=0, max=65535),
        users=path(t.str("users", "web-users.toml")),
        tls_cert=None if cert is None else path(cert),
        tls_key=None if key is None else path(key),
        import_devices=tuple(devices),
        import_folders=tuple(path(f) for f in folders),
        session_hours=t.float("session_hours", 12.0, min=0.1, max=24.0 * 30))
