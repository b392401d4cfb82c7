"""A Print SCP written with pynetdicom, for what dcmprscp cannot do: Basic Color Print
Management (dcmprscp rejects its context), and faults on demand (printer status FAILURE,
a film size refused with 0x0106, association rejection).

It is a real SCP on a real socket: the SCU under test talks DICOM to it over loopback. It keeps
what it was sent so that a test can compare pixels:

    scp = PrintSCP(11300, film_sizes=("14INX17IN",)).start()
    ...  # print to COLORPRN@127.0.0.1:11300
    scp.printed[0]["boxes"][1]     # numpy array of image box 1 of the first printed film
    scp.stop()

Run alone (``python tests/print_scp_color.py PORT``) it serves until interrupted.
"""

from __future__ import annotations

import sys
import threading
from io import BytesIO
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (
    BasicColorPrintManagementMeta,
    BasicGrayscalePrintManagementMeta,
)

FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAY_BOX = "1.2.840.10008.5.1.1.4"
COLOR_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
COLOR_META = "1.2.840.10008.5.1.1.18"


def boxes_in(display_format: str) -> int:
    kind, _, counts = display_format.partition("\\")
    values = [int(v) for v in counts.split(",")]
    return values[0] * values[1] if kind == "STANDARD" else sum(values)


def decode_item(item: Dataset) -> np.ndarray:
    """Pixels of an image box item, read by pydicom (not by the code under test)."""
    ds = Dataset()
    ds.update(item)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    arr: np.ndarray = ds.pixel_array
    return arr


