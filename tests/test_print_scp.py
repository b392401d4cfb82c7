"""Printing over real associations: DCMTK's dcmprscp (Basic Grayscale) started by the tests,
and the pynetdicom Print SCP of tests/print_scp_color.py (Basic Color, faults on demand).

What dcmprscp stored (HG_*.dcm per image box, SP_*.dcm per printed film) is read back with
pydicom and compared pixel for pixel with the renderer's boxes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from conftest import SHARED, TESTDATA, make_corpus, mediasvc
from PIL import Image
from print_scp_color import PrintSCP

from mediasvc.config import load_toml
from mediasvc.errors import PeerError, PrintError, UsageError
from mediasvc.jobqueue import Backoff, State
from mediasvc.printing.job import PrintRequest, prepare, print_request
from mediasvc.printing.printers import Printer, parse_printers
from mediasvc.printing.queue import PrintQueue

# Ports: dcmprscp 41101 (shared by this module), 41102 (started late: "printer comes back");
# pynetdicom SCPs 11300-11310.
DCMPRSCP_PORT, LATE_PORT = 41101, 41102
INST = TESTDATA / "instances"


# -- peers -----------------------------------------------------------------------------------

def listening(port: int) -> bool:
    """Whether something listens on the port, without connecting to it (dcmprscp serves one
    association at a time and would log a probe as a failed association)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@dataclass
class Dcmprscp:
    work: Path
    port: int
    pid: int

    @property
    def database(self) -> Path:
        return self.work / "database"

    def files(self) -> set[str]:
        return set(os.listdir(self.database))

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not Path(f"/proc/{self.pid}").exists() or not listening(self.port):
                return
            time.sleep(0.05)


def start_dcmprscp(work: Path, port: int) -> Dcmprscp:
    out = subprocess.run(["sh", str(SHARED / "print-peer" / "start_dcmprscp.sh"), str(work),
                          str(port)], capture_output=True, text=True, check=True)
    peer = Dcmprscp(work, port, int(out.stdout.strip().splitlines()[-1]))
    for _ in range(200):
        if listening(port):
            return peer
        time.sleep(0.05)
    peer.stop()
    raise RuntimeError(f"dcmprscp did not listen on {port}: {(work / 'log').glob('*')}")


