"""`mediasvc export` as PDI media: spanning over volumes, IHE_PDI web content, viewer folder."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import make_corpus, mediasvc, run
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

XHTML = "{http://www.w3.org/1999/xhtml}"


def uids_of(root: Path) -> list[str]:
    return [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
            for p in (root / "DICOM").rglob("*") if p.is_file()]


def dciodvfy_errors(dicomdir: Path) -> list[str]:
    proc = run(["dciodvfy", dicomdir])
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]


@pytest.fixture(scope="module")
def corpus_3x(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 studies of 10 images of 128x128 (~350 kB each, ~2.1 MB in all)."""
    return make_corpus(tmp_path_factory.mktemp("c3x") / "src", "--patients", "3", "--studies",
                       "2", "--series", "2", "--images", "5", "--rows", "128", "--cols", "128")


def test_spanning_content_3x_capacity(corpus_3x: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    capacity = 700_000
    total = sum(p.stat().st_size for p in corpus_3x.glob("*.dcm"))
    assert 2.8 * capacity < total < 3.4 * capacity
    proc = mediasvc("export", corpus_3x, "--profile", "STD-GEN-CD", "--out", out,
                    "--capacity", str(capacity), "--fileset-id", "SPAN", "--json")
    assert proc.returncode == 0, proc.stderr
    vols = sorted(out.glob("VOL*"))
    assert len(vols) >= 3 and [v.name for v in vols] == [f"VOL{n:03d}"
                                                        for n in range(1, len(vols) + 1)]
    assert not (out / ".mediasvc-production").exists()
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID:
               pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
               for p in corpus_3x.glob("*.dcm")}
    seen: list[str] = []
    study_volumes: dict[str, set[int]] = {}
    for n, vol in enumerate(vols, 1):
        assert dciodvfy_errors(vol / "DICOMDIR") == []  # each volume is a valid file-set
        ds = pydicom.dcmread(vol / "DICOMDIR")
        assert ds.FileSetID == f"SPANV{n:03d}"
        size = sum(p.stat().st_size for p in vol.rglob("*") if p.is_file())
        assert size <= capacity
        uids = uids_of(vol)
        seen += uids
        for uid in uids:
            study_volumes.setdefault(sources[uid], set()).add(n)
        readme = (vol / "README.TXT").read_text()
        assert f"volume {n} of {len(vols)}" in readme
        others = [k for k in range(1, len(vols) + 1) if k != n]
        assert all(f"On volume {k} of {len(vols)}:" in readme for k in others)
        assert (vol / "INDEX.HTM").is_file()
    assert sorted(seen) == sorted(sources)  # union = input
    assert len(seen) == len(set(seen))  # no duplicates
    assert all(len(v) == 1 for v in study_volumes.values())  # every study fits: none split

    # Burning the set writes one image per volume, each with its own volume id.
    images = tmp_path / "img"
    images.mkdir()
    burn = mediasvc("burn", out, "--to", f"iso:{images / 'set.iso'}", "--verify")
    assert burn.returncode == 0, burn.stderr
    isos = sorted(images.glob("*.iso"))
    assert [p.name for p in isos] == [f"set-VOL{n:03d}.iso" for n in range(1, len(vols) + 1)]
    info = run(["isoinfo", "-d", "-i", isos[-1]], check=True).stdout
    assert f"Volume id: SPANV{len(vols):03d}" in info


def test_spanning_splits_a_study_too_big_by_series(tmp_path: Path) -> None:
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "3",
                      "--images", "5", "--rows", "128", "--cols", "128")
    out = tmp_path / "set"
    proc = mediasvc("export", src, "--profile", "STD-GEN-CD", "--out", out,
                    "--capacity", "500000")
    assert proc.returncode == 0, proc.stderr
    assert "split by series" in proc.stdout
    vols = sorted(out.glob("VOL*"))
    assert len(vols) == 3
    series_per_volume = []
    for vol in vols:
        series = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
                  for p in (vol / "DICOM").rglob("*") if p.is_file()}
        series_per_volume.append(series)
        assert "split by series" in (vol / "README.TXT").read_text()
        assert dciodvfy_errors(vol / "DICOMDIR") == []
    assert all(len(s) == 1 for s in series_per_volume)  # each series whole
    assert len(set().union(*series_per_volume)) == 3


def test_instance_larger_than_capacity_is_refused(small_corpus: Path, tmp_path: Path) -> None:
    proc = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", tmp_path / "o",
                    "--capacity", "270000")
    assert proc.returncode == 3 and "larger than one volume" in proc.stderr
    assert not (tmp_path / "o").exists()


