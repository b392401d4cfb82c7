"""The DICOM listener: Storage SCP (PS3.4 Annex B) and, when configured, the Media Creation
Management SCP (Annex S, mcm.py), on one pynetdicom AE.

Association checks (PS3.8 7.1.1.9, A-ASSOCIATE-RJ "rejected-permanent", source DUL service
user): a Calling AE title outside ``allowed_calling_aes`` gets reason 3 (pynetdicom's
``require_calling_aet``); a Called AE title that is neither ours nor a route's gets reason 7.

C-STORE (PS3.4 B.2.3 statuses): Success only once the instance is durable (receive.py);
0xA700 Out of Resources for an instance over ``max_instance_size``, an association over
``max_association_size``, or a disk that would fall under ``min_free``; 0x0124 Refused: Not
Authorized when no route takes it; 0xA900 when the data set's SOP Instance UID is not that of
the request. A sender that streams more than the instance cap without ending the message is
aborted (A-ABORT) as the bytes come in, so a huge data set never sits in memory.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, _config, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.transport import ThreadedAssociationServer

from mediasvc.profiles import media_profiles
from mediasvc.service.ingress_config import Ingress, Route

from .assembler import Assembler
from .receive import Journal, Spooler, Target, free_bytes, valid_uid

log = logging.getLogger("mediasvc.ingress")

IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
MCM_SOP_CLASS = "1.2.840.10008.5.1.1.33"
HOLD = "hold"


def storage_contexts() -> dict[str, list[str]]:
    """SOP class -> transfer syntaxes: the storage SOP classes of every media profile with the
    transfer syntaxes of the profiles that allow them, plus both uncompressed little endian
    syntaxes (Implicit VR LE is the default every SCP accepts, PS3.5 10.1; the exporter
    transcodes uncompressed data to a profile's syntax)."""
    every = [c.abstract_syntax for c in AllStoragePresentationContexts if c.abstract_syntax]
    out: dict[str, set[str]] = {}
    for prof in media_profiles().values():
        for uid in (every if prof.any_sop_class else sorted(prof.sop_classes)):
            out.setdefault(uid, {IMPLICIT_LE, EXPLICIT_LE}).update(prof.transfer_syntaxes)
    return {k: sorted(v) for k, v in sorted(out.items())}


@dataclass
class AssocState:
    id: str
    called_ae: str
    calling_ae: str
    stored_bytes: int = 0
    in_message: int = 0        # bytes of the message being received (P-DATA so far)
    n: int = 0
    aborting: bool = False
    tmp_dir: Path | None = None
    journal: Journal | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"stored": 0, "duplicate": 0,
                                                            "refused": 0})