class PrintSCP:
    def __init__(self, port: int, *, ae_title: str = "COLORPRN",
                 film_sizes: tuple[str, ...] = ("14INX17IN", "8INX10IN", "A4"),
                 printer_status: str = "NORMAL", printer_status_info: str = "NORMAL",
                 color: bool = True, grayscale: bool = True,
                 film_box_limit: int | None = None,
                 event_report: tuple[int, int, str] | None = None,
                 ssl_context: Any = None) -> None:
        self.port = port
        self.ae_title = ae_title
        self.film_sizes = set(film_sizes)
        self.printer_status = printer_status
        self.printer_status_info = printer_status_info
        self.color, self.grayscale = color, grayscale
        # Film boxes accepted before answering 0xC602 "print queue full" (None: no limit).
        self.film_box_limit = film_box_limit
        # (film box number, event type 1/2/3, Printer Status Info): a Printer N-EVENT-REPORT
        # sent to the SCU while that film box is created (PS3.4 H.4.6.1.1).
        self.event_report = event_report
        self.film_box_count = 0
        self.ssl_context = ssl_context  # TLS (PS3.15 Basic TLS Secure Transport) when set
        self.sessions: dict[str, Dataset] = {}
        self.film_boxes: dict[str, dict[str, Any]] = {}
        self.image_boxes: dict[str, tuple[str, int]] = {}  # uid -> (film box uid, position)
        self.printed: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.associations = 0
        self._lock = threading.Lock()
        self._server: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> PrintSCP:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True  # a wrong called AE title is rejected (PS3.8 reason 7)
        if self.grayscale:
            ae.add_supported_context(BasicGrayscalePrintManagementMeta)
        if self.color:
            ae.add_supported_context(BasicColorPrintManagementMeta)
        handlers = [(evt.EVT_N_GET, self._n_get), (evt.EVT_N_CREATE, self._n_create),
                    (evt.EVT_N_SET, self._n_set), (evt.EVT_N_ACTION, self._n_action),
                    (evt.EVT_N_DELETE, self._n_delete), (evt.EVT_ESTABLISHED, self._est)]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=handlers, ssl_context=self.ssl_context)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _est(self, event: Any) -> None:
        self.associations += 1

    # -- handlers -------------------------------------------------------------------------
    def _n_get(self, event: Any) -> tuple[int, Dataset | None]:
        self.requests.append("N-GET")
        ds = Dataset()
        ds.PrinterStatus = self.printer_status
        ds.PrinterStatusInfo = self.printer_status_info
        return 0x0000, ds

    def _n_create(self, event: Any) -> tuple[Any, Dataset | None]:
        req = event.request
        attrs = event.attribute_list
        cls = str(req.AffectedSOPClassUID)
        uid = str(req.AffectedSOPInstanceUID or generate_uid())
        meta = event.context.abstract_syntax
        if cls == FILM_SESSION:
            self.requests.append("N-CREATE Film Session")
            self.sessions[uid] = attrs
            out = Dataset()
            out.update(attrs)
            out.AffectedSOPInstanceUID = uid
            return 0x0000, out
        if cls == FILM_BOX:
            self.requests.append("N-CREATE Film Box")
            size = str(attrs.get("FilmSizeID", "14INX17IN"))
            if size not in self.film_sizes:
                status = Dataset()
                status.Status = 0x0106
                status.ErrorComment = f"Film Size ID (2010,0050) {size} not loaded"[:64]
                return status, None
            if self.film_box_limit is not None and len(self.printed) >= self.film_box_limit:
                status = Dataset()
                status.Status = 0xC602
                status.ErrorComment = "print queue full"
                return status, None
            self.film_box_count += 1
            if self.event_report and self.event_report[0] == self.film_box_count:
                self._send_event_report(event, self.event_report[1], self.event_report[2])
            n = boxes_in(str(attrs.ImageDisplayFormat))
            box_class = COLOR_BOX if meta == COLOR_META else GRAY_BOX
            refs = []
            for position in range(1, n + 1):
                item = Dataset()
                item.ReferencedSOPClassUID = box_class
                item.ReferencedSOPInstanceUID = generate_uid()
                self.image_boxes[item.ReferencedSOPInstanceUID] = (uid, position)
                refs.append(item)
            self.film_boxes[uid] = {"attributes": attrs, "boxes": {}, "meta": meta}
            out = Dataset()
            out.update(attrs)
            out.ReferencedImageBoxSequence = refs
            out.AffectedSOPInstanceUID = uid
            return 0x0000, out
        return 0x0118, None  # No such SOP class

    def _send_event_report(self, event: Any, event_type: int, info: str) -> None:
        """Send the N-EVENT-REPORT-RQ without waiting for its response: a handler runs in the
        association's reactor thread, so pynetdicom's blocking send_n_event_report cannot be
        used here; the SCU's response is then ignored by this SCP."""
        ds = Dataset()
        ds.PrinterStatusInfo = info
        ts = event.context.transfer_syntax
        req = N_EVENT_REPORT()
        req.MessageID = 900 + self.film_box_count
        req.AffectedSOPClassUID = PRINTER
        req.AffectedSOPInstanceUID = "1.2.840.10008.5.1.1.17"
        req.EventTypeID = event_type
        req.EventInformation = BytesIO(encode(ds, ts.is_implicit_VR, ts.is_little_endian))
        self.requests.append(f"N-EVENT-REPORT {event_type}")
        event.assoc.dimse.send_msg(req, event.context.context_id)

    def _n_set(self, event: Any) -> tuple[int, Dataset | None]:
        req = event.request
        uid = str(req.RequestedSOPInstanceUID)
        if uid not in self.image_boxes:
            return 0x0112, None
        film_uid, position = self.image_boxes[uid]
        mods = event.modification_list
        seq = mods.get("BasicColorImageSequence") or mods.get("BasicGrayscaleImageSequence")
        if not seq or int(mods.get("ImageBoxPosition", 0)) != position:
            return 0x0120, None  # Missing attribute
        self.requests.append(f"N-SET Image Box {position}")
        self.film_boxes[film_uid]["boxes"][position] = decode_item(seq[0])
        self.film_boxes[film_uid].setdefault("items", {})[position] = seq[0]
        return 0x0000, None

    def _n_action(self, event: Any) -> tuple[int, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        if uid not in self.film_boxes:
            return 0x0112, None
        self.requests.append("N-ACTION")
        fb = self.film_boxes[uid]
        with self._lock:
            self.printed.append({"film_box": fb["attributes"], "boxes": dict(fb["boxes"]),
                                 "items": dict(fb.get("items", {})), "meta": fb["meta"]})
        return 0x0000, None

    def _n_delete(self, event: Any) -> int:
        self.requests.append("N-DELETE")
        return 0x0000


if __name__ == "__main__":
    scp = PrintSCP(int(sys.argv[1]) if len(sys.argv) > 1 else 11300).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        scp.stop()
