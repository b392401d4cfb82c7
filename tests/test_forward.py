"""`--forward AE@HOST:PORT` against a real Orthanc (Debian package) started by the test."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from mediasvc.errors import UsageError
from mediasvc.store.forward import Destination
from mediasvc.store.index import Store

sys.path.insert(0, str(Path(__file__).parent))
from conftest import SHARED, mediasvc, stop_pid  # noqa: E402

DPORT, HPORT = 44101, 48101
DOWN_DPORT, DOWN_HPORT = 44102, 48102   # started only once the test says the PACS is back


def _rest(path: str, hport: int = HPORT) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{hport}{path}", timeout=5) as resp:
        return json.load(resp)


@contextlib.contextmanager
def running_orthanc(work: Path, dport: int, hport: int) -> Iterator[str]:
    """Orthanc via ../shared/pacs-peer/start_orthanc.sh; waits for its REST API; killed after."""
    out = subprocess.run(["sh", str(SHARED / "pacs-peer" / "start_orthanc.sh"), str(work),
                          str(dport), str(hport)], capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip().splitlines()[-1])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _rest("/system", hport)
                break
            except OSError:
                if time.monotonic() > deadline:
                    log = (work / "orthanc.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"Orthanc did not start on {hport}: {log}")
                time.sleep(0.3)
        yield f"ORTHANC@127.0.0.1:{dport}"
    finally:
        stop_pid(pid)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), DPORT, HPORT) as dest:
        yield dest


def _orthanc_sop_uids(hport: int = HPORT) -> set[str]:
    found = _rest("/instances?expand", hport)
    assert isinstance(found, list)
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}


def test_forward_to_orthanc(orthanc: str, small_corpus: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = mediasvc("import", small_corpus, "--store", store, "--forward", orthanc, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["forward"]["sent"] == 12 and rep["forward"]["ok"]
    expected = {pydicom.dcmread(p).SOPInstanceUID for p in small_corpus.rglob("*.dcm")}
    assert expected <= _orthanc_sop_uids()
    # The bytes Orthanc holds are ours: compare one instance's pixel data.
    with Store.open(store) as st:
        row = st.instances()[0]
        assert {f["state"] for f in st.forward_states(orthanc)} == {"sent"}
    oid = [i["ID"] for i in _rest("/instances?expand")  # type: ignore[attr-defined]
           if i["MainDicomTags"]["SOPInstanceUID"] == row.sop_uid][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{HPORT}/instances/{oid}/file") as resp:
        got = pydicom.dcmread(io.BytesIO(resp.read()))
    assert got.PixelData == pydicom.dcmread(row.path).PixelData


def test_pacs_down_is_clear_and_retryable(small_corpus: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", DOWN_DPORT)) != 0, "port unexpectedly in use"
    down = f"ORTHANC@127.0.0.1:{DOWN_DPORT}"
    store = tmp_path / "store"
    proc = mediasvc("import", small_corpus, "--store", store, "--forward", down,
                    "--retries", "1")
    assert proc.returncode == 3
    assert "complete: every referenced file was read" in proc.stdout   # the import itself is done
    err = proc.stderr
    assert down in err and "cannot connect" in err and "12 instance(s) stay queued" in err
    assert f"mediasvc store forward {down}" in err
    assert "Traceback" not in err and "pynetdicom" not in err
    with Store.open(store) as st:
        states = st.forward_states(down)
        assert len(states) == 12 and {s["state"] for s in states} == {"pending"}
    # The PACS comes back: the queued instances go out with `mediasvc store forward`.
    with running_orthanc(tmp_path / "orthanc", DOWN_DPORT, DOWN_HPORT):
        proc = mediasvc("store", "forward", down, "--store", store, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["sent"] == 12
        expected = {pydicom.dcmread(p).SOPInstanceUID for p in small_corpus.rglob("*.dcm")}
        assert _orthanc_sop_uids(DOWN_HPORT) == expected
    with Store.open(store) as st:
        assert {s["state"] for s in st.forward_states(down)} == {"sent"}
    # Nothing left to send: a further retry is a no-op.
    proc = mediasvc("store", "forward", down, "--store", store, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["sent"] == 0


def test_destination_syntax() -> None:
    d = Destination.parse("PACS@10.0.0.5:104")
    assert (d.ae_title, d.host, d.port) == ("PACS", "10.0.0.5", 104)
    for bad in ("PACS", "PACS@host", "@host:104", "PACS@host:99999", "A" * 17 + "@h:1"):
        with pytest.raises(UsageError):
            Destination.parse(bad)
