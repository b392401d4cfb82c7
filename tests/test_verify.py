"""`mediasvc fileset verify`: a DICOMDIR checked against the files on the media.

A clean file-set written by DCMTK's dcmmkdir verifies with exit status 0; each kind of damage
(missing file, changed SOP Instance UID, other transfer syntax, unreferenced DICOM file,
non-conformant File ID, duplicate reference, inactive record) is found and named, exit status 1.
Every third-party DICOMDIR in ../shared/testdata gets an answer, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TESTDATA, dcmmkdir_media, make_corpus, mediasvc
from pydicom.uid import ImplicitVRLittleEndian
from test_reader import Rec, write_dicomdir

from mediasvc.fileset.reader import read_fileset
from mediasvc.fileset.verify import verify_fileset

DICOMDIR_TREES = TESTDATA / "dicomdir"


def verify_json(media: Path) -> tuple[int, dict[str, Any]]:
    res = mediasvc("fileset", "verify", media, "--json")
    assert "Traceback" not in res.stderr
    return res.returncode, json.loads(res.stdout)


def problems(media: Path) -> list[str]:
    rc, out = verify_json(media)
    assert rc == (1 if out["problems"] else 0)
    return [f"{p['where']}: {p['what']}" for p in out["problems"]]


@pytest.fixture(scope="module")
def dcmtk_master(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    return dcmmkdir_media(small_corpus, tmp_path_factory.mktemp("verify") / "master")


@pytest.fixture
def media(tmp_path: Path, dcmtk_master: Path) -> Path:
    """A fresh copy of the dcmmkdir file-set, free to damage."""
    out = tmp_path / "media"
    shutil.copytree(dcmtk_master, out)
    return out


def test_clean_fileset_verifies(media: Path) -> None:
    (media / "README.TXT").write_text("Not DICOM: ignored\r\n")
    (media / "IHE_PDI").mkdir()
    (media / "IHE_PDI" / "INDEX.HTM").write_text("<html></html>")
    (media / "VIEWER").mkdir()
    (media / "VIEWER" / "viewer.exe").write_bytes(b"MZ" + b"\0" * 200)
    rc, out = verify_json(media)
    assert (rc, out["ok"], out["problems"]) == (0, True, [])
    assert (out["instances"], out["checked"], out["method"]) == (12, 12, "dicomdir")
    res = mediasvc("fileset", "verify", media)
    assert res.returncode == 0
    assert res.stdout.splitlines()[-1] == "OK: no problems"
    # pointing at the DICOMDIR file itself is the same media
    assert verify_fileset(media / "DICOMDIR").ok


def test_missing_file(media: Path) -> None:
    (media / "DICOM" / "IM000003").unlink()
    assert problems(media) == ["DICOM\\IM000003: IMAGE record: referenced file is missing"]
    res = mediasvc("fileset", "verify", media)
    assert res.returncode == 1
    assert "  DICOM\\IM000003: IMAGE record: referenced file is missing" in res.stdout
    assert res.stdout.splitlines()[-1] == "1 problem"


def test_changed_sop_instance_uid(media: Path) -> None:
    path = media / "DICOM" / "IM000005"
    ds = pydicom.dcmread(path)
    old = ds.SOPInstanceUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    ds.save_as(path)
    assert problems(media) == [
        f"DICOM\\IM000005: SOP Instance UID differs: record {old}, file 1.2.3.4.5"]


def test_data_set_differs_from_its_meta(media: Path) -> None:
    path = media / "DICOM" / "IM000002"
    ds = pydicom.dcmread(path)
    meta_uid = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SOPInstanceUID = "1.2.3.4.6"
    ds.save_as(path)
    assert problems(media) == [
        f"DICOM\\IM000002: file's SOP Instance UID 1.2.3.4.6 differs from its meta "
        f"information ({meta_uid})"]


def test_other_transfer_syntax_and_sop_class(media: Path) -> None:
    path = media / "DICOM" / "IM000007"
    ds = pydicom.dcmread(path)
    old_class = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert problems(media) == [
        f"DICOM\\IM000007: SOP Class UID differs: record {old_class}, "
        "file 1.2.840.10008.5.1.4.1.1.7",
        "DICOM\\IM000007: Transfer Syntax UID differs: record 1.2.840.10008.1.2.1, "
        "file 1.2.840.10008.1.2"]


def test_unreferenced_dicom_file(media: Path) -> None:
    shutil.copy(media / "DICOM" / "IM000001", media / "DICOM" / "EXTRA")
    (media / "DICOM" / "SUB").mkdir()
    shutil.copy(media / "DICOM" / "IM000002", media / "DICOM" / "SUB" / "AGAIN")
    (media / "DICOM" / "NOTES.TXT").write_text("not DICOM")
    shutil.copy(media / "DICOMDIR", media / "DICOM" / "BACKUP")  # a directory file: skipped
    assert problems(media) == [
        "DICOM/EXTRA: DICOM file not referenced by the DICOMDIR",
        "DICOM/SUB/AGAIN: DICOM file not referenced by the DICOMDIR"]


def test_not_dicom_where_an_instance_should_be(media: Path) -> None:
    (media / "DICOM" / "IM000004").write_text("garbage")
    assert problems(media) == [
        "DICOM\\IM000004: referenced file is not a DICOM Part 10 file (no preamble/DICM "
        "prefix)"]


def _records_for() -> list[Rec]:
    """PATIENT / STUDY / SERIES, to hang IMAGE records from."""
    return [Rec("PATIENT", {"PatientID": "P"}, children=[
        Rec("STUDY", {"StudyInstanceUID": "1.2.3"}, children=[
            Rec("SERIES", {"Modality": "MR"}, children=[])])])]


def _leaf(media: Path, rel: str, file_id: list[str] | str, **over: str) -> Rec:
    ds = pydicom.dcmread(media / rel, stop_before_pixels=True)
    keys = {"ReferencedSOPClassUIDInFile": ds.file_meta.MediaStorageSOPClassUID,
            "ReferencedSOPInstanceUIDInFile": ds.file_meta.MediaStorageSOPInstanceUID,
            "ReferencedTransferSyntaxUIDInFile": ds.file_meta.TransferSyntaxUID,
            "InstanceNumber": 1}
    keys.update(over)
    return Rec("IMAGE", keys, file_id)


def test_non_conformant_file_ids(tmp_path: Path, small_corpus: Path) -> None:
    media = tmp_path / "media"
    files = sorted(small_corpus.glob("*.dcm"))
    (media / "dicom").mkdir(parents=True)
    (media / "A/B/C/D/E/F/G/H").mkdir(parents=True)
    shutil.copy(files[0], media / "dicom" / "im1.dcm")
    shutil.copy(files[1], media / "A/B/C/D/E/F/G/H/IM2")
    shutil.copy(files[2], media / "dicom" / "IMAGE0003")
    shutil.copy(files[3], media / "dicom" / "IM4")
    roots = _records_for()
    roots[0].children[0].children[0].children = [
        _leaf(media, "dicom/im1.dcm", ["dicom", "im1.dcm"]),
        _leaf(media, "A/B/C/D/E/F/G/H/IM2", list("ABCDEFGH") + ["IM2"]),
        _leaf(media, "dicom/IMAGE0003", ["DICOM", "IMAGE0003"]),
        _leaf(media, "dicom/IM4", ["DICOM", "IM4"])]
    write_dicomdir(media / "DICOMDIR", roots)
    assert problems(media) == [
        "dicom\\im1.dcm: non-conformant File ID: component 'dicom' is not 1-8 characters of "
        "A-Z, 0-9 and _",
        "A\\B\\C\\D\\E\\F\\G\\H\\IM2: non-conformant File ID: 9 components (at most 8)",
        "DICOM\\IMAGE0003: non-conformant File ID: component 'IMAGE0003' is not 1-8 "
        "characters of A-Z, 0-9 and _"]


def test_duplicate_references_and_inactive_records(tmp_path: Path, small_corpus: Path) -> None:
    media = tmp_path / "media"
    files = sorted(small_corpus.glob("*.dcm"))
    (media / "DICOM").mkdir(parents=True)
    for i, src in enumerate(files[:3], 1):
        shutil.copy(src, media / "DICOM" / f"IM{i}")
    roots = _records_for()
    gone = _leaf(media, "DICOM/IM3", ["DICOM", "IM3"])
    gone.in_use = False
    roots[0].children[0].children[0].children = [
        _leaf(media, "DICOM/IM1", ["DICOM", "IM1"]),
        _leaf(media, "DICOM/IM1", ["DICOM", "im1"]),
        _leaf(media, "DICOM/IM2", ["DICOM", "IM2"]), gone]
    write_dicomdir(media / "DICOMDIR", roots)
    uid = pydicom.dcmread(files[0]).SOPInstanceUID
    assert problems(media) == [
        "DICOM\\im1: non-conformant File ID: component 'im1' is not 1-8 characters of A-Z, "
        "0-9 and _",
        "DICOM\\im1: file also referenced as DICOM\\IM1",
        f"DICOM\\im1: SOP Instance UID {uid} also referenced by DICOM\\IM1",
        "DICOM/IM3: DICOM file not referenced by the DICOMDIR"]


def test_no_dicomdir(tmp_path: Path, small_corpus: Path) -> None:
    rc, out = verify_json(small_corpus)
    assert rc == 1 and out["method"] == "scan (no DICOMDIR)"
    assert out["problems"] == [{"where": "DICOMDIR",
                                "what": "no DICOMDIR; media read by scanning"}]


# Over every third-party DICOMDIR: (tree, exit status, instances, checked, problems by kind).
# The dangling references are the files the testdata leaves out (see its SOURCES.md).
TESTDATA_VERIFY = [
    ("orthanc_dclunie_charsets", 11, 11, {"Offset of the Last Directory Record": 1}),
    ("dcm_qa_ct_philips_ingenuity", 433, 13, {"referenced file is missing": 420}),
    ("dcm_qa_ct_philips_ingenuity/DICOM", 433, 13, {
        "referenced file is missing": 420, "hierarchy rebuilt": 1,
        "non-standard multi-file directory: 11 further directory files": 1,
        "IMAGE record lacks Referenced SOP Instance UID in File": 13}),
    ("dwv_bbmri_nonstandard", 4, 4, {
        "hierarchy rebuilt": 1, "non-conformant File ID": 4,
        "IMAGE record lacks Referenced SOP Instance UID in File": 4,
        "DICOM file not referenced by the DICOMDIR": 2}),
    ("dwv_dcmtk_noimages", 44, 0, {"referenced file is missing": 44}),
    ("fodicom_nema_rle_noimages", 20, 0, {"referenced file is missing": 20}),
    ("process_dcm_heidelberg_partial", 3, 2, {"referenced file is missing": 1}),
]


@pytest.mark.parametrize(("tree", "instances", "checked", "kinds"), TESTDATA_VERIFY,
                         ids=[t[0] for t in TESTDATA_VERIFY])
def test_verify_testdata(tree: str, instances: int, checked: int,
                         kinds: dict[str, int]) -> None:
    rc, out = verify_json(DICOMDIR_TREES / tree)
    assert rc == 1
    assert (out["instances"], out["checked"]) == (instances, checked)
    found = {kind: sum(1 for p in out["problems"] if kind in p["what"]) for kind in kinds}
    assert found == kinds
    assert len(out["problems"]) == sum(kinds.values())
    res = mediasvc("fileset", "verify", DICOMDIR_TREES / tree)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    n = sum(kinds.values())
    assert res.stdout.splitlines()[-1] == (f"{n} problems" if n > 1 else "1 problem")


def test_verify_every_testdata_tree_is_covered() -> None:
    trees = {p.name for p in DICOMDIR_TREES.iterdir() if p.is_dir()}
    assert trees == {t.split("/")[0] for t, *_ in TESTDATA_VERIFY}


def test_updater_commands_keep_the_fileset_verifiable(media: Path, tmp_path: Path) -> None:
    """`fileset add/remove/compact` (the Updater, fileset/updater.py) through the CLI: after
    each, `verify` finds nothing wrong and `list` shows the change."""
    new = tmp_path / "new"
    make_corpus(new, "--patients", "1", "--studies", "1", "--series", "1", "--images", "2",
                "--rows", "64", "--cols", "64", "--seed", "99")
    res = mediasvc("fileset", "add", media, new, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"]["placed"] == 2
    assert problems(media) == []
    listing = read_fileset(media)
    assert sum(1 for _ in listing.leaves()) == 14
    series = next(r for _, r in listing.walk() if r.record_type == "SERIES")
    n_images = sum(1 for c in series.children if c.in_use)
    res = mediasvc("fileset", "remove", media, "--series", series.get("SeriesInstanceUID"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{n_images + 1} records made inactive"
    assert problems(media) == []
    assert sum(1 for _ in read_fileset(media).leaves()) == 14 - n_images
    res = mediasvc("fileset", "compact", media)
    assert (res.returncode, res.stdout.strip()) == (0, f"{n_images + 1} inactive records dropped")
    assert problems(media) == []
    res = mediasvc("fileset", "remove", media, "--patient", "nobody")
    assert (res.returncode, res.stdout.strip()) == (1, "0 records made inactive")
