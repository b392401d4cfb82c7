"""Burn backends: folder (copy/fsync/verify), drive (xorriso; error paths, stdio pseudo drive),
disc publishers (PTBurn, Epson TD Bridge) against the emulator process."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import mediasvc, run, tmpfs, tree_digest

from mediasvc.errors import BurnError
from mediasvc.media.burners import BurnJob, CopyResult
from mediasvc.media.burners.drive import DriveBackend, media_problem, parse_toc
from mediasvc.media.burners.epson import EpsonBackend
from mediasvc.media.burners.folder import FolderBackend
from mediasvc.media.burners.ptburn import PTBurnBackend
from mediasvc.media.burners.publisher import PublisherBackend, read_job_file
from mediasvc.media.iso import make_iso
from mediasvc.media.verify import compare, tree_checksums

EMULATOR = Path(__file__).with_name("publisher_emulator.py")


@pytest.fixture(scope="module")
def staged(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "vol"
    proc = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", out,
                    "--fileset-id", "BURNTEST")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


# -- folder ----------------------------------------------------------------------------------

def test_folder_copy_fsync_verify(staged: Path, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    proc = mediasvc("burn", staged, "--to", f"folder:{usb}", "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"verified": true' in proc.stdout and "folder-readback-sha256" in proc.stdout
    assert tree_digest(usb) == tree_digest(staged)
    assert not list(usb.rglob("*.part"))
    # Copies, not links: the stick must not share inodes with the staging tree.
    assert (usb / "DICOMDIR").stat().st_ino != (staged / "DICOMDIR").stat().st_ino


def test_folder_refuses_non_empty_target(staged: Path, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "holiday.jpg").write_bytes(b"x")
    proc = mediasvc("burn", staged, "--to", f"folder:{usb}")
    assert proc.returncode == 3 and "not empty" in proc.stderr
    assert [p.name for p in usb.iterdir()] == ["holiday.jpg"]


def test_folder_too_small_and_not_writable(staged: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as small:
        proc = mediasvc("burn", staged, "--to", f"folder:{small}")
        assert proc.returncode == 3 and "nothing was written" in proc.stderr
        assert list(small.iterdir()) == []
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        proc = mediasvc("burn", staged, "--to", f"folder:{ro}")
        assert proc.returncode == 3 and "not writable" in proc.stderr


def test_folder_failure_mid_copy_is_undone_and_retryable(staged: Path, tmp_path: Path) -> None:
    # Free space just above the sum of the file sizes passes the check, but tmpfs stores
    # each file in whole 4 KiB pages: the copy runs out of space half way (ENOSPC).
    size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    before = tree_digest(staged)
    with tmpfs(tmp_path / "tight", f"size={size + 4096}") as tight:
        with pytest.raises(BurnError, match="copy failed .*No space left on device.*retried"):
            FolderBackend(tight).burn(BurnJob(staged, verify=True))
        assert list(tight.iterdir()) == []  # what was written is removed
    assert tree_digest(staged) == before
    with tmpfs(tmp_path / "roomy", f"size={4 * size + (1 << 20)}") as roomy:
        [copy] = FolderBackend(roomy).burn(BurnJob(staged, verify=True))
        assert copy.verified and tree_digest(roomy) == before


def test_verify_detects_a_changed_byte(staged: Path, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    FolderBackend(usb).burn(BurnJob(staged))
    victim = next(p for p in (usb / "DICOM").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    (usb / "EXTRA.TXT").write_text("x")
    result = compare(tree_checksums(staged), tree_checksums(usb, drop_cache=True))
    assert not result.ok
    assert any("content differs" in p for p in result.problems)
    assert any("EXTRA.TXT: on the medium but not in the staging tree" in p
               for p in result.problems)


# -- drive -----------------------------------------------------------------------------------

def test_drive_missing_device(staged: Path) -> None:
    proc = mediasvc("burn", staged, "--to", "drive:/dev/sr97")
    assert proc.returncode == 3
    assert "drive /dev/sr97: no such device" in proc.stderr


def test_drive_regular_file_is_not_a_drive(staged: Path, tmp_path: Path) -> None:
    fake = tmp_path / "sr0"
    fake.write_bytes(b"")
    proc = mediasvc("burn", staged, "--to", f"drive:{fake}")
    assert proc.returncode == 3 and "a regular file, not an optical drive" in proc.stderr
    assert fake.read_bytes() == b""  # nothing written to it


def test_toc_parsing_from_real_xorriso_reports(staged: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    out = run(["xorriso", "-outdev", f"stdio:{blank}", "-toc", "-tell_media_space"])
    state = parse_toc(out.stdout + out.stderr)
    assert state.present and state.blank and state.free_bytes and state.free_bytes > 0
    iso = make_iso(staged, tmp_path / "w.iso").path
    out = run(["xorriso", "-outdev", f"stdio:{iso}", "-toc"])
    written = parse_toc(out.stdout + out.stderr)
    assert written.present and not written.blank and "is written" in written.status
    empty_drive = parse_toc("Media current: is not present\nMedia status : is not present\n")
    assert not empty_drive.present


@pytest.mark.parametrize(("report", "expected"), [
    ("Media current: is not present\nMedia status : is not present\n", "no disc in the drive"),
    ("Media current: CD-ROM\nMedia status : is written , is closed\n",
     "wrong medium (CD-ROM is read-only)"),
    ("Media current: DVD+R\nMedia status : is written , is appendable\n", "not blank"),
    ("Media current: CD-R\nMedia status : is blank\nMedia space  : 100s\n",
     "the volume needs 1000000 bytes but the disc (CD-R) holds 204800"),
    ("Media current: BD-R sequential recording\nMedia status : is blank\n"
     "Media space  : 12219392s\n", None),
])
def test_media_problems(report: str, expected: str | None) -> None:
    problem = media_problem(parse_toc(report), 1_000_000)
    assert (problem is None) if expected is None else (expected in (problem or ""))


def test_drive_burn_blank_check_and_readback_on_stdio_pseudo_drive(staged: Path,
                                                                   tmp_path: Path) -> None:
    disc = tmp_path / "disc.img"
    backend = DriveBackend(f"stdio:{disc}", allow_stdio=True)
    [copy] = backend.burn(BurnJob(staged, verify=True))
    assert copy.status == "done" and copy.verified is True
    assert copy.verify_method == "disc-readback-sha256" and copy.files == len(tree_digest(staged))
    # The "disc" is now written: a second burn is refused, nothing appended.
    size = disc.stat().st_size
    with pytest.raises(BurnError, match="not blank"):
        backend.burn(BurnJob(staged))
    assert disc.stat().st_size == size


# -- publishers ------------------------------------------------------------------------------

@contextlib.contextmanager
def emulator(folder: Path, kind: str, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, str(EMULATOR), str(folder), "--kind", kind,
                             "--step", "0.1", *flags])
    try:
        deadline = time.monotonic() + 20
        while not (folder / "EMULATOR.RDY").exists():
            assert proc.poll() is None, "emulator died"
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


BACKENDS: dict[str, type[PublisherBackend]] = {"ptburn": PTBurnBackend, "epson": EpsonBackend}


@pytest.mark.parametrize("kind", ["ptburn", "epson"])
def test_publisher_job_lifecycle_to_done(kind: str, staged: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    label = tmp_path / "label.toml"
    label.write_text('template = "C:\\\\Labels\\\\dicom.std"\n')
    with emulator(folder, kind):
        proc = mediasvc("burn", staged, "--to", f"{kind}:{folder}", "--copies", "2",
                        "--verify", "--label-data", label, "--institution", "Example\nHosp",
                        "--json", "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"status": "done"') == 2  # one record per copy
    assert proc.stdout.count("publisher: OK") == 2 and proc.stdout.count('"verified": true') == 2
    lc = BACKENDS[kind].lifecycle
    [done] = list(folder.glob(f"*{lc.done}"))
    fields = read_job_file(done)
    assert fields["VolumeId"] == ["BURNTEST"]  # the emulator read our image
    assert fields["Copy1"] == ["OK"] and fields["Copy2"] == ["OK"]
    merge = fields["MergeField" if kind == "ptburn" else "REPLACE_FIELD"]
    assert len(merge) == 8 and merge[0] == "2 PATIENTS"  # two patients on this volume
    assert "Example Hosp" in merge and "DICOM ONLY" in merge and "1 OF 1" in merge
    assert ("PrintLabel" if kind == "ptburn" else "LABEL") in fields
    assert not list(folder.glob(f"*{lc.submitted}")) and not list(folder.glob("MEDIASVC/*.ISO"))


@pytest.mark.parametrize("kind", ["ptburn", "epson"])
def test_publisher_malformed_job_ends_in_err(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    lc = BACKENDS[kind].lifecycle
    with emulator(folder, kind):
        (folder / f"BAD1{lc.submitted}").write_text("this line has no key\n")
        (folder / f"BAD2{lc.submitted}").write_text("Copies=2\n")  # no image
        deadline = time.monotonic() + 10
        while len(list(folder.glob(f"*{lc.error}"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "not KEY=value" in (folder / f"BAD1{lc.error}").read_text()
    assert "missing" in (folder / f"BAD2{lc.error}").read_text()


@pytest.mark.parametrize("kind", ["ptburn", "epson"])
def test_publisher_error_is_reported_and_retry_works(kind: str, staged: Path,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    before = tree_digest(staged)
    with emulator(folder, kind, "--fail-burn"):
        backend = BACKENDS[kind](folder, pickup_timeout=10, timeout=30)
        with pytest.raises(BurnError, match=r"failed: drive error: write failed .*code 522"):
            backend.burn(BurnJob(staged))
    assert tree_digest(staged) == before
    assert not list((folder / "MEDIASVC").glob("*.ISO"))  # image removed after the job
    with emulator(folder, kind):
        [copy] = BACKENDS[kind](folder, pickup_timeout=10, timeout=30).burn(BurnJob(staged))
    assert copy.status == "done"


def test_publisher_pickup_timeout_withdraws_the_job(staged: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    with emulator(folder, "ptburn", "--ignore"):
        backend = PTBurnBackend(folder, pickup_timeout=1.0, timeout=30)
        with pytest.raises(BurnError, match="not picked up within 1 s.*withdrawn"):
            backend.burn(BurnJob(staged))
    assert not list(folder.glob("*.JRQ"))  # nothing left for the publisher to burn later
    assert not list((folder / "MEDIASVC").glob("*.ISO"))


def test_publisher_overall_timeout(staged: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    with emulator(folder, "epson", "--stall-in-progress"):
        backend = EpsonBackend(folder, pickup_timeout=5, timeout=1.5)
        with pytest.raises(BurnError, match=r"not finished within 2 s \(state \.INP\)"):
            backend.burn(BurnJob(staged))
        # Still the publisher's: the job and its image are left in place.
        assert len(list(folder.glob("*.INP"))) == 1
        assert len(list((folder / "MEDIASVC").glob("*.ISO"))) == 1


def test_publisher_folder_missing(staged: Path, tmp_path: Path) -> None:
    proc = mediasvc("burn", staged, "--to", f"ptburn:{tmp_path / 'nope'}")
    assert proc.returncode == 3 and "job folder does not exist" in proc.stderr


def test_copies_rejected_for_single_copy_targets(staged: Path, tmp_path: Path) -> None:
    proc = mediasvc("burn", staged, "--to", f"iso:{tmp_path / 'x.iso'}", "--copies", "2")
    assert proc.returncode == 2 and "--copies applies to drives" in proc.stderr


# -- a burn killed midway: withdrawn or adopted, never burned twice ----------------------------

_BURN = ("import sys; from pathlib import Path; "
         "from mediasvc.media.burners import BurnJob; "
         "from mediasvc.media.burners.ptburn import PTBurnBackend; "
         "PTBurnBackend(Path(sys.argv[1]), pickup_timeout=600, timeout=600)"
         ".burn(BurnJob(Path(sys.argv[2])))")


def _wait_for(what: str, check: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _burn_killed_at(folder: Path, staged: Path, ext: str) -> None:
    """Start a burn in its own process and SIGKILL it once a job file *ext is in FOLDER."""
    proc = subprocess.Popen([sys.executable, "-c", _BURN, str(folder), str(staged)])
    try:
        _wait_for(f"a {ext} job file", lambda: bool(list(folder.glob(f"*{ext}"))))
    finally:
        proc.kill()
        proc.wait()
    assert list((folder / "MEDIASVC").glob("CLAIM-*.JSON"))  # written before the job file


def _discs(folder: Path) -> list[dict[str, list[str]]]:
    """What the emulator burned: one .DON per disc job, with the volume id it read."""
    return [read_job_file(p) for p in folder.glob("*.DON")]


def test_a_waiting_job_file_of_a_killed_burn_is_withdrawn_and_burned_once(
        staged: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    _burn_killed_at(folder, staged, ".JRQ")  # no publisher running: the job file waits
    [left] = list(folder.glob("*.JRQ"))
    results: list[list[CopyResult]] = []
    again = threading.Thread(target=lambda: results.append(
        PTBurnBackend(folder, pickup_timeout=60, timeout=60).burn(BurnJob(staged))))
    again.start()
    try:
        # The left-over job file is withdrawn before the publisher could see it ...
        _wait_for("the withdrawal", lambda: (folder / "MEDIASVC" / left.with_suffix(
            ".WDN").name).exists())
        with emulator(folder, "ptburn"):
            again.join(60)
    finally:
        again.join(60)
    [[copy]] = results
    assert copy.status == "done"
    # ... and exactly one disc is burned, from the fresh job file.
    discs = _discs(folder)
    assert len(discs) == 1 and discs[0]["VolumeId"] == ["BURNTEST"]
    assert discs[0]["JobID"] != [left.stem]
    assert not list(folder.glob("*.JRQ")) and not list(folder.glob("MEDIASVC/CLAIM-*"))
    assert not list(folder.glob("MEDIASVC/*.ISO"))


def test_a_job_file_the_publisher_took_before_the_kill_is_adopted(staged: Path,
                                                                  tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    with emulator(folder, "ptburn", "--stall-in-progress"):
        _burn_killed_at(folder, staged, ".INP")  # taken by the robot, burning
    [taken] = list(folder.glob("*.INP"))
    with emulator(folder, "ptburn"):
        [copy] = PTBurnBackend(folder, pickup_timeout=60, timeout=60).burn(BurnJob(staged))
    assert copy.status == "done" and taken.stem in copy.target  # the same job, followed
    discs = _discs(folder)
    assert len(discs) == 1 and discs[0]["JobID"] == [taken.stem]
    assert not list(folder.glob("*.JRQ")) and not list(folder.glob("MEDIASVC/CLAIM-*"))


# -- a spanned set: the rest of it after a failure, never a disc twice --------------------------

@pytest.fixture(scope="module")
def spanned(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spanned") / "set"
    proc = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", out,
                    "--fileset-id", "SPANBURN", "--capacity", "320K")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len([p for p in out.iterdir() if p.is_dir()]) >= 3  # VOL001, VOL002, VOL003...
    return out


def _count(spanned: Path) -> int:
    return len([p for p in spanned.iterdir() if p.is_dir()])


def test_a_failed_volume_names_the_discs_made_and_volumes_burns_the_rest(
        spanned: Path, tmp_path: Path) -> None:
    iso, count = tmp_path / "disc.iso", _count(spanned)
    (tmp_path / "disc-VOL002.iso").mkdir()  # volume 2 cannot be written there
    proc = mediasvc("burn", spanned, "--to", f"iso:{iso}")
    assert proc.returncode == 3
    assert (f"volume(s) 1 of {count} were burned before this; for the rest: mediasvc burn "
            f"{spanned} --to iso:{iso} --volumes 2-{count}") in proc.stderr
    first = (tmp_path / "disc-VOL001.iso").stat()
    (tmp_path / "disc-VOL002.iso").rmdir()
    proc = mediasvc("burn", spanned, "--to", f"iso:{iso}", "--volumes", f"2-{count}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [v["volume"] for v in json.loads(proc.stdout)["volumes"]] == list(range(2, count + 1))
    # Volume 1's image is the one the first run made: not written again.
    again = (tmp_path / "disc-VOL001.iso").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    for n in range(2, count + 1):
        listing = run(["isoinfo", "-d", "-i", tmp_path / f"disc-VOL00{n}.iso"],
                      check=True).stdout
        assert re.search(rf"Volume id:\s+SPANBURNV{n:03d}\s", listing), listing


def test_volumes_outside_the_set_are_refused(spanned: Path, tmp_path: Path) -> None:
    for bad in (str(_count(spanned) + 1), "0-2", "2-1", "x"):
        proc = mediasvc("burn", spanned, "--to", f"iso:{tmp_path / 'd.iso'}", "--volumes", bad)
        assert proc.returncode == 2, bad
        assert f"--volumes {bad!r}" in proc.stderr
    assert list(tmp_path.iterdir()) == []
