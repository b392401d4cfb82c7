"""Forwarding stored instances to a PACS by C-STORE (PS3.4 Annex B, PS3.7 9.1.1) via pynetdicom.

State lives in the store's ``forwards`` table (pending / sent / failed per instance and
destination), so a PACS that is down leaves the instances *pending*: the command says so and
``mediasvc store forward DEST`` sends them later. A failure status from the PACS (a refusal,
not an outage) marks that instance *failed* with the status; those are not retried blindly.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from mediasvc.errors import PeerError, UsageError
from mediasvc.store.index import InstanceRow, Store

log = logging.getLogger(__name__)

CALLING_AE = "MEDIASVC"
MAX_CONTEXTS = 120   # PS3.8: at most 128 presentation contexts per association (odd IDs 1-255)
_UNCOMPRESSED = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, "1.2.840.10008.1.2.2"}
# PS3.7 Annex C / PS3.4 B.2.3: warning statuses still mean "stored".
_WARNINGS = {0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        m = re.fullmatch(r"([^@]{1,16})@(\[[^\]]+\]|[^:@]+):(\d{1,5})", text.strip())
        if not m or not 0 < int(m.group(3)) < 65536:
            raise UsageError(f"--forward {text!r}: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
        return cls(m.group(1), m.group(2).strip("[]"), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class ForwardReport:
    destination: str
    sent: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    pending: int = 0
    attempts: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and self.pending == 0 and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {"destination": self.destination, "sent": len(self.sent),
                "failed": self.failed, "pending": self.pending, "attempts": self.attempts,
                "error": self.error, "ok": self.ok}


def forward(store: Store, destination: Destination, instance_ids: Sequence[int] | None = None,
            *, retries: int = 3, backoff: float = 1.0, calling_ae: str = CALLING_AE,
            timeout: float = 30.0) -> ForwardReport:
    """Queue ``instance_ids`` (None: what is already pending) for ``destination`` and send them.

    An association that cannot be set up or breaks off is retried ``retries`` times with
    exponential back-off; what is still unsent stays pending and the report says why.
    """
    dest = str(destination)
    if instance_ids is not None:
        store.queue_forward(instance_ids, dest)
    report = ForwardReport(dest)
    delay = backoff
    for attempt in range(1, retries + 2):
        todo = store.instances(store.pending_forwards(dest))
        if not todo:
            break
        report.attempts = attempt
        error = _send_round(store, destination, todo, report, calling_ae, timeout)
        if not error:
            report.error = ""
            continue
        report.error = error
        if attempt <= retries:
            log.info("forward to %s: %s; retrying in %.0f s", dest, error, delay)
            time.sleep(delay)
            delay *= 2
    report.pending = len(store.pending_forwards(dest))
    return report


def _contexts(rows: Sequence[InstanceRow]) -> dict[str, set[str]]:
    """SOP class -> transfer syntaxes to propose: the file's own, and for uncompressed data
    both little endian syntaxes (every SCP supports Implicit VR LE, PS3.5 10.1)."""
    out: dict[str, set[str]] = {}
    for r in rows:
        ts = out.setdefault(r.sop_class_uid, set())
        ts.add(r.transfer_syntax or ImplicitVRLittleEndian)
        if not r.transfer_syntax or r.transfer_syntax in _UNCOMPRESSED:
            ts.update({ImplicitVRLittleEndian, ExplicitVRLittleEndian})
    return out


def _send_round(store: Store, destination: Destination, rows: Sequence[InstanceRow],
                report: ForwardReport, calling_ae: str, timeout: float) -> str:
    """One association per group of SOP classes; returns an error text if the peer failed."""
    by_class = _contexts(rows)
    classes = sorted(by_class)
    for start in range(0, len(classes), MAX_CONTEXTS):
        group = set(classes[start:start + MAX_CONTEXTS])
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = min(timeout, 10.0)
        for sop_class in sorted(group):
            ae.add_requested_context(sop_class, sorted(by_class[sop_class]))
        reachable = _reachable(destination, ae.connection_timeout)
        if reachable:
            return f"{destination}: {reachable} (is the PACS running and the address right?)"
        with _quiet_pynetdicom():
            assoc = ae.associate(destination.host, destination.port,
                                 ae_title=destination.ae_title)
        if not assoc.is_established:
            why = ("association rejected" if assoc.is_rejected else
                   "association aborted" if assoc.is_aborted else
                   "no answer (connection refused or timed out)")
            return f"{destination}: {why}"
        try:
            error = _send_all(store, assoc, [r for r in rows if r.sop_class_uid in group],
                              str(destination), report)
        finally:
            if assoc.is_established:
                assoc.release()
        if error:
            return error
    return ""


def _reachable(destination: Destination, timeout: float) -> str:
    """'' when a TCP connection can be made, else why not (pynetdicom only says 'aborted')."""
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"


@contextlib.contextmanager
def _quiet_pynetdicom() -> Iterator[None]:
    """pynetdicom logs failed connections at ERROR; our report says it once, clearly."""
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _send_all(store: Store, assoc: Association, rows: Sequence[InstanceRow], dest: str,
              report: ForwardReport) -> str:
    for row in rows:
        try:
            ds = pydicom.dcmread(row.path)
        except (OSError, InvalidDicomError) as exc:
            store.set_forward_state(row.id, dest, "failed", f"cannot read stored file: {exc}")
            report.failed.append({"sop_instance_uid": row.sop_uid, "reason": str(exc)})
            continue
        try:
            status = assoc.send_c_store(ds)
        except ValueError as exc:   # no accepted presentation context for this file
            store.set_forward_state(row.id, dest, "failed", str(exc))
            report.failed.append({"sop_instance_uid": row.sop_uid, "reason": str(exc)})
            continue
        code = int(status.get("Status", -1)) if status else -1
        if code == -1:
            # An empty status: the association was aborted or timed out (a transient failure).
            store.set_forward_state(row.id, dest, "pending", "no C-STORE response")
            return f"{dest}: association broke off during C-STORE"
        if code == 0 or code in _WARNINGS:
            store.set_forward_state(row.id, dest, "sent")
            report.sent.append(row.sop_uid)
        else:
            reason = f"C-STORE failed with status 0x{code:04X}"
            store.set_forward_state(row.id, dest, "failed", reason)
            report.failed.append({"sop_instance_uid": row.sop_uid, "reason": reason})
    return ""


def raise_if_down(report: ForwardReport, store_root: str) -> None:
    """Turn a report with instances still pending into a transient PeerError for the CLI."""
    if report.pending:
        raise PeerError(
            f"forward to {report.destination} failed after {report.attempts} attempt(s): "
            f"{report.error or 'not sent'}; {report.pending} instance(s) stay queued - "
            f"retry with: mediasvc store forward {report.destination} --store {store_root}",
            transient=True)
