"""Network ingress of `mediasvc serve` against real peers: DCMTK storescu, Orthanc sending
through its REST API, a pynetdicom Media Creation Management SCU, and Orthanc receiving the
forwarded imports. Every listener and peer on free loopback ports, stopped in teardown."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import make_corpus, run
from ingress_support import CD_ROUTE, free_port, ingress_config, storescu, wait_listening
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from test_service_support import Service, write_config

sys.path.insert(0, str(Path(__file__).parent))
from test_forward import running_orthanc  # noqa: E402

MCM = "1.2.840.10008.5.1.1.33"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    dport, hport = free_port(), free_port()
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), dport, hport) as dest:
        yield dest, dport, hport


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory,
        orthanc: tuple[str, int, int]) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("ingress")
    port = free_port()
    routes = CD_ROUTE + """
[[ingress.route]]
name = "imp"
called_ae = "IMPORT"
action = "import"
"""
    extra = ingress_config(port, quiet=1.0, routes=routes,
                           allowed=("MODALITY", "ORTHANC", "MCMSCU")) + f"""
[forward]
destination = "{orthanc[0]}"
retries = 1
"""
    cfg = write_config(base / "mediasvc.toml", extra=extra)
    s = Service(base / "root", cfg).start()
    s.port = port  # type: ignore[attr-defined]
    wait_listening(s.root)
    yield s
    s.stop()
    s.close()


def _study(out: Path, series: int = 3, images: int = 4, seed: int = 1) -> list[Path]:
    make_corpus(out, "--patients", "1", "--studies", "1", "--series", str(series), "--images",
                str(images), "--rows", "64", "--cols", "64", "--seed", str(seed))
    return sorted(out.rglob("*.dcm"))


def _sops(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def _wait_done(svc: Service, pred: Any, timeout: float = 90) -> list[Path]:
    found: list[Path] = []

    def ok() -> bool:
        found[:] = [d for d in sorted((svc.root / "done").iterdir()) if pred(d)
                    and (d / "report.json").is_file()]
        return bool(found)

    svc.wait_for(ok, timeout, "a job from the network")
    return found


def _medium(done: Path, tmp: Path) -> tuple[set[str], list[str]]:
    """The SOP instances the ISO's DICOMDIR lists, and dciodvfy's errors."""
    isos = list(done.glob("*.iso"))
    assert len(isos) == 1, list(done.iterdir())
    out = tmp / f"x-{done.name}"
    r = run(["xorriso", "-osirrox", "on", "-indev", isos[0], "-extract", "/", out])
    assert r.returncode == 0, r.stderr
    v = run(["dciodvfy", out / "DICOMDIR"])
    errors = [x for x in (v.stdout + v.stderr).splitlines() if x.startswith("Error")]
    ds = pydicom.dcmread(out / "DICOMDIR")
    listed = {str(r.ReferencedSOPInstanceUIDInFile) for r in ds.DirectoryRecordSequence
              if r.DirectoryRecordType == "IMAGE"}
    files = {str(pydicom.dcmread(out / Path(*r.ReferencedFileID)).SOPInstanceUID)
             for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"}
    assert files == listed
    return listed, errors


def test_storescu_study_becomes_one_iso_then_late_instance_a_second(
        svc: Service, tmp_path: Path) -> None:
    files = _study(tmp_path / "study", series=3, images=4, seed=11)
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    r = storescu(svc.port, files)  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr
    [done] = _wait_done(svc, lambda d: d.name.startswith("cd-"))
    listed, errors = _medium(done, tmp_path)
    assert errors == []
    assert listed == _sops(files)            # every instance, 3 series, on one medium
    rep = json.loads((done / "report.json").read_text())
    assert rep["received"]["instances"] == 12 and rep["received"]["calling_ae"] == "MODALITY"
    assert len({pydicom.dcmread(f).SeriesInstanceUID for f in files}) == 3

    # Late: one new instance of the same study, plus a re-send of one already burned.
    late = pydicom.dcmread(files[0])
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    late_path = tmp_path / "late.dcm"
    late.save_as(late_path)
    r = storescu(svc.port, [late_path, files[1], files[1]])  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr
    second = _wait_done(svc, lambda d: d.name.startswith("cd-") and d != done)
    assert len(second) == 1
    listed2, errors2 = _medium(second[0], tmp_path)
    assert errors2 == [] and listed2 == {str(late.SOPInstanceUID)}   # the duplicate: not again
    rep2 = json.loads((second[0] / "report.json").read_text())
    assert rep2["received"]["follows_jobs"] == [rep["job"]]
    assert "late instances" in (second[0] / "report.txt").read_text()
    assert study_uid == str(late.StudyInstanceUID)


def test_orthanc_sends_a_study_through_its_rest_api(svc: Service, orthanc: tuple[str, int, int],
                                                    tmp_path: Path) -> None:
    _, _, hport = orthanc
    files = _study(tmp_path / "o", series=2, images=3, seed=12)
    base = f"http://127.0.0.1:{hport}"
    for f in files:
        req = urllib.request.Request(f"{base}/instances", data=f.read_bytes(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()
    body = json.dumps({"AET": "BURN_CD", "Host": "127.0.0.1", "Port": svc.port}).encode()  # type: ignore[attr-defined]
    urllib.request.urlopen(urllib.request.Request(f"{base}/modalities/mediasvc", data=body,
                                                  method="PUT"), timeout=10).read()
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    found = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{base}/tools/find", data=json.dumps({"Level": "Study", "Query": {
            "StudyInstanceUID": study_uid}}).encode(), method="POST"), timeout=10).read())
    assert len(found) == 1
    out = urllib.request.urlopen(urllib.request.Request(
        f"{base}/modalities/mediasvc/store", data=found[0].encode(), method="POST"),
        timeout=60).read()
    assert json.loads(out)["FailedInstancesCount"] == 0
    name = f"cd-{__import__('hashlib').sha1(study_uid.encode()).hexdigest()[:10]}"
    [done] = _wait_done(svc, lambda d: d.name == name)
    listed, errors = _medium(done, tmp_path)
    assert errors == [] and listed == _sops(files)
    assert json.loads((done / "report.json").read_text())["received"]["calling_ae"] == "ORTHANC"


def _mcm_assoc(port: int, responses: list[Dataset] | None = None) -> Any:
    """An MCM SCU association; ``responses`` gets the command set of every response received
    (pynetdicom's send_n_create does not return the N-CREATE-RSP's Affected SOP Instance
    UID, PS3.7 10.1.5.1.4: it is read there, as the print SCU does)."""

    def on_recv(event: Any) -> None:
        cmd = event.message.command_set
        if responses is not None and int(cmd.get("CommandField", 0)) & 0x8000:
            responses.append(cmd)

    ae = AE(ae_title="MCMSCU")
    ae.add_requested_context(MCM)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")   # Secondary Capture (the corpus')
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")   # CT
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4")   # MR
    from pynetdicom import evt

    assoc = ae.associate("127.0.0.1", port, ae_title="MEDIASVC",
                         evt_handlers=[(evt.EVT_DIMSE_RECV, on_recv)])
    assert assoc.is_established
    return assoc


def test_mcm_request_is_burned_with_exactly_its_instances(svc: Service,
                                                          tmp_path: Path) -> None:
    files = _study(tmp_path / "m", series=2, images=4, seed=13)
    port = svc.port  # type: ignore[attr-defined]
    responses: list[Dataset] = []
    assoc = _mcm_assoc(port, responses)
    try:
        for f in files:
            st = assoc.send_c_store(pydicom.dcmread(f))
            assert st.Status == 0x0000
        chosen = [pydicom.dcmread(f, stop_before_pixels=True) for f in files[:5]]
        req = Dataset()
        req.ReferencedSOPSequence = Sequence()
        for ds in chosen:
            it = Dataset()
            it.ReferencedSOPClassUID = ds.SOPClassUID
            it.ReferencedSOPInstanceUID = ds.SOPInstanceUID
            it.RequestedMediaApplicationProfile = "STD-GEN-CD"
            req.ReferencedSOPSequence.append(it)
        req.StorageMediaFileSetID = "MCMTEST"
        req.LabelUsingInformationExtractedFromInstances = "NO"
        req.LabelText = "Test label"
        req.NumberOfCopies = 1
        req.RequestPriority = "HIGH"
        # No Affected SOP Instance UID in the N-CREATE-RQ: the SCP assigns it (PS3.7
        # 10.1.5.1.4) and it comes back in the response's command set, not in its data set.
        st, attrs = assoc.send_n_create(req, MCM)
        assert st.Status == 0x0000 and attrs.ExecutionStatus == "IDLE"
        assert "AffectedSOPInstanceUID" not in attrs
        rsp = responses[-1]
        assert int(rsp.CommandField) == 0x8140   # N-CREATE-RSP (PS3.7 E.1)
        uid = str(rsp.AffectedSOPInstanceUID)
        assert uid and uid.replace(".", "").isdigit()
        st, _ = assoc.send_n_action(None, 1, MCM, uid)
        assert st.Status == 0x0000
        st, _ = assoc.send_n_action(None, 1, MCM, uid)        # a second initiate
        assert st.Status == 0xA510
        seen = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            st, got = assoc.send_n_get([0x21000020, 0x21000030, 0x00081198], MCM, uid)
            assert st.Status == 0x0000
            seen.append(str(got.ExecutionStatus))
            if got.ExecutionStatus in ("DONE", "FAILURE"):
                break
            time.sleep(0.2)
        assert seen[-1] == "DONE", seen
        assert set(seen) <= {"PENDING", "CREATING", "DONE"}
        assert got.ExecutionStatusInfo == "NORMAL" and "FailedSOPSequence" not in got

        # A request naming an instance never received: FAILURE, NO_INSTANCE, Failed SOP Seq.
        bad = Dataset()
        it = Dataset()
        it.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        it.ReferencedSOPInstanceUID = generate_uid()
        bad.ReferencedSOPSequence = Sequence([it])
        uid2 = generate_uid()   # this one given by the SCU, and kept
        assert assoc.send_n_create(bad, MCM, uid2)[0].Status == 0x0000
        assert str(responses[-1].AffectedSOPInstanceUID) == uid2
        assert assoc.send_n_create(bad, MCM, uid2)[0].Status == 0x0111   # used already
        assert assoc.send_n_action(None, 1, MCM, uid2)[0].Status == 0x0000
        st, got = assoc.send_n_get([0x21000020, 0x21000030, 0x00081198], MCM, uid2)
        assert (got.ExecutionStatus, got.ExecutionStatusInfo) == ("FAILURE", "NO_INSTANCE")
        assert got.FailedSOPSequence[0].ReferencedSOPInstanceUID == it.ReferencedSOPInstanceUID
        assert got.FailedSOPSequence[0].FailureReason == 0x0112
    finally:
        assoc.release()
    [done] = _wait_done(svc, lambda d: d.name.startswith("mcm-"))
    listed, errors = _medium(done, tmp_path)
    assert errors == []
    assert listed == {str(ds.SOPInstanceUID) for ds in chosen}   # exactly the referenced 5
    from mediasvc.ingress.state import snapshot
    from mediasvc.service.config import load_service_config

    snap = snapshot(load_service_config(svc.config, svc.root))
    by_uid = {r["sop_instance_uid"]: r for r in snap["mcm_requests"]}
    assert by_uid[uid]["status"] == "DONE" and by_uid[uid2]["status_info"] == "NO_INSTANCE"


def test_unknown_calling_or_called_ae_is_rejected(svc: Service, tmp_path: Path) -> None:
    port = svc.port  # type: ignore[attr-defined]
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="BURN_CD")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)
    ae2 = AE(ae_title="MODALITY")
    ae2.add_requested_context("1.2.840.10008.1.1")
    assoc = ae2.associate("127.0.0.1", port, ae_title="NOSUCHAE")
    assert assoc.is_rejected and assoc.acceptor.primitive.diagnostic == 0x07
    files = _study(tmp_path / "u", series=1, images=1, seed=14)
    r = storescu(port, files, calling="INTRUDER")
    assert r.returncode != 0 and "Association Rejected" in r.stdout + r.stderr
    assert not any((svc.root / "ingress" / "studies").rglob("*.dcm"))


def test_forwarded_service_import_arrives_in_orthanc(svc: Service,
                                                     orthanc: tuple[str, int, int],
                                                     tmp_path: Path) -> None:
    _, _, hport = orthanc
    files = _study(tmp_path / "f", series=1, images=3, seed=15)
    r = storescu(svc.port, files, called="IMPORT")  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr
    [done] = _wait_done(svc, lambda d: d.name.startswith("imp-"))
    rep = json.loads((done / "report.json").read_text())
    assert rep["result"]["forward"]["sent"] == 3 and rep["result"]["forward"]["ok"]
    with urllib.request.urlopen(f"http://127.0.0.1:{hport}/instances?expand") as resp:
        held = {i["MainDicomTags"]["SOPInstanceUID"] for i in json.load(resp)}
    assert _sops(files) <= held
    from mediasvc.ingress.state import forward_status
    from mediasvc.service.config import load_service_config

    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    rows = [x for x in forward_status(load_service_config(svc.config, svc.root))
            if x["study_uid"] == study_uid]
    assert rows and rows[0]["state"] == "sent" and rows[0]["sent"] == 3


def test_drop_folder_import_is_forwarded_too(svc: Service, orthanc: tuple[str, int, int],
                                             tmp_path: Path) -> None:
    _, _, hport = orthanc
    files = _study(tmp_path / "d", series=1, images=2, seed=16)
    tmp = svc.root / "drop" / "import" / ".dropjob"
    tmp.mkdir()
    for f in files:
        shutil.copy(f, tmp / f.name)
    tmp.rename(tmp.with_name("dropjob"))
    where, rep = svc.wait_result("dropjob")
    assert where == "done" and rep["result"]["forward"]["sent"] == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{hport}/instances?expand") as resp:
        held = {i["MainDicomTags"]["SOPInstanceUID"] for i in json.load(resp)}
    assert _sops(files) <= held
