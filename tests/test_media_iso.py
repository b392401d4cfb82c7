"""`mediasvc export` + `mediasvc burn --to iso:` read back with isoinfo and xorriso; faults."""

from __future__ import annotations

import filecmp
import re
import shutil
from pathlib import Path

import pydicom
import pytest
from conftest import mediasvc, run, tmpfs, tree_digest

from mediasvc.errors import BurnError, CapacityError, MediaError
from mediasvc.media.burners import BurnJob
from mediasvc.media.burners.image import IsoBackend
from mediasvc.media.iso import make_iso, volume_id

LEVEL1 = re.compile(r"[A-Z0-9_]{1,8}\.([A-Z0-9_]{0,3});1")


@pytest.fixture(scope="module")
def staged(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "vol"
    proc = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", out,
                    "--fileset-id", "TEST VOL 1", "--web", "--institution", "Example Hospital")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def image(staged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    iso = tmp_path_factory.mktemp("iso") / "disc.iso"
    proc = mediasvc("burn", staged, "--to", f"iso:{iso}", "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"verified": true' in proc.stdout
    return iso


def test_iso_names_are_level1_and_root_files_first(image: Path) -> None:
    listing = run(["isoinfo", "-l", "-i", image], check=True).stdout
    names = re.findall(r"\]\s+(\S+)\s*$", listing, re.MULTILINE)
    files = [n for n in names if n not in (".", "..") and ";" in n]
    dirs = [n for n in names if n not in (".", "..") and ";" not in n]
    assert files and all(LEVEL1.fullmatch(n) for n in files), files
    assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", d) for d in dirs), dirs
    root = listing.split("Directory listing of /DICOM/")[0]
    for name in ("DICOMDIR.;1", "README.TXT;1", "INDEX.HTM;1"):
        assert name in root
    info = run(["isoinfo", "-d", "-i", image], check=True).stdout
    assert "Volume id: TEST_VOL_1" in info
    # No Rock Ridge / Joliet: names a reader sees are the level-1 names.
    assert "NO Joliet present" in info and "NO Rock Ridge present" in info
    # DICOMDIR, README.TXT, INDEX.HTM have the lowest block addresses, in that order.
    lba = run(["xorriso", "-indev", image, "-find", "/", "-type", "f", "-exec",
               "report_lba", "--"], check=True).stdout
    starts = {m.group(2): int(m.group(1)) for m in
              re.finditer(r"File data lba:\s+\d+\s*,\s*(\d+)\s*,.*'(/[^']+)'", lba)}
    first = sorted(starts, key=starts.__getitem__)[:3]
    assert first == ["/DICOMDIR", "/README.TXT", "/INDEX.HTM"]
    # The instances lie on the disc in DICOMDIR record order: a reader walks it without seeks.
    ds = pydicom.dcmread(run_extract_dicomdir(image))
    in_record_order = ["/" + "/".join(r.ReferencedFileID) for r in ds.DirectoryRecordSequence
                       if "ReferencedFileID" in r]
    lbas = [starts[f] for f in in_record_order]
    assert len(lbas) == 12 and lbas == sorted(lbas)


def run_extract_dicomdir(image: Path) -> Path:
    out = image.with_name("DICOMDIR.extracted")
    if not out.exists():
        run(["xorriso", "-osirrox", "on", "-indev", image, "-extract", "/DICOMDIR", out],
            check=True)
    return out


def test_iso_content_is_byte_identical_and_dicomdir_valid(image: Path, staged: Path,
                                                           small_corpus: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "x"
    run(["xorriso", "-osirrox", "on", "-indev", image, "-extract", "/", out], check=True)
    extracted = {re.sub(r"\.?;1$", "", k): v for k, v in tree_digest(out).items()}
    assert extracted == tree_digest(staged)
    proc = run(["dciodvfy", out / "DICOMDIR"])
    assert not re.search(r"^Error", proc.stdout + proc.stderr, re.MULTILINE), proc.stderr
    # Each DICOM file on the disc is its source, byte for byte (nothing transcoded here).
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
              for p in small_corpus.glob("*.dcm")}
    dicom_files = [p for p in (out / "DICOM").rglob("*") if p.is_file()]
    assert len(dicom_files) == len(by_uid)
    for p in dicom_files:
        uid = pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        assert filecmp.cmp(p, by_uid[uid], shallow=False)


def test_staging_shares_inodes_with_sources(staged: Path, small_corpus: Path) -> None:
    """No byte written twice: the staging tree hard-links the sources (export default)."""
    source_inodes = {p.stat().st_ino for p in small_corpus.glob("*.dcm")}
    staged_inodes = {p.stat().st_ino for p in (staged / "DICOM").rglob("*") if p.is_file()}
    assert staged_inodes == source_inodes


def test_volume_id_from_fileset_id() -> None:
    assert volume_id("MS2611 25") == "MS2611_25"
    assert volume_id("") == "DICOM"
    assert volume_id("a" * 40) == "A" * 32


def test_xorriso_failure_is_clear_staging_intact_and_retry_works(staged: Path,
                                                                 tmp_path: Path) -> None:
    work = tmp_path / "vol"
    shutil.copytree(staged, work)
    before = tree_digest(work)
    # A sparse 4.5 GB file: ISO 9660 level 1 cannot hold a file over 4 GiB - 1, xorriso fails.
    big = work / "DICOM" / "BIG"
    with big.open("wb") as fh:
        fh.truncate(4500 * 1024 * 1024)
    iso = tmp_path / "out.iso"
    proc = mediasvc("burn", work, "--to", f"iso:{iso}")
    assert proc.returncode == 3
    assert "xorriso failed" in proc.stderr and "exceeds size limit" in proc.stderr
    assert not iso.exists() and not list(tmp_path.glob("*.part"))
    big.unlink()
    assert tree_digest(work) == before  # staging left intact
    retry = mediasvc("burn", work, "--to", f"iso:{iso}", "--verify")
    assert retry.returncode == 0, retry.stderr
    assert iso.stat().st_size > 0


def test_target_too_small_is_refused_before_writing(staged: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=256k") as small:
        proc = mediasvc("burn", staged, "--to", f"iso:{small / 'disc.iso'}")
        assert proc.returncode == 3
        assert "free; nothing was written" in proc.stderr
        assert list(small.iterdir()) == []


def test_target_not_writable(staged: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        proc = mediasvc("burn", staged, "--to", f"iso:{ro / 'disc.iso'}")
        assert proc.returncode == 3
        assert "not writable" in proc.stderr
    missing = mediasvc("burn", staged, "--to", f"iso:{tmp_path / 'nope' / 'disc.iso'}")
    assert missing.returncode == 3 and "does not exist" in missing.stderr


def test_names_iso_level1_cannot_hold_are_refused(staged: Path, tmp_path: Path) -> None:
    work = tmp_path / "vol"
    shutil.copytree(staged, work)
    (work / "notes-for-you.txt").write_text("x")
    with pytest.raises(MediaError, match=r"notes-for-you\.txt: file name is not ISO 9660"):
        make_iso(work, tmp_path / "x.iso")
    assert not (tmp_path / "x.iso").exists()


def test_image_inside_the_staging_tree_is_refused(staged: Path) -> None:
    proc = mediasvc("burn", staged, "--to", f"iso:{staged / 'DISC.ISO'}")
    assert proc.returncode == 3 and "inside the staging tree" in proc.stderr
    assert not (staged / "DISC.ISO").exists()


def test_not_a_staging_tree(tmp_path: Path) -> None:
    proc = mediasvc("burn", tmp_path, "--to", f"iso:{tmp_path / 'x.iso'}")
    assert proc.returncode == 3 and "not a staging tree" in proc.stderr
    bad = mediasvc("burn", tmp_path, "--to", "cdrom:/dev/sr0")
    assert bad.returncode == 2 and "KIND:WHERE" in bad.stderr


def test_xorriso_timeout(staged: Path, tmp_path: Path) -> None:
    backend = IsoBackend(tmp_path / "t.iso")
    with pytest.raises(BurnError, match="did not finish within 0 s"):
        backend.burn(BurnJob(staged, timeout=0.0001))
    assert not (tmp_path / "t.iso").exists() and not list(tmp_path.glob("*.part"))


def test_capacity_error_type(staged: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=128k") as small, pytest.raises(CapacityError):
        make_iso(staged, small / "x.iso")


def test_xorriso_missing_is_reported(staged: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no xorriso anywhere on PATH
    with pytest.raises(BurnError, match="xorriso is not installed"):
        make_iso(staged, tmp_path / "x.iso")
