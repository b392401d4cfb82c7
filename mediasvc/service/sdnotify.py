"""sd_notify(3) over the NOTIFY_SOCKET datagram socket, with the standard library only.

systemd (Type=notify) passes the path of a unix datagram socket in $NOTIFY_SOCKET; a leading
'@' means an abstract socket. Messages are newline-separated KEY=VALUE lines: READY=1 once the
service accepts work, STATUS=... a one-line human status (shown by `systemctl status`),
WATCHDOG=1 keep-alives at least every WatchdogSec (systemd passes it as $WATCHDOG_USEC, and
$WATCHDOG_PID names the process that must send them), STOPPING=1 on an orderly shutdown.
Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if addr:
            # An abstract socket name starts with a NUL byte on the wire.
            self.address = "\0" + addr[1:] if addr.startswith("@") else addr

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines (keys upper-cased). False if not under systemd or it failed."""
        if self.address is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(msg)
        except OSError as exc:
            # A lost status line must never take the service down; systemd's watchdog will
            # notice if keep-alives stop arriving.
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)


def watchdog_interval() -> float | None:
    """Seconds between keep-alives: half of WatchdogSec (sd_watchdog_enabled(3)), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None