class IngressAE:
    def __init__(self, ing: Ingress, spooler: Spooler, assembler: Assembler,
                 mcm_handlers: list[Any] | None = None) -> None:
        self.ing = ing
        self.spooler = spooler
        self.assembler = assembler
        self.assocs: dict[int, AssocState] = {}
        self._mu = threading.Lock()
        self._seq = 0
        self.file_meta = FileMetaCache()
        self.totals = {"associations": 0, "rejected": 0, "stored": 0, "duplicate": 0,
                       "refused": 0, "bytes": 0}
        if not log.isEnabledFor(logging.DEBUG):
            # pynetdicom's "standard" handlers of every PDU and DIMSE message build their
            # (DEBUG) log lines even when nothing is logged: about a tenth of the CPU of a
            # C-STORE (bench/bench_ingest.py). Documented knob of pynetdicom/_config.py.
            _config.LOG_HANDLER_LEVEL = "none"
        ae = AE(ae_title=ing.ae_title)
        ae.maximum_pdu_size = ing.max_pdu
        ae.maximum_associations = ing.max_associations
        ae.require_calling_aet = list(ing.allowed_calling_aes)
        ae.require_called_aet = True   # checked against the association's own title below
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        for uid, syntaxes in storage_contexts().items():
            ae.add_supported_context(uid, syntaxes)
        if ing.mcm is not None:
            ae.add_supported_context(MCM_SOP_CLASS, [IMPLICIT_LE, EXPLICIT_LE])
        self.ae = ae
        self.handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, _fast_dul),
            (evt.EVT_REQUESTED, self._on_requested), (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_RELEASED, self._on_end), (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_CONN_CLOSE, self._on_end), (evt.EVT_C_ECHO, lambda e: 0x0000),
            *(mcm_handlers or [])]
        self.servers: list[ThreadedAssociationServer] = []

    # -- listening ------------------------------------------------------------------------
    def start(self) -> list[int]:
        """Start the listener(s); returns the ports (port 0 in the config: any free one)."""
        ing = self.ing
        tls = _ssl_context(ing) if ing.tls is not None else None
        plan: list[tuple[int, ssl.SSLContext | None]] = []
        if tls is not None and ing.tls is not None and ing.tls.port is not None:
            plan = [(ing.port, None), (ing.tls.port, tls)]
        else:
            plan = [(ing.port, tls)]
        for port, ctx in plan:
            srv = self.ae.start_server((ing.bind, port), block=False, ssl_context=ctx,
                                       evt_handlers=self.handlers)
            assert srv is not None   # block=False returns the running server
            self.servers.append(srv)
        return [s.server_address[1] for s in self.servers]

    def stop(self) -> None:
        """No new association; open ones aborted (what they did not get Success for, their
        senders send again) and given a few seconds to end."""
        for s in self.servers:
            for a in s.active_associations:
                a.abort()
            s.shutdown()
        end = time.monotonic() + 5
        while self.assocs and time.monotonic() < end:
            time.sleep(0.05)

    # -- association ----------------------------------------------------------------------
    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        assert rq is not None   # EVT_REQUESTED: the A-ASSOCIATE request has arrived
        called, calling = rq.called_ae_title.strip(), rq.calling_ae_title.strip()
        if called in self.ing.called_aes:
            # pynetdicom compares the Called AE title with the acceptor's own: answering with
            # the title that was called makes one listener serve every route's title.
            assoc.acceptor.ae_title = called
        with self._mu:
            self._seq += 1
            self.assocs[id(assoc)] = AssocState(f"{self._seq:06d}-{threading.get_ident():x}",
                                                called, calling)
            self.totals["associations"] += 1

    def _on_rejected(self, event: Event) -> None:
        st = self._state(event)
        with self._mu:
            self.totals["rejected"] += 1
        log.warning("association refused (A-ASSOCIATE-RJ): calling AE %r, called AE %r",
                    st.calling_ae if st else "?", st.called_ae if st else "?")

    def _on_end(self, event: Event) -> None:
        with self._mu:
            st = self.assocs.pop(id(event.assoc), None)
        if st is not None:
            self.spooler.drop_temp(st.id)
            if st.journal is not None:
                self.spooler.release(st.journal)
            if st.n:
                log.info("association from %s to %s ended: %d stored, %d duplicate, "
                         "%d refused", st.calling_ae, st.called_ae, st.counts["stored"],
                         st.counts["duplicate"], st.counts["refused"])

    def _state(self, event: Event) -> AssocState | None:
        return self.assocs.get(id(event.assoc))

    def _on_data(self, event: Event) -> None:
        """Bytes as they arrive: abort a message that outgrows the instance cap."""
        st = self._state(event)
        if st is None or st.aborting:
            return
        st.in_message += len(event.data)
        if st.in_message > self.ing.max_instance_bytes + self.ing.max_pdu:
            st.aborting = True
            log.warning("association from %s aborted: a message over the %d-byte instance "
                        "cap", st.calling_ae, self.ing.max_instance_bytes)
            threading.Thread(target=event.assoc.abort, daemon=True).start()

    # -- C-STORE --------------------------------------------------------------------------
    def _on_store(self, event: Event) -> int | Dataset:
        st = self._state(event)
        if st is None:
            return 0xC000
        st.in_message = 0
        st.n += 1
        status, key = self._store(event, st)
        st.counts[key] += 1
        with self._mu:
            self.totals[key] += 1
        return status

    def _store(self, event: Event, st: AssocState) -> tuple[int | Dataset, str]:
        """(the C-STORE status, and what happened: stored, duplicate or refused)"""
        raw = event.encoded_dataset(include_meta=False)
        checked = self._check(event, st, raw)
        if isinstance(checked, Dataset):
            return checked, "refused"
        sop_uid, study, route = checked
        req = cast(C_STORE, event.request)
        parts = [self.file_meta.encode(event, str(req.AffectedSOPClassUID), sop_uid), raw]
        try:
            return self._write(st, sop_uid, study, route, parts, len(raw))
        except OSError as exc:   # disk full, an I/O error: not durable, so no Success
            log.error("cannot store a received instance: %s", exc.strerror or exc)
            return _fail(0xA700 if exc.errno == errno.ENOSPC else 0xC000,
                         "cannot write the instance on the receiving host"), "refused"

    def _write(self, st: AssocState, sop_uid: str, study: str, route: Route | str,
               parts: list[bytes], size: int) -> tuple[int | Dataset, str]:
        if st.tmp_dir is None:
            st.tmp_dir = self.spooler.temp_dir(st.id)
        if st.journal is None:
            st.journal = self.spooler.acquire()
        tmp_dir = st.tmp_dir
        if route == HOLD:
            placed = self.spooler.store(st.journal, tmp_dir, st.n, Target("", "", sop_uid),
                                        parts)
        else:
            assert isinstance(route, Route)
            rname = route.name
            placed = self.spooler.store(st.journal, tmp_dir, st.n,
                                        Target(rname, study, sop_uid), parts,
                                        lambda: self.assembler.already_taken(rname, sop_uid))
            # Even a duplicate restarts the quiet period: the sender is still at work.
            self.assembler.received(rname, study, st.calling_ae)
        if not placed:
            return 0x0000, "duplicate"   # stored once already: Success, nothing written
        st.stored_bytes += size
        with self._mu:
            self.totals["bytes"] += size
        return 0x0000, "stored"

    def _check(self, event: Event, st: AssocState,
               raw: bytes) -> Dataset | tuple[str, str, Route | str]:
        """A refusal status, or (SOP Instance UID, Study Instance UID, route) to store."""
        ing = self.ing
        sop_uid = str(cast(C_STORE, event.request).AffectedSOPInstanceUID or "")
        size = len(raw)
        if size > ing.max_instance_bytes:
            return _fail(0xA700, f"instance of {size} bytes over the cap of "
                         f"{ing.max_instance_bytes}")
        if st.stored_bytes + size > ing.max_association_bytes:
            return _fail(0xA700, f"association over its cap of {ing.max_association_bytes}"
                         " bytes")
        if free_bytes(self.spooler.layout.base) - size < ing.min_free_bytes:
            log.error("refusing an instance: the spool disk would fall under %d bytes free",
                      ing.min_free_bytes)
            return _fail(0xA700, "out of disk space on the receiving host")
        try:
            ds = _head(event, raw)
            study = str(ds.get("StudyInstanceUID", ""))
            ds_sop = str(ds.get("SOPInstanceUID", ""))
            modality = str(ds.get("Modality", ""))
            station = str(ds.get("StationName", ""))
        except Exception as exc:  # a data set pydicom cannot decode: refuse, keep serving
            return _fail(0xC000, f"cannot decode the data set: {type(exc).__name__}")
        if not valid_uid(sop_uid) or not valid_uid(study):
            return _fail(0xC000, "SOP Instance UID or Study Instance UID missing or invalid")
        if ds_sop != sop_uid:
            return _fail(0xA900, "the data set's SOP Instance UID differs from the request's")
        route = self.route_for(st.called_ae, modality, station)
        if route is None:
            return _fail(0x0124, f"no route takes {modality or 'this modality'} on called AE "
                         f"{st.called_ae}")
        return sop_uid, study, route

    def route_for(self, called_ae: str, modality: str, station: str) -> Route | str | None:
        for r in self.ing.routes:
            if r.matches(called_ae, modality, station):
                return HOLD if r.action == HOLD else r
        mcm = self.ing.mcm
        if mcm is not None and called_ae == mcm.called_ae:
            return HOLD  # kept for Media Creation Management requests
        return None

    def health(self) -> dict[str, Any]:
        with self._mu:
            return {"ports": [s.server_address[1] for s in self.servers],
                    "associations_open": len(self.assocs), **self.totals}


