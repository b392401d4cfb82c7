"""Print SCU (pynetdicom): Basic Grayscale / Basic Color Print Management (PS3.4 Annex H).

One association per print job, with only the meta SOP class proposed:
    N-GET Printer status      FAILURE refuses the job, WARNING is reported (Printer Status Info)
    N-CREATE Film Session     copies, priority, medium, destination, label
    per film: N-CREATE Film Box, N-SET every Image Box, N-ACTION print, N-DELETE Film Box
    N-DELETE Film Session, release
N-EVENT-REPORTs of the Printer during the job are recorded; a FAILURE stops the job.

Pitfalls found against dcmprscp (../shared/design.md), all followed here: ``meta_uid=`` on every
``send_n_*``; the Image Box N-SET names the Image Box SOP class and instance of the film box's
Referenced Image Box Sequence; ``send_n_create`` drops the SCP-assigned instance UID, so it is
read from the response command set (EVT_DIMSE_RECV); ``None`` rather than an empty Dataset;
image box items carry only the image pixel module; 0x0107, 0x0116 and 0xB6xx are warnings; an
empty status means the association was aborted or timed out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association

from mediasvc.errors import MediasvcError, PeerError, PrintError
from mediasvc.printing.layouts import FilmLayout
from mediasvc.printing.printers import Printer
from mediasvc.printing.render import Film

log = logging.getLogger(__name__)

GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"  # the well-known Printer SOP Instance (PS3.4 H.4.6)

# PS3.4 H.4 (print specific) and PS3.7 C (general) statuses, in the printer's words' absence.
STATUS_TEXT: dict[int, str] = {
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0107: "Attribute list error (some attributes were not supported and were ignored)",
    0x0110: "Processing failure",
    0x0112: "No such SOP instance",
    0x0116: "Attribute value out of range (the printer adjusted it)",
    0x0117: "Invalid object instance",
    0x0118: "No such SOP class",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "SOP class not supported",
    0x0124: "Not authorized",
    0x0211: "Unrecognized operation",
    0x0213: "Resource limitation",
    0xB600: "Memory allocation not supported",
    0xB601: "Film session printing (collation) is not supported",
    0xB602: "Film session contains no image boxes (empty page)",
    0xB603: "Film box contains no image boxes (empty page)",
    0xB604: "Image larger than the image box: demagnified",
    0xB605: "Min or Max Density outside the printer's range: its own limit is used",
    0xB609: "Image larger than the image box: cropped to fit",
    0xB60A: "Image larger than the image box: decimated to fit",
    0xC600: "Film session contains no film boxes",
    0xC601: "Unable to create the print job: print queue full",
    0xC602: "Unable to create the print job: print queue full",
    0xC603: "Image larger than the image box",
    0xC605: "Insufficient memory in the printer to store the image",
    0xC613: "Combined print image larger than the image box",
    0xC616: "An earlier film box was not printed",
}
# Failures a retry may cure: the printer is busy, not wrong.
TRANSIENT_FAILURES = {0x0110, 0x0213, 0xC601, 0xC602, 0xC605}


def is_warning(code: int) -> bool:
    return code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF


@dataclass
class PrintResult:
    """What one print job did; ``warnings`` are the printer's, in its words where it gave any."""

    printer: str
    films: int = 0
    images: int = 0
    printer_status: str = ""
    printer_status_info: str = ""
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"printer": self.printer, "films": self.films, "images": self.images,
                "printer_status": self.printer_status,
                "printer_status_info": self.printer_status_info,
                "warnings": list(self.warnings), "events": list(self.events)}