def ct_with_known_pixels(path: Path) -> None:
    """Left half -1024 HU (air), right half 40 HU; window 40/400: black and mid grey."""
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "WIN^TEST", "W1", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), CTImageStorage
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "1200", "1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, 1
    ds.ReferringPhysicianName = ""
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    arr = np.zeros((64, 64), dtype=np.uint16)
    arr[:, 32:] = 1064  # 1064 - 1024 = 40 HU
    ds.PixelData = arr.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def test_web_content_xhtml_and_windowed_jpegs(small_corpus: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ct_with_known_pixels(src / "win.dcm")
    for p in small_corpus.glob("*.dcm"):
        (src / p.name).symlink_to(p)
    out = tmp_path / "vol"
    proc = mediasvc("export", src, "--profile", "STD-GEN-CD", "--out", out, "--web")
    assert proc.returncode == 0, proc.stderr
    web = out / "IHE_PDI"
    files = [p for p in web.rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".HTM", ".JPG") for p in files)  # only XHTML and JPEG
    assert all(re.fullmatch(r"[A-Z0-9_]{1,8}\.(HTM|JPG)", p.name) for p in files)
    assert len([p for p in files if p.suffix == ".JPG"]) == 13  # one per image on the volume
    for page in [p for p in files if p.suffix == ".HTM"] + [out / "INDEX.HTM"]:
        root = ET.parse(page).getroot()  # well-formed XML
        assert root.tag == f"{XHTML}html"
        for img in root.iter(f"{XHTML}img"):
            assert (page.parent / img.get("src", "")).is_file()
        for a in root.iter(f"{XHTML}a"):
            assert (page.parent / a.get("href", "")).is_file()
    index = ET.parse(out / "INDEX.HTM").getroot()
    assert any(a.get("href", "").startswith("IHE_PDI/STU") for a in index.iter(f"{XHTML}a"))
    # The rendering of the known CT: air black, 40 HU at the window centre (mid grey).
    shown = []
    for jpg in web.rglob("*.JPG"):
        pixels = np.asarray(Image.open(jpg).convert("L"), dtype=float)
        shown.append((pixels[:, 4:28].mean(), pixels[:, 36:60].mean()))
    # (40 - (40 - 0.5)) / 399 + 0.5 -> 0.501 of 255 = 127.8
    assert any(left < 4 and 122 < right < 134 for left, right in shown), shown
    assert "JPEG renderings" in (out / "README.TXT").read_text()


def test_viewer_folder_copied_without_autorun(small_corpus: Path, tmp_path: Path) -> None:
    viewer = tmp_path / "My Viewer"
    (viewer / "lib").mkdir(parents=True)
    (viewer / "VIEWER.EXE").write_bytes(b"MZ")
    (viewer / "lib" / "core.dll").write_bytes(b"dll")
    (viewer / "autorun.inf").write_text("[autorun]\nopen=VIEWER.EXE\n")
    out = tmp_path / "vol"
    proc = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", out,
                    "--viewer", viewer)
    assert proc.returncode == 0, proc.stderr
    assert (out / "VIEWER" / "VIEWER.EXE").read_bytes() == b"MZ"
    assert (out / "VIEWER" / "LIB" / "CORE.DLL").read_bytes() == b"dll"
    assert not list(out.rglob("*.INF")) and not list(out.rglob("autorun*"))
    assert "no autorun" in proc.stdout
    assert "folder VIEWER" in (out / "README.TXT").read_text()
    iso = tmp_path / "v.iso"
    assert mediasvc("burn", out, "--to", f"iso:{iso}", "--verify").returncode == 0

    (viewer / "LongFileName.exe").write_bytes(b"x")
    bad = mediasvc("export", small_corpus, "--profile", "STD-GEN-CD", "--out", tmp_path / "b",
                   "--viewer", viewer)
    assert bad.returncode == 2 and "LongFileName.exe" in bad.stderr


def test_unfinished_spanning_export_is_not_burned(corpus_3x: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    assert mediasvc("export", corpus_3x, "--out", out, "--capacity", "700000").returncode == 0
    (out / ".mediasvc-production").touch()  # as if the export had been killed
    proc = mediasvc("burn", out, "--to", f"iso:{tmp_path / 'x.iso'}")
    assert proc.returncode == 3 and "did not finish" in proc.stderr
    # Running the export again redoes it and leaves a complete set.
    again = mediasvc("export", corpus_3x, "--out", out, "--capacity", "700000")
    assert again.returncode == 0, again.stderr
    assert not (out / ".mediasvc-production").exists()
    assert len(list(out.glob("VOL*/DICOMDIR"))) >= 3