class FileMetaCache:
    """The preamble, "DICM" and File Meta Information (PS3.10 7.1) of received instances.

    pydicom takes about 0.5 ms to build and encode these seven elements (pynetdicom's
    ``event.file_meta`` and ``encode_file_meta``): a quarter of a C-STORE's CPU. They differ
    between instances of one SOP class and transfer syntax only in the SOP Instance UID, so
    pydicom encodes them once per (SOP class, transfer syntax, UID length), and the instance
    UID is put at its place in a copy (same length: the group length stays right)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], tuple[bytes, int]] = {}
        self._mu = threading.Lock()

    def encode(self, event: Event, sop_class: str, sop_uid: str) -> bytes:
        key = (sop_class, str(event.context.transfer_syntax), len(sop_uid))
        with self._mu:
            hit = self._cache.get(key)
        if hit is None:
            meta = event.file_meta
            meta.MediaStorageSOPInstanceUID = UID("8" * len(sop_uid))
            eights = encode_file_meta(meta)
            meta.MediaStorageSOPInstanceUID = UID("9" * len(sop_uid))
            nines = encode_file_meta(meta)
            # Two placeholder UIDs that differ in every character: where their encodings
            # first differ is where the UID's value starts.
            at = next(i for i, (a, b) in enumerate(zip(eights, nines, strict=True)) if a != b)
            hit = (_PREAMBLE + nines, len(_PREAMBLE) + at)
            with self._mu:
                self._cache[key] = hit
        template, at = hit
        return template[:at] + sop_uid.encode("ascii") + template[at + len(sop_uid):]


_PREAMBLE = b"\x00" * 128 + b"DICM"
# pynetdicom's DUL reactor sleeps ``_run_loop_delay`` (1 ms) whenever its queues are empty
# (dul.py: "Setting `_run_loop_delay` higher will use less CPU when idle, but will also
# increase the latency to respond to new requests"): with one synchronous sender, twice per
# C-STORE (the request's PDUs, the response). Measured (DCMTK storescu, 1,000 CT
# instances, medians of 4): 1 ms 163/s, 0.3 ms 177/s, 0.1 ms 157/s (the polling thread then
# takes the CPU the association thread needs); with 4 senders 0.3 ms = 1 ms. The cost: an
# idle open association takes 14 % of a core instead of 8 % (pynetdicom's association
# reactor polls every 1 ms too); network_timeout (60 s) closes idle ones.
DUL_LOOP_DELAY = 0.0003


def _fast_dul(event: Event) -> None:
    event.assoc.dul._run_loop_delay = DUL_LOOP_DELAY


def _head(event: Event, raw: bytes) -> Dataset:
    """The elements up to Study Instance UID (0020,000D): all a route and the study folder
    need, read without decoding the rest of the data set (pixel data included)."""
    from io import BytesIO

    from pydicom.filereader import read_dataset

    ts = event.context.transfer_syntax
    implicit = ts == IMPLICIT_LE
    little = ts != "1.2.840.10008.1.2.2"
    if ts in ("1.2.840.10008.1.2.1.99",):   # deflated: let pynetdicom inflate it
        return event.dataset
    return read_dataset(BytesIO(raw), implicit, little,
                        stop_when=lambda tag, vr, length: tag > 0x0020000D)


def _fail(code: int, comment: str) -> Dataset:
    """A C-STORE failure status with its Error Comment (PS3.7 C.4.2: LO, 64 characters)."""
    log.info("C-STORE refused with 0x%04X: %s", code, comment)
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _ssl_context(ing: Ingress) -> ssl.SSLContext:
    """DICOM TLS (PS3.15 B.1, the BCP 195 profile): TLS 1.2 or later; a CA file makes client
    certificates mandatory (mutual authentication)."""
    assert ing.tls is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ing.tls.certificate, ing.tls.private_key)
    if ing.tls.ca_certificates is not None:
        ctx.load_verify_locations(ing.tls.ca_certificates)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