class _Session:
    """One association to a Print SCP and the bookkeeping around its responses."""

    def __init__(self, printer: Printer, color: bool, result: PrintResult) -> None:
        self.printer = printer
        self.meta = COLOR_META if color else GRAYSCALE_META
        self.image_box_class = COLOR_IMAGE_BOX if color else GRAYSCALE_IMAGE_BOX
        self.result = result
        self.assoc: Association | None = None
        self.last_command: Dataset | None = None
        self.stop_reason: str | None = None
        self._lock = threading.Lock()
        self.msg_id = 0

    # -- association ----------------------------------------------------------------------
    def open(self) -> None:
        p = self.printer
        ae = AE(ae_title=p.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = p.timeout
        ae.connection_timeout = min(p.timeout, 10.0)
        ae.add_requested_context(self.meta, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        acse: dict[str, Any] = {}

        def on_acse(event: Any) -> None:
            acse["primitive"] = event.primitive  # the A-ASSOCIATE-AC/RJ, for the reason

        handlers: list[Any] = [(evt.EVT_DIMSE_RECV, self._on_recv),
                    (evt.EVT_N_EVENT_REPORT, self._on_event_report),
                    (evt.EVT_ACSE_RECV, on_acse)]
        try:
            tls_args = (p.tls.context(), p.host) if p.tls else None
            assoc = ae.associate(p.host, p.port, ae_title=p.ae_title, evt_handlers=handlers,
                                 tls_args=tls_args)
        except (OSError, ValueError) as exc:  # TLS set-up, name resolution
            raise PeerError(f"printer {p.label}: cannot connect: {exc}",
                            transient=True) from exc
        kind = "Basic Color" if self.meta == COLOR_META else "Basic Grayscale"
        refused_meta = PrintError(f"printer {p.label} does not accept {kind} Print "
                                  f"Management (meta SOP class {self.meta})")
        if assoc.is_established:
            if not any(c.abstract_syntax == self.meta for c in assoc.accepted_contexts):
                assoc.abort()
                raise refused_meta
            self.assoc = assoc
            return
        if assoc.is_rejected:
            rejection = _rejection(acse.get("primitive"))
            raise PeerError(f"printer {p.label} rejected the association: "
                            f"{rejection[0]}", transient=rejection[1])
        if any(c.abstract_syntax == self.meta for c in assoc.rejected_contexts):
            raise refused_meta  # accepted, but not our context: pynetdicom aborted
        if assoc.is_aborted and "primitive" in acse:
            raise PeerError(f"printer {p.label} aborted the association",
                            transient=True)
        raise PeerError(f"printer {p.label}: no association (nothing listening, "
                        "or no answer within the timeout)", transient=True)

    def close(self, ok: bool) -> None:
        if self.assoc is None:
            return
        if ok and self.assoc.is_established:
            self.assoc.release()
        elif self.assoc.is_established:
            self.assoc.abort()
        self.assoc = None

    def _on_recv(self, event: Any) -> None:
        cmd = event.message.command_set
        # Responses only (PS3.7 E.1: bit 15 of Command Field): an N-EVENT-REPORT request of the
        # printer arriving meanwhile must not be taken for the N-CREATE response.
        if int(cmd.get("CommandField", 0)) & 0x8000:
            with self._lock:
                self.last_command = cmd

    def _on_event_report(self, event: Any) -> tuple[int, Dataset | None]:
        """Printer N-EVENT-REPORT (PS3.4 H.4.6.1.1): 1 NORMAL, 2 WARNING, 3 FAILURE."""
        kind = {1: "NORMAL", 2: "WARNING", 3: "FAILURE"}.get(int(event.request.EventTypeID or 0),
                                                              "UNKNOWN")
        info = ""
        try:
            ds = event.event_information
            info = str(ds.get("PrinterStatusInfo", "") or "")
        except Exception:  # an undecodable event report must not break the job
            pass
        text = f"printer status {kind}" + (f": {info}" if info else "")
        self.result.events.append(text)
        if kind == "WARNING":
            self.result.warnings.append(text)
        elif kind == "FAILURE":
            self.stop_reason = text
        log.info("printer %s: N-EVENT-REPORT %s", self.printer.name, text)
        return 0x0000, None

    # -- DIMSE ----------------------------------------------------------------------------
    def next_id(self) -> int:
        self.msg_id = self.msg_id % 65535 + 1
        return self.msg_id

    def check(self, op: str, status: Dataset, sent: Dataset | None = None) -> None:
        """Turn a response status into a warning (recorded) or a PrintError (raised)."""
        p = self.printer
        if "Status" not in status:
            raise PeerError(f"printer {p.label}: no response to {op} (association "
                            "aborted or DIMSE timeout)", transient=True)
        code = int(status.Status)
        if code == 0x0000:
            return
        words = str(status.get("ErrorComment", "") or "").strip()
        text = f"{op}: 0x{code:04X} {STATUS_TEXT.get(code, '')}".rstrip()
        if words:
            text += f" (printer says: {words})"
        attrs = self._named_attributes(status)
        if attrs:
            text += f"; attribute: {attrs}"
        if is_warning(code):
            self.result.warnings.append(text)
            log.warning("printer %s: %s", p.name, text)
            return
        if code in (0x0105, 0x0106, 0x0120, 0x0121) and not attrs and sent is not None:
            # The printer did not name the attribute (dcmprscp does not): show what we sent,
            # which is where the refused value is.
            text += f"; not named by the printer, the request had: {_describe(sent)}"
        raise PrintError(f"printer {p.label} refused the film: {text}",
                         transient=code in TRANSIENT_FAILURES)

    def check_events(self) -> None:
        """Stop before the next film or print action after a Printer FAILURE event report."""
        if self.stop_reason:
            raise PeerError(f"printer {self.printer.label} stopped the job: {self.stop_reason}",
                            transient=True)

    def _named_attributes(self, status: Dataset) -> str:
        tags: Any = status.get("AttributeIdentifierList")
        if tags is None and self.last_command is not None:
            tags = self.last_command.get("AttributeIdentifierList")
        if tags is None:
            return ""
        if not isinstance(tags, list | tuple) and not hasattr(tags, "__iter__"):
            tags = [tags]
        names = []
        for t in tags:
            tag = Tag(t)
            names.append(f"{keyword_for_tag(tag) or 'unknown'} ({tag.group:04X},{tag.elem:04X})")
        return ", ".join(names)

    def created_uid(self) -> str:
        cmd = self.last_command
        uid = cmd.get("AffectedSOPInstanceUID") if cmd is not None else None
        if not uid:
            raise PrintError(f"printer {self.printer.name}: N-CREATE response without an "
                             "Affected SOP Instance UID")
        return str(uid)

    @property
    def a(self) -> Association:
        assert self.assoc is not None
        return self.assoc


def _rejection(prim: Any) -> tuple[str, bool]:
    """Result/source/reason of an A-ASSOCIATE-RJ (PS3.8 7.1.1.9) in words, and whether a
    retry may help (rejected-transient, or the service provider's congestion)."""
    result = getattr(prim, "result", None)
    source = int(getattr(prim, "result_source", 0) or 0)
    reason = int(getattr(prim, "diagnostic", 0) or 0)
    reasons = {(1, 1): "no reason given", (1, 2): "application context not supported",
               (1, 3): "calling AE title not recognized", (1, 7): "called AE title not recognized",
               (2, 1): "no reason given", (2, 2): "protocol version not supported",
               (3, 1): "temporary congestion", (3, 2): "local limit exceeded"}
    words = reasons.get((source, reason), f"source {source}, reason {reason}")
    kind = "transient" if result == 2 else "permanent"
    return f"{kind} rejection, {words}", result == 2 or source == 3


def _describe(ds: Dataset) -> str:
    parts = []
    for elem in ds:
        if elem.VR == "SQ":
            continue
        parts.append(f"{elem.keyword}={elem.value}")
    return ", ".join(parts)


def _dataset(attrs: dict[str, object]) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _image_item(box: np.ndarray) -> Dataset:
    """The image pixel module of an image box (PS3.3 C.13.5): and nothing else."""
    item = Dataset()
    color = box.ndim == 3
    item.SamplesPerPixel = 3 if color else 1
    item.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        # Basic Color Image Sequence: Planar Configuration 0001H, color-by-plane (C.13.5.1)
        item.PlanarConfiguration = 1
    item.Rows, item.Columns = int(box.shape[0]), int(box.shape[1])
    item.PixelAspectRatio = [1, 1]
    if box.dtype == np.uint8:
        item.BitsAllocated, item.BitsStored, item.HighBit = 8, 8, 7
    else:  # 12 bits stored in 16
        item.BitsAllocated, item.BitsStored, item.HighBit = 16, 12, 11
    item.PixelRepresentation = 0
    data = np.ascontiguousarray(np.moveaxis(box, 2, 0)) if color else box
    item.PixelData = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    item["PixelData"].VR = "OB" if box.dtype == np.uint8 else "OW"
    return item


def print_films(printer: Printer, layout: FilmLayout, films: Sequence[Film], *,
                color: bool = False, label: str = "",
                progress: Callable[[str], None] | None = None) -> PrintResult:
    """Print rendered films on one association. Raises PeerError (transient: retry later) or
    PrintError (the printer refused: the message has its status and words)."""
    result = PrintResult(printer=printer.name)
    s = _Session(printer, color, result)
    s.open()
    ok = False
    try:
        _run(s, layout, films, label, progress or (lambda _m: None))
        ok = True
    except MediasvcError:
        ok = True  # the printer answered (a refusal, FAILURE): the association is still sound
        raise
    finally:
        s.close(ok)
    return result


def _run(s: _Session, layout: FilmLayout, films: Sequence[Film], label: str,
         progress: Callable[[str], None]) -> None:
    a, meta, result = s.a, s.meta, s.result
    # Printer status (PS3.4 H.4.6.2.1)
    status, attrs = a.send_n_get([Tag(0x21100010), Tag(0x21100020)], PRINTER, PRINTER_INSTANCE,
                                 msg_id=s.next_id(), meta_uid=meta)
    s.check("N-GET Printer", status)
    if attrs is not None:
        result.printer_status = str(attrs.get("PrinterStatus", "") or "")
        result.printer_status_info = str(attrs.get("PrinterStatusInfo", "") or "")
    info = f" ({result.printer_status_info})" if result.printer_status_info else ""
    if result.printer_status == "FAILURE":
        raise PeerError(f"printer {s.printer.label} reports status "
                        f"FAILURE{info}", transient=True)
    if result.printer_status == "WARNING":
        result.warnings.append(f"printer status WARNING{info}")
        log.warning("printer %s: status WARNING%s", s.printer.name, info)

    session_attrs = layout.film_session_attributes()
    if label:
        session_attrs["FilmSessionLabel"] = label[:64]
    sent = _dataset(session_attrs)
    status, _ = a.send_n_create(sent, FILM_SESSION, None, msg_id=s.next_id(), meta_uid=meta)
    s.check("N-CREATE Film Session", status, sent)
    session_uid = s.created_uid()
    try:
        for number, film in enumerate(films, 1):
            s.check_events()
            _print_film(s, layout, film, session_uid)
            result.films += 1
            result.images += len(film.boxes)
            progress(f"film {number}/{len(films)} printed")
        if s.stop_reason:  # after the last print action: the films were accepted
            result.warnings.append(f"after printing: {s.stop_reason}")
    finally:
        if s.assoc is not None and s.a.is_established:
            status = a.send_n_delete(FILM_SESSION, session_uid, msg_id=s.next_id(),
                                     meta_uid=meta)
            if "Status" in status and status.Status != 0:
                result.warnings.append(f"N-DELETE Film Session: 0x{status.Status:04X}")


def _print_film(s: _Session, layout: FilmLayout, film: Film, session_uid: str) -> None:
    a, meta = s.a, s.meta
    fb = _dataset(layout.film_box_attributes())
    ref = Dataset()
    ref.ReferencedSOPClassUID = FILM_SESSION
    ref.ReferencedSOPInstanceUID = session_uid
    fb.ReferencedFilmSessionSequence = [ref]
    status, created = a.send_n_create(fb, FILM_BOX, None, msg_id=s.next_id(), meta_uid=meta)
    s.check("N-CREATE Film Box", status, fb)
    box_uid = s.created_uid()
    refs = list(created.get("ReferencedImageBoxSequence", [])) if created is not None else []
    if len(refs) < len(film.boxes):
        raise PrintError(f"printer {s.printer.name}: the film box has {len(refs)} image boxes, "
                         f"{len(film.boxes)} needed")
    seq = "BasicColorImageSequence" if meta == COLOR_META else "BasicGrayscaleImageSequence"
    s.check_events()
    for position, (item, box) in enumerate(zip(refs, film.boxes, strict=False), 1):
        ib = Dataset()
        ib.ImageBoxPosition = position
        ib.Polarity = "NORMAL"  # polarity is applied by the renderer: the pixels are final
        setattr(ib, seq, [_image_item(box)])
        # The Image Box SOP class comes from the film box's reference, not the meta class.
        status, _ = a.send_n_set(ib, item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID,
                                 msg_id=s.next_id(), meta_uid=meta)
        s.check(f"N-SET Image Box {position}", status)
    s.check_events()
    status, _ = a.send_n_action(None, 1, FILM_BOX, box_uid, msg_id=s.next_id(), meta_uid=meta)
    s.check("N-ACTION Print Film Box", status)
    status = a.send_n_delete(FILM_BOX, box_uid, msg_id=s.next_id(), meta_uid=meta)
    s.check("N-DELETE Film Box", status)
