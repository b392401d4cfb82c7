#!/usr/bin/env python3
"""Benchmark: one 14INX17IN STANDARD\\4,5 film of 20 CT images (512x512, 16-bit) rendered for
a 320 dpi printer (4480 x 5440 pixels, boxes of 1120 x 1088) and printed on DCMTK's dcmprscp
(started here with TCP_NODELAY=1 by ../shared/print-peer/start_dcmprscp.sh).

Reported per film, median of --runs:
    decode     reading and decoding the 20 files (pydicom)
    render     modality LUT, window, fit into the box (cubic), annotations: target < 1 s
    send       mediasvc's Print SCU, association to release
    total      decode + render + send
    bare       the same pre-rendered boxes sent by a bare pynetdicom client (no status checks,
               no event handling): what dcmprscp needs to receive them, the reference

    python3 bench/bench_print.py [--runs 5] [--bits 8|12] [--port 41110]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from mediasvc.printing.layouts import film_layout
from mediasvc.printing.printers import adhoc_printer
from mediasvc.printing.render import RenderOptions, load_images, render_films
from mediasvc.printing.scu import _image_item, print_films

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIASVC_SHARED", REPO.parent / "shared"))
META = "1.2.840.10008.5.1.1.9"


def listening(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def start_dcmprscp(work: Path, port: int) -> int:
    out = subprocess.run(["sh", str(SHARED / "print-peer" / "start_dcmprscp.sh"), str(work),
                          str(port)], capture_output=True, text=True, check=True)
    pid = int(out.stdout.split()[-1])
    for _ in range(200):
        if listening(port):
            return pid
        time.sleep(0.05)
    raise SystemExit(f"dcmprscp did not start on port {port}")


def bare_send(port: int, boxes: list[Dataset]) -> float:
    """The minimum a Print SCU must do for one film, straight pynetdicom."""
    last: dict[str, Dataset] = {}

    def on_recv(event: evt.Event) -> None:
        last["cmd"] = event.message.command_set

    t0 = time.perf_counter()
    ae = AE(ae_title="BARE")
    ae.add_requested_context(META, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="PRINTRIG",
                         evt_handlers=[(evt.EVT_DIMSE_RECV, on_recv)])
    assert assoc.is_established
    fs = Dataset()
    fs.NumberOfCopies = "1"
    assoc.send_n_create(fs, "1.2.840.10008.5.1.1.1", None, meta_uid=META)
    session = last["cmd"].AffectedSOPInstanceUID
    fb = Dataset()
    fb.ImageDisplayFormat = "STANDARD\\4,5"
    fb.FilmSizeID = "14INX17IN"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.1.1"
    ref.ReferencedSOPInstanceUID = session
    fb.ReferencedFilmSessionSequence = [ref]
    _st, created = assoc.send_n_create(fb, "1.2.840.10008.5.1.1.2", None, meta_uid=META)
    film = last["cmd"].AffectedSOPInstanceUID
    for pos, (item, ib) in enumerate(zip(created.ReferencedImageBoxSequence, boxes,
                                         strict=True), 1):
        ds = Dataset()
        ds.ImageBoxPosition = pos
        ds.BasicGrayscaleImageSequence = [ib]
        assoc.send_n_set(ds, item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID,
                         meta_uid=META)
    assoc.send_n_action(None, 1, "1.2.840.10008.5.1.1.2", film, meta_uid=META)
    assoc.send_n_delete("1.2.840.10008.5.1.1.2", film, meta_uid=META)
    assoc.send_n_delete("1.2.840.10008.5.1.1.1", session, meta_uid=META)
    assoc.release()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bits", type=int, choices=(8, 12), default=8)
    ap.add_argument("--port", type=int, default=41110)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_print.") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"),
                        str(work / "ct"), "--patients", "1", "--studies", "1", "--series", "1",
                        "--images", "20", "--rows", "512", "--cols", "512"],
                       check=True, capture_output=True)
        files = sorted((work / "ct").rglob("*.dcm"))
        assert len(files) == 20
        pid = start_dcmprscp(work / "dcmprscp", args.port)
        try:
            printer = replace(adhoc_printer(f"PRINTRIG@127.0.0.1:{args.port}"), dpi=320)
            layout = replace(film_layout("ct-4x5"), bits=args.bits)
            matrix = printer.film_matrix(layout.film_size, layout.orientation)
            opts = RenderOptions.from_layout(layout, text="BENCH")
            rows: dict[str, list[float]] = {k: [] for k in
                                            ("decode", "render", "send", "total", "bare")}
            mb = 0.0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                images = load_images(files)
                t1 = time.perf_counter()
                films = render_films(images, layout, matrix, opts)
                t2 = time.perf_counter()
                print_films(printer, layout, films)
                t3 = time.perf_counter()
                items = [_image_item(b) for b in films[0].boxes]
                mb = sum(len(i.PixelData) for i in items) / 1e6
                rows["decode"].append(t1 - t0)
                rows["render"].append(t2 - t1)
                rows["send"].append(t3 - t2)
                rows["total"].append(t3 - t0)
                rows["bare"].append(bare_send(args.port, items))
        except Exception:
            log = work / "dcmprscp" / "log" / "dcmprscp.out"
            print("dcmprscp log (tail):\n" + "\n".join(log.read_text().splitlines()[-15:]))
            raise
        finally:
            os.kill(pid, signal.SIGTERM)
        med = {k: statistics.median(v) for k, v in rows.items()}
        box = films[0].boxes[0].shape
        print(f"film 14INX17IN STANDARD\\4,5 at 320 dpi: {matrix[0]}x{matrix[1]} px, "
              f"20 boxes of {box[1]}x{box[0]}, {args.bits}-bit, {mb:.1f} MB of pixels; "
              f"median of {args.runs} runs")
        for k in ("decode", "render", "send", "total", "bare"):
            print(f"  {k:7s} {med[k]:6.3f} s   (min {min(rows[k]):.3f}, max {max(rows[k]):.3f})")
        print(f"  render per film {'<' if med['render'] < 1 else '>='} 1 s target")
        print(f"  ratio send / bare pynetdicom  = {med['send'] / med['bare']:.2f}")
        print(f"  ratio total / bare pynetdicom = {med['total'] / med['bare']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