@pytest.fixture(scope="module")
def dcmprscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dcmprscp]:
    peer = start_dcmprscp(tmp_path_factory.mktemp("dcmprscp"), DCMPRSCP_PORT)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = make_corpus(tmp_path_factory.mktemp("print") / "ct", "--patients", "1", "--studies",
                      "1", "--series", "1", "--images", "21", "--rows", "64", "--cols", "64")
    files = sorted(out.rglob("*.dcm"),
                   key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    return [str(p) for p in files]


CONFIG = """
[printers.dryview]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {dcmprscp}
timeout = 10
formats = ["STANDARD", "ROW", "COL"]
film_sizes = ["14INX17IN", "8INX10IN", "10INX12IN"]
media = ["BLUE FILM", "CLEAR FILM", "PAPER"]
dpi = 60
bits = [8, 12]
presentation_lut = true

[printers.late]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {late}
timeout = 5
dpi = 40
bits = [8, 12]

[printers.color]
ae_title = "COLORPRN"
host = "127.0.0.1"
port = 11300
timeout = 5
dpi = 50
color = true
bits = [8, 12]
"""

LAYOUT = """
name = "test"
display_format = "STANDARD\\\\2,2"
film_size = "10INX12IN"
orientation = "PORTRAIT"
magnification = "BILINEAR"
smoothing = "NONE"
border_density = "150"
empty_image_density = "WHITE"
min_density = 20
max_density = 320
trim = "YES"
medium = "CLEAR FILM"
destination = "PROCESSOR"
copies = 2
priority = "HIGH"
bits = {bits}

[annotation]
top_left = "{{PatientName}}\\n{{PatientID}}"
bottom_left = "Se {{SeriesNumber}} Im {{InstanceNumber}}"
bottom_right = "{{text}}"
size = 0.05
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("config")
    path = d / "mediasvc.toml"
    path.write_text(CONFIG.format(dcmprscp=DCMPRSCP_PORT, late=LATE_PORT))
    for bits in (8, 12):
        (d / f"test{bits}.toml").write_text(LAYOUT.format(bits=bits).replace(
            'name = "test"', f'name = "test{bits}"'))
    return path


@pytest.fixture(scope="module")
def printers(config: Path) -> dict[str, Printer]:
    return parse_printers(load_toml(config).table("printers"))


def layout_path(config: Path, bits: int) -> str:
    return str(config.parent / f"test{bits}.toml")


# -- reading back what dcmprscp stored --------------------------------------------------------

def stored_films(peer: Dcmprscp, new: set[str]) -> list[tuple[pydicom.Dataset,
                                                               dict[int, np.ndarray]]]:
    """(Stored Print, {Image Box Position: Hardcopy Grayscale pixels}) per printed film."""
    hg = {}
    for name in new:
        if name.startswith("HG_"):
            ds = pydicom.dcmread(peer.database / name)
            hg[str(ds.SOPInstanceUID)] = ds
    films = []
    for name in sorted(n for n in new if n.startswith("SP_")):
        sp = pydicom.dcmread(peer.database / name)
        boxes = {}
        for item in sp[0x2130, 0x0040].value:  # Image Box Content Sequence
            uid = str(item.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
            boxes[int(item.ImageBoxPosition)] = hg[uid].pixel_array
        films.append((sp, boxes))
    return films


def print_to_dcmprscp(peer: Dcmprscp, request: PrintRequest, printer: Printer
                      ) -> tuple[Any, Any, list[tuple[pydicom.Dataset, dict[int, np.ndarray]]]]:
    before = peer.files()
    job = prepare(request, printer)
    result = print_request(request, printer, prepared=job)
    return job, result, stored_films(peer, peer.files() - before)


def assert_same_films(job: Any, stored: list[tuple[pydicom.Dataset, dict[int, np.ndarray]]]
                      ) -> None:
    """Every stored film equals one rendered film, box for box, pixel for pixel."""
    assert len(stored) == len(job.films)
    matched = set()
    for _sp, boxes in stored:
        for i, film in enumerate(job.films):
            if i in matched or len(boxes) != len(film.boxes):
                continue
            if all(np.array_equal(boxes[p + 1], b) for p, b in enumerate(film.boxes)):
                matched.add(i)
                break
        else:
            raise AssertionError("a film stored by dcmprscp matches no rendered film")
    assert matched == set(range(len(job.films)))


# -- dcmprscp: layouts, pixels, film box attributes --------------------------------------------

@pytest.mark.parametrize(("fmt", "count", "bits"), [
    ("STANDARD\\1,1", 1, 12), ("STANDARD\\2,2", 4, 8), ("STANDARD\\3,4", 12, 12),
    ("STANDARD\\4,5", 20, 12),
])
def test_dcmprscp_prints_layout_pixel_for_pixel(dcmprscp: Dcmprscp, corpus: list[str],
                                                config: Path, printers: dict[str, Printer],
                                                fmt: str, count: int, bits: int) -> None:
    request = PrintRequest(files=tuple(corpus[:count]), layout=layout_path(config, bits),
                           format=fmt, text="FOR REVIEW")
    job, result, stored = print_to_dcmprscp(dcmprscp, request, printers["dryview"])
    assert result.films == 1 and result.images == count and result.printer_status == "NORMAL"
    assert_same_films(job, stored)
    sp, boxes = stored[0]
    assert sorted(boxes) == list(range(1, count + 1))
    first = boxes[1]
    assert first.dtype == (np.uint16 if bits == 12 else np.uint8)
    cols, rows = (int(v) for v in fmt.split("\\")[1].split(","))
    width, height = printers["dryview"].film_matrix("10INX12IN", "PORTRAIT")
    assert first.shape == (height // rows, width // cols)
    fb = sp[0x2130, 0x0030].value[0]  # Film Box Content Sequence
    asked = {"ImageDisplayFormat": fmt, "FilmOrientation": "PORTRAIT",
             "FilmSizeID": "10INX12IN", "MagnificationType": "BILINEAR",
             "SmoothingType": "NONE", "BorderDensity": "150", "EmptyImageDensity": "WHITE",
             "MinDensity": 20, "MaxDensity": 320, "Trim": "YES"}
    assert {k: fb.get(k) for k in asked} == asked


def test_dcmprscp_landscape(dcmprscp: Dcmprscp, corpus: list[str], config: Path,
                            printers: dict[str, Printer]) -> None:
    landscape = config.parent / "landscape.toml"
    landscape.write_text(Path(layout_path(config, 8)).read_text()
                         .replace('name = "test8"', 'name = "landscape"')
                         .replace('"PORTRAIT"', '"LANDSCAPE"')
                         .replace('"STANDARD\\\\2,2"', '"STANDARD\\\\3,2"'))
    request = PrintRequest(files=tuple(corpus[:6]), layout=str(landscape))
    job, _result, stored = print_to_dcmprscp(dcmprscp, request, printers["dryview"])
    assert_same_films(job, stored)
    width, height = job.films[0].size
    assert (width, height) == (720, 600)  # 10x12 inch at 60 dpi, turned
    assert stored[0][1][1].shape == (300, 240)
    assert stored[0][0][0x2130, 0x0030].value[0].FilmOrientation == "LANDSCAPE"


def test_dcmprscp_multi_film_job(dcmprscp: Dcmprscp, corpus: list[str], config: Path,
                                 printers: dict[str, Printer]) -> None:
    # 10 images on 2x2: three films, the last with two boxes
    request = PrintRequest(files=tuple(corpus[:10]), layout=layout_path(config, 8))
    job, result, stored = print_to_dcmprscp(dcmprscp, request, printers["dryview"])
    assert result.films == 3 and result.images == 10
    assert sorted(len(b) for _, b in stored) == [2, 4, 4]
    assert_same_films(job, stored)
    # distinct images on distinct boxes: instance numbers 1..10 were burned in
    all_boxes = [b for film in job.films for b in film.boxes]
    assert len({b.tobytes() for b in all_boxes}) == 10


def test_cli_prints_with_preview_and_json(dcmprscp: Dcmprscp, corpus: list[str], config: Path,
                                          tmp_path: Path) -> None:
    before = dcmprscp.files()
    preview = tmp_path / "film.png"
    proc = mediasvc("print", *corpus[:3], "--config", config, "--printer", "dryview",
                    "--layout", layout_path(config, 12), "--copies", "1", "--preview", preview,
                    "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["status"], out["films"], out["images"]) == ("printed", 1, 3)
    [(_sp, boxes)] = stored_films(dcmprscp, dcmprscp.files() - before)
    png = np.asarray(Image.open(preview))
    width, height = 600, 720  # 10x12 inch at 60 dpi
    assert png.shape == (height, width)
    # the preview shows exactly the pixels the printer got (12 bits shown as 8)
    assert np.array_equal(png[:height // 2, :width // 2], (boxes[1] >> 4).astype(np.uint8))
    assert png[height // 2:, width // 2:].min() == 255  # empty box: WHITE empty density


def test_cli_refuses_before_association(dcmprscp: Dcmprscp, corpus: list[str], config: Path
                                        ) -> None:
    before = dcmprscp.files()
    proc = mediasvc("print", corpus[0], "--config", config, "--printer", "dryview",
                    "--format", "STANDARD\\1,1", "--film-size", "A3")
    assert proc.returncode == 2
    assert "Film Size ID (2010,0050) A3" in proc.stderr
    assert dcmprscp.files() == before
    log = (dcmprscp.work / "log" / "dcmprscp.out").read_text()
    assert "A3" not in log  # never sent


def test_printer_refusal_names_attribute(dcmprscp: Dcmprscp, corpus: list[str]) -> None:
    # An ad-hoc printer has no capability list: dcmprscp itself refuses A3 (0x0106)
    proc = mediasvc("print", corpus[0], "--printer", f"PRINTRIG@127.0.0.1:{DCMPRSCP_PORT}",
                    "--format", "STANDARD\\1,1", "--film-size", "A3")
    assert proc.returncode == 1
    assert "0x0106" in proc.stderr and "FilmSizeID=A3" in proc.stderr


def test_nothing_listening_is_transient(corpus: list[str]) -> None:
    proc = mediasvc("print", corpus[0], "--printer", "PRINTRIG@127.0.0.1:41109",
                    "--format", "STANDARD\\1,1", "--json")
    assert proc.returncode == 3
    out = json.loads(proc.stdout)
    assert out["transient"] is True and "no association" in out["error"]


def test_dcmprscp_refuses_color_meta(dcmprscp: Dcmprscp, corpus: list[str]) -> None:
    request = PrintRequest(files=(corpus[0],), format="STANDARD\\1,1", color=True)
    from mediasvc.printing.printers import adhoc_printer
    printer = adhoc_printer(f"PRINTRIG@127.0.0.1:{DCMPRSCP_PORT}", color=True)
    with pytest.raises(PrintError, match="does not accept Basic Color"):
        print_request(request, printer)


# -- color, against the pynetdicom SCP --------------------------------------------------------

@pytest.fixture
def color_scp() -> Iterator[PrintSCP]:
    scp = PrintSCP(11300).start()
    yield scp
    scp.stop()


def test_color_print_pixel_for_pixel(color_scp: PrintSCP, corpus: list[str],
                                     printers: dict[str, Printer]) -> None:
    us = INST / "US" / "orthanc-tests__2023-04-21-RLEPlanarConfigurationYBR_FULL.dcm"
    request = PrintRequest(files=(str(us), corpus[0]), layout="mr-2x2", color=True,
                           copies=3, label="color test")
    job = prepare(request, printers["color"])
    result = print_request(request, printers["color"], prepared=job)
    assert result.films == 1 and result.images == 2
    [printed] = color_scp.printed
    assert printed["meta"] == "1.2.840.10008.5.1.1.18"
    assert sorted(printed["boxes"]) == [1, 2]
    for pos, box in enumerate(job.films[0].boxes, 1):
        got = printed["boxes"][pos]
        assert got.shape == box.shape and box.shape[2] == 3
        assert np.array_equal(got, box)
    item = printed["items"][1]
    assert (item.PhotometricInterpretation, item.SamplesPerPixel, item.BitsStored,
            item.PlanarConfiguration) == ("RGB", 3, 8, 1)
    # an RGB ultrasound stays in color; the CT is gray in RGB
    us_box, ct_box = printed["boxes"][1], printed["boxes"][2]
    assert (us_box[..., 0] != us_box[..., 2]).any()
    assert np.array_equal(ct_box[..., 0], ct_box[..., 2])
    [session] = color_scp.sessions.values()
    assert (session.NumberOfCopies, session.MediumType, session.FilmSessionLabel) == \
        (3, "BLUE FILM", "color test")
    assert color_scp.requests[:3] == ["N-GET", "N-CREATE Film Session", "N-CREATE Film Box"]
    assert color_scp.requests[-2:] == ["N-DELETE", "N-DELETE"]


def test_row_layout_on_grayscale_meta(color_scp: PrintSCP, corpus: list[str],
                                      printers: dict[str, Printer]) -> None:
    # dcmprscp takes STANDARD formats only; ROW\1,2 goes to the pynetdicom SCP
    request = PrintRequest(files=tuple(corpus[:3]), layout="paper-row-1-2", text="report")
    job = prepare(request, printers["color"])
    print_request(request, printers["color"], prepared=job)
    [printed] = color_scp.printed
    assert printed["meta"] == "1.2.840.10008.5.1.1.9"
    assert printed["film_box"].ImageDisplayFormat == "ROW\\1,2"
    assert printed["film_box"].FilmSizeID == "A4"
    wide, small1, small2 = (printed["boxes"][p] for p in (1, 2, 3))
    assert abs(wide.shape[1] - 2 * small1.shape[1]) <= 1 and small1.shape == small2.shape
    for pos, box in enumerate(job.films[0].boxes, 1):
        assert np.array_equal(printed["boxes"][pos], box)


def test_printer_warning_is_reported(color_scp: PrintSCP, corpus: list[str],
                                     printers: dict[str, Printer]) -> None:
    color_scp.printer_status, color_scp.printer_status_info = "WARNING", "SUPPLY LOW"
    result = print_request(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"),
                           printers["color"])
    assert result.films == 1
    assert result.warnings == ["printer status WARNING (SUPPLY LOW)"]


def test_printer_event_report_warning_is_reported(corpus: list[str],
                                                  printers: dict[str, Printer]) -> None:
    scp = PrintSCP(11300, event_report=(1, 2, "SUPPLY LOW")).start()
    try:
        result = print_request(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"),
                               printers["color"])
    finally:
        scp.stop()
    assert result.films == 1 and len(scp.printed) == 1
    assert result.events == ["printer status WARNING: SUPPLY LOW"]
    assert "printer status WARNING: SUPPLY LOW" in result.warnings


def test_queue_printer_failure_event_stops_then_resumes(tmp_path: Path, corpus: list[str],
                                                        printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    scp = PrintSCP(11300, event_report=(2, 3, "FILM JAM")).start()
    try:
        job = queue.submit(PrintRequest(files=tuple(corpus[:2]), format="STANDARD\\1,1"),
                           "color")
        [ran] = queue.run_pending()
        assert ran.state == State.RETRYING
        assert "stopped the job: printer status FAILURE: FILM JAM" in (ran.error or "")
        assert ran.steps["films_printed"] == 1 and len(scp.printed) == 1
        scp.event_report = None
        [ran] = queue.run_pending()
        assert ran.id == job.id and ran.state == State.DONE
        assert len(scp.printed) == 2  # the second film only
    finally:
        scp.stop()


def make_pki(d: Path) -> None:
    """A CA, a printer certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=test CA")
    for name, ext in (("printer", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


def test_tls_print_with_client_certificate(tmp_path: Path, corpus: list[str]) -> None:
    import ssl
    make_pki(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.pem"))
    server.verify_mode = ssl.CERT_REQUIRED  # the printer wants our certificate
    server.load_cert_chain(str(tmp_path / "printer.pem"), str(tmp_path / "printer.key"))
    cfg = tmp_path / "tls.toml"
    cfg.write_text(f"""
[printers.secure]
ae_title = "COLORPRN"
host = "127.0.0.1"
port = 11302
timeout = 5
dpi = 30
[printers.secure.tls]
cert = "{tmp_path / 'client.pem'}"
key = "{tmp_path / 'client.key'}"
ca = "{tmp_path / 'ca.pem'}"
[printers.nocert]
ae_title = "COLORPRN"
host = "127.0.0.1"
port = 11302
timeout = 5
dpi = 30
[printers.nocert.tls]
ca = "{tmp_path / 'ca.pem'}"
""")
    configured = parse_printers(load_toml(cfg).table("printers"))
    scp = PrintSCP(11302, ssl_context=server).start()
    try:
        request = PrintRequest(files=(corpus[0],), format="STANDARD\\1,1")
        job = prepare(request, configured["secure"])
        result = print_request(request, configured["secure"], prepared=job)
        assert result.films == 1
        assert np.array_equal(scp.printed[0]["boxes"][1], job.films[0].boxes[0])
        with pytest.raises(PeerError):  # no client certificate: the handshake fails
            print_request(request, configured["nocert"])
        assert len(scp.printed) == 1
    finally:
        scp.stop()


# -- the print queue: faults keep the job queued until the printer comes back -----------------

def make_queue(tmp_path: Path, printers: dict[str, Printer]) -> PrintQueue:
    return PrintQueue(tmp_path / "print.sqlite", printers, backoff=Backoff(base=0.0))


def test_queue_nothing_listening_then_printer_comes_back(tmp_path: Path, corpus: list[str],
                                                         printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    job = queue.submit(PrintRequest(files=tuple(corpus[:2]), format="STANDARD\\1,2"), "late")
    [ran] = queue.run_pending()
    assert ran.state == State.RETRYING and "no association" in (ran.error or "")
    # a new PrintQueue on the same file sees the same job (persistent)
    assert make_queue(tmp_path, printers).status(job.id).state == State.RETRYING
    peer = start_dcmprscp(tmp_path / "late", LATE_PORT)
    try:
        before = peer.files()
        [ran] = queue.run_pending()
        assert ran.state == State.DONE, ran.error
        assert ran.result is not None and ran.result["films"] == 1
        assert len([n for n in peer.files() - before if n.startswith("HG_")]) == 2
    finally:
        peer.stop()


def test_queue_association_rejected_then_accepted(tmp_path: Path, corpus: list[str],
                                                  printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    scp = PrintSCP(11300, ae_title="NOTCOLOR").start()  # rejects called AE "COLORPRN"
    try:
        job = queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"), "color")
        [ran] = queue.run_pending()
        assert ran.state == State.RETRYING
        assert "rejected the association" in (ran.error or "")
        assert "called AE title not recognized" in (ran.error or "")
    finally:
        scp.stop()
    scp = PrintSCP(11300).start()
    try:
        [ran] = queue.run_pending()
        assert ran.id == job.id and ran.state == State.DONE, ran.error
        assert len(scp.printed) == 1
    finally:
        scp.stop()


def test_queue_film_size_refused_then_loaded(tmp_path: Path, corpus: list[str],
                                             printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    scp = PrintSCP(11300, film_sizes=("8INX10IN",)).start()
    try:
        job = queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1",
                                         film_size="14INX17IN"), "color")
        [ran] = queue.run_pending()
        assert ran.state == State.RETRYING
        assert "0x0106" in (ran.error or "")
        assert "Film Size ID (2010,0050) 14INX17IN not loaded" in (ran.error or "")
        assert scp.printed == []
        scp.film_sizes.add("14INX17IN")  # the operator loads the magazine
        [ran] = queue.run_pending()
        assert ran.id == job.id and ran.state == State.DONE, ran.error
        assert scp.printed[0]["film_box"].FilmSizeID == "14INX17IN"
    finally:
        scp.stop()


def test_queue_printer_failure_status_then_normal(tmp_path: Path, corpus: list[str],
                                                  printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    scp = PrintSCP(11300, printer_status="FAILURE", printer_status_info="FILM JAM").start()
    try:
        job = queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"), "color")
        [ran] = queue.run_pending()
        assert ran.state == State.RETRYING
        assert "status FAILURE (FILM JAM)" in (ran.error or "")
        assert "N-CREATE Film Session" not in scp.requests  # refused right after N-GET
        scp.printer_status, scp.printer_status_info = "NORMAL", "NORMAL"
        [ran] = queue.run_pending()
        assert ran.id == job.id and ran.state == State.DONE
        assert len(scp.printed) == 1
        events = [e.state for e in queue.jobs.history(job.id)]
        assert events == ["queued", "running", "retrying", "running", "done"]
    finally:
        scp.stop()


def test_queue_resumes_after_the_films_already_printed(tmp_path: Path, corpus: list[str],
                                                       printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    scp = PrintSCP(11300, film_box_limit=1).start()  # "queue full" from the second film on
    try:
        job = queue.submit(PrintRequest(files=tuple(corpus[:3]), format="STANDARD\\1,1"),
                           "color")
        [ran] = queue.run_pending()
        assert ran.id == job.id
        assert ran.state == State.RETRYING and "0xC602" in (ran.error or "")
        assert ran.steps["films_printed"] == 1 and len(scp.printed) == 1
        scp.film_box_limit = None
        [ran] = queue.run_pending()
        assert ran.state == State.DONE and ran.result is not None
        assert ran.result["films"] == 3
        assert len(scp.printed) == 3  # films 2 and 3 only: nothing printed twice
        rendered = prepare(PrintRequest(files=tuple(corpus[:3]), format="STANDARD\\1,1"),
                           printers["color"]).films
        for film, printed in zip(rendered, scp.printed, strict=True):
            assert np.array_equal(printed["boxes"][1], film.boxes[0])
    finally:
        scp.stop()


def test_queue_priority_then_fifo(tmp_path: Path, corpus: list[str],
                                  printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    for label, prio in (("low", "LOW"), ("med1", "MED"), ("high", "HIGH"), ("med2", "MED")):
        queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1", priority=prio,
                                  label=label), "color")
    scp = PrintSCP(11300).start()
    try:
        done = queue.run_pending()
        assert [j.state for j in done] == [State.DONE] * 4
        labels = [str(s.FilmSessionLabel) for s in scp.sessions.values()]
        assert labels == ["high", "med1", "med2", "low"]
        assert [j.payload["request"]["label"] for j in queue.list()] == \
            ["low", "med1", "high", "med2"]
    finally:
        scp.stop()


def test_queue_refuses_at_submit_what_the_printer_cannot_take(
        tmp_path: Path, corpus: list[str], printers: dict[str, Printer]) -> None:
    queue = make_queue(tmp_path, printers)
    with pytest.raises(UsageError, match="Film Size ID"):
        queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1",
                                  film_size="A3"), "dryview")
    with pytest.raises(UsageError, match="unknown printer"):
        queue.submit(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"), "nosuch")
    assert queue.list() == []


def test_direct_print_fault_is_peer_error(corpus: list[str], printers: dict[str, Printer]
                                          ) -> None:
    with pytest.raises(PeerError) as err:
        print_request(PrintRequest(files=(corpus[0],), format="STANDARD\\1,1"),
                      printers["late"])
    assert err.value.transient
