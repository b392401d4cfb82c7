"""End to end: `mediasvc serve --root TMP` as a real process, drops in, results out.

Real peers only: the ISO is read back with xorriso and its DICOMDIR checked by dciodvfy; print
jobs go to DCMTK's dcmprscp; imports land in the real store and its MDS is read back by
`mediasvc mds`. sd_notify goes over a real datagram socket (NOTIFY_SOCKET).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import SHARED, make_corpus, mediasvc, run, stop_pid
from test_service_support import (
    Service,
    drop_file_atomically,
    drop_folder,
    drop_job,
    write_config,
)

PRINT_PORT = 41201      # dcmprscp of this module (41200-41299 is the service's range)
DEAD_PORT = 41202       # nothing listens here: a printer that is down


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("study") / "src"
    make_corpus(out, "--patients", "1", "--studies", "1", "--series", "2", "--images", "4",
                "--rows", "64", "--cols", "64")
    return sorted(p for p in out.rglob("*") if p.is_file())


def _dcmprscp(work: Path, port: int) -> subprocess.Popen[bytes] | int:
    out = subprocess.run(["sh", str(SHARED / "print-peer" / "start_dcmprscp.sh"), str(work),
                          str(port)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("dcmprscp") is None:
        pytest.fail("dcmprscp (dcmtk) is not installed")
    work = tmp_path_factory.mktemp("dcmprscp")
    pid = _dcmprscp(work, PRINT_PORT)
    assert isinstance(pid, int)
    time.sleep(0.5)
    yield work / "database"
    stop_pid(pid)


PRINTERS = f"""
[printers.laser]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {PRINT_PORT}
film_sizes = ["14INX17IN", "8INX10IN"]
dpi = 50
[printers.down]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {DEAD_PORT}
timeout = 2
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service (inotify observer) for the end-to-end tests of this module."""
    base = tmp_path_factory.mktemp("svc")
    root = base / "root"
    cfg = write_config(base / "mediasvc.toml", extra=PRINTERS, workers=2)
    s = Service(root, cfg, watchdog_usec=400_000).start()
    yield s
    code = s.stop()
    s.close()
    assert code == 0, s.log()[-3000:]


def _extract_iso(iso: Path, dest: Path) -> None:
    r = run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dest])
    assert r.returncode == 0, r.stderr


def _dciodvfy_errors(dicomdir: Path) -> list[str]:
    r = run(["dciodvfy", dicomdir])
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def test_export_copied_file_by_file_becomes_an_iso(svc: Service, study: list[Path],
                                                   tmp_path: Path) -> None:
    job = svc.root / "drop" / "export" / "STD-GEN-CD" / "job1"
    drop_folder(study, job, pause=0.05)  # slower than nothing, faster than the settle time
    where, report = svc.wait_result("job1")
    assert where == "done", report
    assert report["state"] == "done" and report["group"] == "STD-GEN-CD"
    iso = svc.root / "done" / "job1" / "job1.iso"
    assert iso.is_file()
    assert (svc.root / "done" / "job1" / "report.txt").read_text().startswith("mediasvc job")
    out = tmp_path / "iso"
    _extract_iso(iso, out)
    assert _dciodvfy_errors(out / "DICOMDIR") == []
    # a PDI volume, as `mediasvc export` + `mediasvc burn` make it
    assert (out / "README.TXT").is_file() and (out / "INDEX.HTM").is_file()
    ds = pydicom.dcmread(out / "DICOMDIR")
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == len(study)
    sops = {str(r.ReferencedSOPInstanceUIDInFile) for r in images}
    assert sops == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                    for f in study}
    # the input is gone from the drop folder and the spool only now that the ISO is there
    assert not job.exists()
    assert list((svc.root / "spool").iterdir()) == []
    # settle point to finished ISO, recorded for the closing note's figure
    assert report["times"]["settle_to_finish_seconds"] > 0


def _bad_drops(drop: Path, study: list[Path]) -> dict[str, str]:
    """Create the bad drops; return name -> expected words of the reason."""
    export = drop / "export" / "STD-GEN-CD"
    (export / "notdicom").mkdir()
    (export / "notdicom" / "readme.txt").write_text("not an image\n")
    (export / "truncated").mkdir()
    data = study[0].read_bytes()
    (export / "truncated" / "IMG1.dcm").write_bytes(data[: len(data) // 2])
    (export / "empty").mkdir()
    (export / "linkout").mkdir()
    shutil.copyfile(study[1], export / "linkout" / "IMG1.dcm")
    os.symlink("/etc/passwd", export / "linkout" / "passwd")
    outside = drop.parent.parent / "outside-study"
    outside.mkdir(exist_ok=True)
    shutil.copyfile(study[3], outside / "IMG1.dcm")
    os.symlink(outside, export / "dirlink")
    (export / "badkey").mkdir()
    shutil.copyfile(study[2], export / "badkey" / "IMG1.dcm")
    (export / "badkey" / "job.toml").write_text('label = "x"\nburner = "drive0"\n')
    return {
        "notdicom": "not a DICOM file",
        "truncated": "IMG1.dcm",
        "empty": "the job folder is empty",
        "linkout": "symbolic link to /etc/passwd, outside the job folder; not followed",
        "badkey": "burner: unknown key",
        "dirlink": f"is a symbolic link to {outside}; links out of the drop folder are not",
    }


def test_bad_drops_fail_with_a_reason_and_the_service_keeps_running(
        svc: Service, study: list[Path]) -> None:
    expected = _bad_drops(svc.root / "drop", study)
    for name, words in expected.items():
        where, report = svc.wait_result(name)
        assert where == "failed", (name, report)
        assert words in report["reason"], (name, report["reason"])
        assert words in (svc.root / "failed" / name / "report.txt").read_text()
    # the input is kept next to the report (the symlink itself, never its target)
    assert (svc.root / "failed" / "notdicom" / "input" / "readme.txt").is_file()
    assert (svc.root / "failed" / "linkout" / "input" / "passwd").is_symlink()
    assert (svc.root.parent / "outside-study" / "IMG1.dcm").is_file()  # never touched
    truncated = json.loads((svc.root / "failed" / "truncated" / "report.json").read_text())
    assert "truncated" in truncated["reason"].lower() or "rejected" in truncated["reason"]
    assert svc.alive()
    # ... and still works: status and a good job after the bad ones
    st = json.loads(mediasvc("status", "--json", "--config", svc.config,
                             "--root", svc.root).stdout)
    assert st["running"] and st["counts"]["failed"] >= len(expected)
    drop_folder(study[:2], svc.root / "drop" / "export" / "STD-GEN-CD" / "after")
    (svc.root / "drop" / "export" / "STD-GEN-CD" / "after" / ".ready").touch()
    where, _ = svc.wait_result("after")
    assert where == "done"


def test_retry_after_fixing_a_failed_job(svc: Service, study: list[Path]) -> None:
    job = svc.root / "drop" / "export" / "STD-GEN-CD" / "fixme"
    drop_job(study[:3], job, 'priority = "URGENT"\n')
    where, report = svc.wait_result("fixme")
    assert where == "failed" and "priority" in report["reason"]
    # the operator fixes job.toml in failed/fixme/input and retries
    (svc.root / "failed" / "fixme" / "input" / "job.toml").write_text('priority = "HIGH"\n')
    r = mediasvc("jobs", "retry", str(report["job"]), "--config", svc.config,
                 "--root", svc.root)
    assert r.returncode == 0, r.stderr
    where, report = svc.wait_result("fixme")
    assert where == "done", report
    assert report["attempts"] == 2
    shown = mediasvc("jobs", "show", str(report["job"]), "--json", "--config", svc.config,
                     "--root", svc.root)
    states = [h["state"] for h in json.loads(shown.stdout)["history"]]
    assert states == ["queued", "running", "failed", "queued", "running", "done"]


def test_print_job_reaches_dcmprscp(svc: Service, study: list[Path], printer: Path) -> None:
    before = set(printer.glob("HG_*.dcm")) if printer.exists() else set()
    job = svc.root / "drop" / "print" / "laser" / "film1"
    drop_job(study[:4], job, 'format = "STANDARD\\\\2,2"\nfilm_size = "8INX10IN"\n')
    where, report = svc.wait_result("film1")
    assert where == "done", report
    assert report["result"]["films"] == 1
    new: list[Path] = []

    def stored() -> bool:  # dcmprscp may write its files a moment after answering
        new[:] = sorted(set(printer.glob("HG_*.dcm")) - before)
        return len(new) >= 4

    svc.wait_for(stored, 15, "dcmprscp to store the image boxes")
    assert len(new) == 4   # one Hardcopy Grayscale image per image box
    stored = [pydicom.dcmread(p) for p in printer.glob("SP_*.dcm")]
    assert any(str(ds.FilmBoxContentSequence[0].ImageDisplayFormat) == "STANDARD\\2,2"
               for ds in stored if "FilmBoxContentSequence" in ds)


def test_printer_down_keeps_the_job_retrying_then_cancel(svc: Service,
                                                          study: list[Path]) -> None:
    job = svc.root / "drop" / "print" / "down" / "film2"
    drop_job(study[:1], job, 'format = "STANDARD\\\\1,1"\n')

    def retrying() -> list[dict[str, object]]:
        st = json.loads(mediasvc("status", "--json", "--config", svc.config,
                                 "--root", svc.root).stdout)
        return [a for a in st["active"] if a["state"] == "retrying" and a["kind"] == "print"]

    seen: list[dict[str, object]] = []
    svc.wait_for(lambda: bool(seen.extend(retrying()) or seen), 60,
                 "the print job to be retrying")
    active = seen[0]
    assert "PRINTRIG@127.0.0.1" in str(active["error"]) or str(DEAD_PORT) in str(active["error"])
    r = mediasvc("jobs", "cancel", str(active["id"]), "--config", svc.config,
                 "--root", svc.root)
    assert r.returncode == 0, r.stderr
    where, report = svc.wait_result("film2")
    assert where == "failed" and report["state"] == "cancelled"


def test_iso_dropped_into_import_ends_in_the_store_with_its_mds(svc: Service,
                                                                study: list[Path]) -> None:
    iso = svc.root / "done" / "job1" / "job1.iso"
    if not iso.exists():
        pytest.skip("needs the ISO of the export test")
    drop_file_atomically(iso, svc.root / "drop" / "import" / "disc1.iso")
    where, report = svc.wait_result("disc1.iso")
    assert where == "done", report
    assert report["result"]["counts"]["imported"] == len(study)
    assert report["result"]["complete"] is True
    mds = mediasvc("mds", "--store", svc.root / "store", "--format", "json")
    assert mds.returncode == 0, mds.stderr
    studies = json.loads(mds.stdout)
    uid = str(pydicom.dcmread(study[0], stop_before_pixels=True).StudyInstanceUID)
    assert uid in json.dumps(studies)
    # the same disc again: done, and nothing added twice
    drop_file_atomically(iso, svc.root / "drop" / "import" / "disc2.iso")
    where, report = svc.wait_result("disc2.iso")
    assert where == "done"
    assert report["result"]["counts"]["imported"] == 0
    assert report["result"]["counts"]["duplicate"] == len(study)


def test_sd_notify_ready_status_and_watchdog(svc: Service) -> None:
    assert svc.count("READY=1") == 1
    ready = next(m for m in svc.messages if "READY=1" in m.split("\n"))
    assert f"MAINPID={svc.proc.pid if svc.proc else 0}" in ready
    assert "STATUS=" in ready and "queued" in ready
    # WATCHDOG_USEC=400000: keep-alives every 0.2 s while healthy
    n = svc.count("WATCHDOG=1")
    time.sleep(1.0)
    assert svc.count("WATCHDOG=1") >= n + 3
    statuses = [m for m in svc.messages if m.startswith("STATUS=")]
    assert any("done" in m for m in statuses)


def test_polling_observer_and_sigterm(tmp_path: Path, study: list[Path]) -> None:
    """The polling observer (NFS/CIFS shares) settles a drop too; SIGTERM stops cleanly."""
    cfg = write_config(tmp_path / "poll.toml", observer="polling", workers=1,
                       target="staging")
    s = Service(tmp_path / "root", cfg).start()
    try:
        drop_folder(study, s.root / "drop" / "export" / "STD-GEN-CD" / "p1", pause=0.02)
        where, report = s.wait_result("p1")
        assert where == "done", report
        assert (s.root / "done" / "p1" / "media" / "DICOMDIR").is_file()
        assert _dciodvfy_errors(s.root / "done" / "p1" / "media" / "DICOMDIR") == []
        st = json.loads((s.root / "run" / "status.json").read_text())
        assert st["observer"] == "PollingObserver"
        assert s.stop() == 0
        assert s.count("STOPPING=1") == 1
        assert "mediasvc stopped" in s.log()
    finally:
        s.close()


def test_second_service_on_the_same_root_is_refused(svc: Service) -> None:
    r = mediasvc("serve", "--config", svc.config, "--root", svc.root, timeout=60)
    assert r.returncode == 3
    assert "another mediasvc serve" in r.stderr and str(svc.proc.pid if svc.proc else "") \
        in r.stderr


def test_config_errors_name_file_key_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[watch]\nsettle_seconds = "soon"\n')
    r = mediasvc("serve", "--config", cfg, "--root", tmp_path / "r")
    assert r.returncode == 2
    assert f"{cfg}: watch.settle_seconds = 'soon': must be a number" in r.stderr
    cfg.write_text('[export]\ntarget = "drive9"\n')
    r = mediasvc("serve", "--config", cfg, "--root", tmp_path / "r")
    assert r.returncode == 2 and "export.target = 'drive9'" in r.stderr
    cfg.write_text('[jobs]\nworker = 3\n')
    r = mediasvc("serve", "--config", cfg, "--root", tmp_path / "r")
    assert r.returncode == 2 and "jobs.worker" in r.stderr and "unknown key" in r.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.db"))


def test_embedded_default_root_is_var(tmp_path: Path) -> None:
    """`mediasvc serve` with nothing else: everything under ./var (checked without serving)."""
    code = ("from mediasvc.service.config import load_service_config as l; c = l(); "
            "print(c.root, c.drop, c.db, c.settle_seconds, c.export_target)")
    r = run([sys.executable, "-c", code], cwd=tmp_path)
    root = tmp_path.resolve() / "var"
    assert r.stdout.split() == [str(root), str(root / "drop"), str(root / "mediasvc.db"),
                                "10.0", "iso"]


def _emulator(hot: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(Path(__file__).parent / "publisher_emulator.py"),
                             "--kind", "ptburn", str(hot), "--step", "0.1", *flags])


def _publisher_service(tmp_path: Path, study: list[Path], name: str) -> tuple[Service, Path]:
    """A service with a ptburn burner on tmp_path/ptburn, running an export+burn job NAME."""
    hot = tmp_path / "ptburn"
    hot.mkdir()
    cfg = write_config(tmp_path / "svc.toml", workers=1,
                       extra=f'[burners.robot]\ntarget = "ptburn:{hot}"\nverify = false\n')
    s = Service(tmp_path / "root", cfg).start()
    job = s.root / "drop" / "export" / "STD-GEN-CD" / name
    drop_job(study, job, 'target = "robot"\n')
    (job / ".ready").touch()
    return s, hot


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait()


def test_burn_interrupted_by_a_crash_is_not_burned_twice(tmp_path: Path,
                                                         study: list[Path]) -> None:
    """SIGKILL after the job file was written, before the publisher took it: after restart
    the job file is withdrawn (the claim says it is ours) and submitted again; exactly one
    disc is burned and the job is done."""
    s, hot = _publisher_service(tmp_path, study, "disc1")
    emulator = None
    try:
        s.wait_for(lambda: bool(list(hot.glob("*.JRQ"))), 60, "the publisher job file")
        [first] = list(hot.glob("*.JRQ"))
        s.kill()
        s.start()
        s.wait_for(lambda: (hot / "MEDIASVC" / first.with_suffix(".WDN").name).exists(), 60,
                   "the left-over job file to be withdrawn")
        s.wait_for(lambda: bool(list(hot.glob("*.JRQ"))), 60, "the job file submitted again")
        emulator = _emulator(hot)
        where, report = s.wait_result("disc1")
        assert where == "done", report
        time.sleep(0.5)
        [disc] = list(hot.glob("*.DON"))  # the emulator burned one disc
        assert disc.stem != first.stem and "VolumeId=" in disc.read_text()
        assert not list(hot.glob("*.JRQ")) and not list(hot.glob("MEDIASVC/CLAIM-*"))
        [volume] = report["result"]["burn"]["volumes"]
        assert volume["copies"][0]["status"] == "done"
        assert s.stop() == 0
    finally:
        _stop(emulator)
        s.close()


def test_burn_the_publisher_took_before_a_crash_is_adopted(tmp_path: Path,
                                                           study: list[Path]) -> None:
    """SIGKILL while the publisher burns the job (.INP): after restart the service follows
    that job to its end instead of submitting another; one disc, the job done."""
    s, hot = _publisher_service(tmp_path, study, "disc2")
    emulator = None
    try:
        emulator = _emulator(hot, "--stall-in-progress")
        s.wait_for(lambda: bool(list(hot.glob("*.INP"))), 60, "the publisher to take the job")
        [taken] = list(hot.glob("*.INP"))
        s.kill()
        s.start()
        _stop(emulator)
        emulator = _emulator(hot)  # the publisher finishes the disc it was burning
        where, report = s.wait_result("disc2")
        assert where == "done", report
        time.sleep(0.5)
        [disc] = list(hot.glob("*.DON"))
        assert disc.stem == taken.stem
        assert not list(hot.glob("*.JRQ")) and not list(hot.glob("MEDIASVC/*.WDN"))
        assert taken.stem in report["result"]["burn"]["volumes"][0]["copies"][0]["target"]
        assert s.stop() == 0
    finally:
        _stop(emulator)
        s.close()


def test_export_to_a_configured_folder_burner(tmp_path: Path, study: list[Path]) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    cfg = write_config(tmp_path / "svc.toml", workers=1, target="stick",
                       extra=f'[burners.stick]\ntarget = "folder:{usb}"\n')
    s = Service(tmp_path / "root", cfg).start()
    try:
        drop_folder(study, s.root / "drop" / "export" / "STD-GEN-CD" / "u1")
        where, report = s.wait_result("u1")
        assert where == "done", report
        assert _dciodvfy_errors(usb / "DICOMDIR") == []
        copies = report["result"]["burn"]["volumes"][0]["copies"]
        assert copies[0]["status"] == "done" and copies[0]["verified"] is True
        assert s.stop() == 0
    finally:
        s.close()


def test_cancel_a_running_job(tmp_path: Path, study: list[Path]) -> None:
    """A running job is stopped (its process group killed) and kept in failed/ as cancelled."""
    hot = tmp_path / "ptburn"   # no publisher: the burn waits for a pickup that never comes
    hot.mkdir()
    cfg = write_config(tmp_path / "svc.toml", workers=1,
                       extra=f'[burners.robot]\ntarget = "ptburn:{hot}"\nverify = false\n')
    s = Service(tmp_path / "root", cfg).start()
    try:
        job = s.root / "drop" / "export" / "STD-GEN-CD" / "c1"
        drop_job(study, job, 'target = "robot"\n')
        (job / ".ready").touch()
        s.wait_for(lambda: bool(list(hot.glob("*.JRQ"))), 60, "the burn to be running")
        listed = json.loads(mediasvc("jobs", "list", "--json", "--state", "running",
                                     "--config", cfg, "--root", s.root).stdout)
        [running] = listed
        r = mediasvc("jobs", "cancel", str(running["id"]), "--config", cfg, "--root", s.root)
        assert r.returncode == 0 and "running" in r.stdout
        where, report = s.wait_result("c1")
        assert where == "failed" and report["state"] == "cancelled"
        assert report["reason"] == "cancelled while running"
        assert sorted(p.name for p in (s.root / "failed" / "c1" / "input").iterdir()) == \
            sorted([f.name for f in study] + ["job.toml", ".ready"])
        assert s.alive() and s.stop() == 0
    finally:
        s.close()
