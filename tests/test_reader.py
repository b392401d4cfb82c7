"""File-set Reader: `mediasvc fileset list` and mediasvc.fileset.reader.read_fileset.

Third-party DICOMDIRs from ../shared/testdata (counts checked by hand with dcmdump), DICOMDIRs
written here with pydicom in every encoding and with broken offsets, one written by DCMTK's
dcmmkdir, and the path-safety cases (``..``, absolute, symlink out to a FIFO that would block
whoever opened it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from conftest import TESTDATA, dcmmkdir_media, mediasvc
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from mediasvc.errors import FileSetError
from mediasvc.fileset.reader import (
    METHOD_DICOMDIR,
    METHOD_REBUILT,
    METHOD_SCAN,
    FileSetListing,
    read_fileset,
)

DICOMDIR_TREES = TESTDATA / "dicomdir"

# --- writing DICOMDIRs with pydicom (any encoding, right or wrong offsets) --------------------


@dataclass
class Rec:
    type: str
    keys: dict[str, object] = field(default_factory=dict)
    file_id: list[str] | str | None = None
    children: list[Rec] = field(default_factory=list)
    in_use: bool = True


def _flatten(recs: list[Rec], out: list[tuple[Rec, Dataset]]) -> None:
    for rec in recs:
        item = Dataset()
        item.OffsetOfTheNextDirectoryRecord = 0
        item.RecordInUseFlag = 0xFFFF if rec.in_use else 0
        item.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        item.DirectoryRecordType = rec.type
        if rec.file_id is not None:
            item.ReferencedFileID = rec.file_id
        for key, value in rec.keys.items():
            setattr(item, key, value)
        out.append((rec, item))
        _flatten(rec.children, out)


def write_dicomdir(path: Path, roots: list[Rec], *, syntax: str = ExplicitVRLittleEndian,
                   offsets: bool = True,
                   mangle: Callable[[Dataset, list[Dataset]], None] | None = None) -> Path:
    """A DICOMDIR at ``path`` holding ``roots`` depth-first. With ``offsets`` the offsets are
    right (written twice: the second pass fills in the item positions pydicom reads back, which
    do not move because offsets are fixed-size); ``mangle`` may then break them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unsafe File IDs are invalid CS values: on purpose
        return _write_dicomdir(path, roots, syntax, offsets, mangle)


def _write_dicomdir(path: Path, roots: list[Rec], syntax: str, offsets: bool,
                    mangle: Callable[[Dataset, list[Dataset]], None] | None) -> Path:
    flat: list[tuple[Rec, Dataset]] = []
    _flatten(roots, flat)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.FileSetID = "TEST"
    if offsets:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    else:
        for _, item in flat:
            del item.OffsetOfTheNextDirectoryRecord
            del item.OffsetOfReferencedLowerLevelDirectoryEntity
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = Sequence([item for _, item in flat])
    ds.save_as(path, enforce_file_format=True)
    if not offsets:
        return path
    back = pydicom.dcmread(path).DirectoryRecordSequence
    where = {id(rec): item.seq_item_tell for (rec, _), item in zip(flat, back, strict=True)}

    def link(recs: list[Rec]) -> None:
        for i, rec in enumerate(recs):
            item = next(it for r, it in flat if r is rec)
            item.OffsetOfTheNextDirectoryRecord = where[id(recs[i + 1])] if i + 1 < len(
                recs) else 0
            item.OffsetOfReferencedLowerLevelDirectoryEntity = (
                where[id(rec.children[0])] if rec.children else 0)
            link(rec.children)

    link(roots)
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = where[id(roots[0])]
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = where[id(roots[-1])]
    if mangle:
        mangle(ds, [item for _, item in flat])
    ds.save_as(path, enforce_file_format=True)
    return path


def patient_tree(n_images: int = 2, file_ids: list[list[str]] | None = None) -> list[Rec]:
    ids = file_ids or [["DICOM", f"IM{i + 1}"] for i in range(n_images)]
    images = [Rec("IMAGE", {"InstanceNumber": i + 1,
                            "ReferencedSOPInstanceUIDInFile": f"1.2.3.{i + 1}"}, fid)
              for i, fid in enumerate(ids)]
    series = Rec("SERIES", {"Modality": "CT", "SeriesInstanceUID": "1.2.3.9",
                            "SeriesNumber": 1}, children=images)
    study = Rec("STUDY", {"StudyInstanceUID": "1.2.3.8", "StudyDate": "20260101",
                          "StudyTime": "1200", "StudyID": "1"}, children=[series])
    return [Rec("PATIENT", {"PatientID": "PID1", "PatientName": "Test^One"},
                children=[study])]


def shape(listing: FileSetListing) -> list[str]:
    """The tree as indented record types, to compare hierarchies in one assert."""
    return ["  " * depth + rec.record_type for depth, rec in listing.walk()]


FOUR_LEVELS = ["PATIENT", "  STUDY", "    SERIES", "      IMAGE", "      IMAGE"]


def make_files(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not opened by list")


# --- third-party DICOMDIRs (../shared/testdata) -----------------------------------------------

# (tree, fileset id, method, record counts, instances whose file is present) - by hand: dcmdump
# DICOMDIR | grep -c '"Directory Record" TYPE', and ls of the referenced folders.
TESTDATA_EXPECTED = [
    ("orthanc_dclunie_charsets", "", METHOD_DICOMDIR,
     {"PATIENT": 11, "STUDY": 11, "SERIES": 11, "IMAGE": 11}, 11),
    ("dcm_qa_ct_philips_ingenuity", "", METHOD_DICOMDIR,
     {"PATIENT": 1, "STUDY": 2, "SERIES": 9, "IMAGE": 433}, 13),
    ("dcm_qa_ct_philips_ingenuity/DICOM", "", METHOD_REBUILT,
     {"STUDY": 2, "SERIES": 9, "IMAGE": 433}, 13),
    ("dwv_bbmri_nonstandard", "", METHOD_REBUILT, {"STUDY": 1, "SERIES": 1, "IMAGE": 4}, 4),
    ("dwv_dcmtk_noimages", "ORTHANC_MEDIA", METHOD_DICOMDIR,
     {"PATIENT": 1, "STUDY": 2, "SERIES": 3, "IMAGE": 44}, 0),
    ("fodicom_nema_rle_noimages", "RLE_COMPRESSION", METHOD_DICOMDIR,
     {"PATIENT": 20, "STUDY": 20, "SERIES": 20, "IMAGE": 20}, 0),
    ("process_dcm_heidelberg_partial", "DCMTK_MEDIA_DEMO", METHOD_DICOMDIR,
     {"PATIENT": 2, "STUDY": 2, "SERIES": 3, "RAW DATA": 1, "IMAGE": 2}, 2),
]


def test_every_testdata_tree_is_covered() -> None:
    trees = {p.name for p in DICOMDIR_TREES.iterdir() if p.is_dir()}
    assert trees == {t.split("/")[0] for t, *_ in TESTDATA_EXPECTED}


@pytest.mark.parametrize(("tree", "fsid", "method", "counts", "present"), TESTDATA_EXPECTED,
                         ids=[t[0] for t in TESTDATA_EXPECTED])
def test_list_testdata(tree: str, fsid: str, method: str, counts: dict[str, int],
                       present: int) -> None:
    res = mediasvc("fileset", "list", DICOMDIR_TREES / tree, "--json")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    out = json.loads(res.stdout)
    assert (out["fileset_id"], out["method"], out["counts"]) == (fsid, method, counts)

    def leaves(recs: list[dict[str, object]]) -> list[dict[str, object]]:
        found = []
        for r in recs:
            kids = r["children"]
            assert isinstance(kids, list)
            if r["file_id"] and not r["directory_file"]:
                found.append(r)
            found.extend(leaves(kids))
        return found

    refs = leaves(out["records"])
    assert len(refs) == sum(n for t, n in counts.items() if t not in ("PATIENT", "STUDY",
                                                                       "SERIES"))
    assert sum(1 for r in refs if r["path"]) == present
    assert {r["problem"] for r in refs if not r["path"]} <= {"missing"}

    text = mediasvc("fileset", "list", DICOMDIR_TREES / tree)
    assert text.returncode == 0 and "Traceback" not in text.stderr
    assert text.stdout.splitlines()[-1] == ", ".join(f"{n} {t}" for t, n in counts.items())


def test_charsets_cd_lists_names_in_their_character_sets() -> None:
    listing = read_fileset(DICOMDIR_TREES / "orthanc_dclunie_charsets")
    names = {r.get("PatientID"): r.get("PatientName") for r in listing.roots}
    assert len(names) == 11
    assert names["SCSRUSS"] == "Люкceмбypг"   # ISO_IR 144 decoded per record
    assert names["SCSGREEK"].startswith("Διονυσιος")
    # the one flaw of this DICOMDIR: its "last root record" offset names the last IMAGE
    assert listing.problems == [
        "DICOMDIR: Offset of the Last Directory Record of the Root Directory Entity is 8686, "
        "the root chain ends at 8112"]


def test_philips_multi_file_directory_is_followed() -> None:
    listing = read_fileset(DICOMDIR_TREES / "dcm_qa_ct_philips_ingenuity" / "DICOM")
    assert len(listing.directory_files) == 11
    study = listing.roots[0]
    assert study.directory_file and study.file_id == ("S21610", "DIRFILE")
    assert [s.record_type for s in study.children] == ["SERIES"] * 4
    present = sorted("\\".join(r.file_id or ()) for r in listing.leaves() if r.path)
    assert present[:2] == ["S21570\\S1000\\I10", "S21570\\S4010\\I10"]


def test_dirw0007_is_not_a_dicomdir() -> None:
    res = mediasvc("fileset", "list", TESTDATA / "broken" / "fo-dicom__DIRW0007")
    assert res.returncode == 3
    assert "Traceback" not in res.stderr
    assert "not a DICOMDIR: no Directory Record Sequence (Ultrasound Multi-frame" in res.stderr
    res = mediasvc("fileset", "verify", TESTDATA / "broken" / "fo-dicom__DIRW0007")
    assert res.returncode == 3 and "not a DICOMDIR" in res.stderr


# --- encodings and offsets --------------------------------------------------------------------

@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian])
def test_encodings_follow_offsets(tmp_path: Path, syntax: str) -> None:
    make_files(tmp_path, "DICOM/IM1", "DICOM/IM2")
    write_dicomdir(tmp_path / "DICOMDIR", patient_tree(), syntax=syntax)
    assert pydicom.dcmread(tmp_path / "DICOMDIR").file_meta.TransferSyntaxUID == syntax
    listing = read_fileset(tmp_path)
    assert (listing.method, listing.problems) == (METHOD_DICOMDIR, [])
    assert shape(listing) == FOUR_LEVELS
    leaves = list(listing.leaves())
    assert [r.path for r in leaves] == [tmp_path / "DICOM/IM1", tmp_path / "DICOM/IM2"]
    assert [r.get("ReferencedSOPInstanceUIDInFile") for r in leaves] == ["1.2.3.1", "1.2.3.2"]
    assert all(r.offset and r.offset > 128 for r in listing.records())


def test_offsets_decide_the_hierarchy_not_the_order(tmp_path: Path) -> None:
    """Two patients; the second patient's offsets point back at the first study: the tree
    follows the offsets (PS3.3 F.3.2.1), whatever the order in the sequence."""
    roots = patient_tree() + [Rec("PATIENT", {"PatientID": "PID2"})]

    def swap(ds: Dataset, items: list[Dataset]) -> None:
        # move the study under patient 2: patient 1 keeps no children
        items[5].OffsetOfReferencedLowerLevelDirectoryEntity = \
            items[0].OffsetOfReferencedLowerLevelDirectoryEntity
        items[0].OffsetOfReferencedLowerLevelDirectoryEntity = 0

    write_dicomdir(tmp_path / "DICOMDIR", roots, mangle=swap)
    listing = read_fileset(tmp_path)
    assert listing.method == METHOD_DICOMDIR
    assert [(r.get("PatientID"), len(r.children)) for r in listing.roots] == [
        ("PID1", 0), ("PID2", 1)]


@pytest.mark.parametrize(("why", "mangle"), [
    ("offset 12345 points at no record",
     lambda ds, items: setattr(items[1], "OffsetOfReferencedLowerLevelDirectoryEntity", 12345)),
    ("reached twice (loop)",
     lambda ds, items: setattr(items[3], "OffsetOfTheNextDirectoryRecord",
                               items[2].OffsetOfReferencedLowerLevelDirectoryEntity)),
    ("1 records not reachable through the offsets",
     lambda ds, items: setattr(items[3], "OffsetOfTheNextDirectoryRecord", 0)),
    ("no offset of the first root record",
     lambda ds, items: setattr(ds, "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity", 0)),
], ids=["dangling", "loop", "unreachable", "no-root"])
def test_wrong_offsets_rebuild_from_sequence(tmp_path: Path, why: str,
                                             mangle: Callable[[Dataset, list[Dataset]], None],
                                             ) -> None:
    make_files(tmp_path, "DICOM/IM1", "DICOM/IM2")
    write_dicomdir(tmp_path / "DICOMDIR", patient_tree(), mangle=mangle)
    listing = read_fileset(tmp_path)
    assert listing.method == METHOD_REBUILT
    assert len(listing.problems) == 1 and why in listing.problems[0]
    assert "hierarchy rebuilt from the record sequence" in listing.problems[0]
    assert shape(listing) == FOUR_LEVELS
    assert [r.path for r in listing.leaves()] == [tmp_path / "DICOM/IM1", tmp_path / "DICOM/IM2"]


def test_missing_patient_level_and_private_records(tmp_path: Path) -> None:
    """dwv-style: no PATIENT record, no offsets at all; a PRIVATE record at the root and one
    among the images of a SERIES; an implicit VR encoding for good measure."""
    series = Rec("SERIES", {"Modality": "MR"}, children=[
        Rec("IMAGE", {}, ["IM1"]),
        Rec("PRIVATE", {"PrivateRecordUID": "1.2.3.77"}, ["PRIV1"]),
        Rec("IMAGE", {}, ["IM2"])])
    roots = [Rec("PRIVATE", {"PrivateRecordUID": "1.2.3.78"}),
             Rec("STUDY", {"StudyInstanceUID": "1.2.3"}, children=[series])]
    make_files(tmp_path, "IM1", "IM2", "PRIV1")
    write_dicomdir(tmp_path / "DICOMDIR", roots, offsets=False, syntax=ImplicitVRLittleEndian)
    listing = read_fileset(tmp_path)
    assert listing.method == METHOD_REBUILT
    assert shape(listing) == ["PRIVATE", "STUDY", "  SERIES", "    IMAGE", "    PRIVATE",
                              "    IMAGE"]
    assert [r.record_type for r in listing.leaves()] == ["IMAGE", "PRIVATE", "IMAGE"]
    assert [r.path for r in listing.leaves()] == [tmp_path / "IM1", tmp_path / "PRIV1",
                                                  tmp_path / "IM2"]


def test_private_records_by_offsets(tmp_path: Path) -> None:
    roots = patient_tree()
    roots[0].children[0].children[0].children.append(
        Rec("PRIVATE", {"PrivateRecordUID": "1.2.3.77"},
            children=[Rec("PRIVATE", {"PrivateRecordUID": "1.2.3.79"})]))
    write_dicomdir(tmp_path / "DICOMDIR", roots)
    listing = read_fileset(tmp_path)
    assert listing.method == METHOD_DICOMDIR
    assert shape(listing) == FOUR_LEVELS + ["      PRIVATE", "        PRIVATE"]


def test_undefined_length_sequence_and_items(tmp_path: Path) -> None:
    make_files(tmp_path, "DICOM/IM1", "DICOM/IM2")
    path = write_dicomdir(tmp_path / "DICOMDIR", patient_tree())
    ds = pydicom.dcmread(path)
    ds["DirectoryRecordSequence"].is_undefined_length = True
    for item in ds.DirectoryRecordSequence:
        item.is_undefined_length_sequence_item = True
    ds.save_as(path)  # offsets are now wrong by the delimiters' bytes
    listing = read_fileset(tmp_path)
    assert shape(listing) == FOUR_LEVELS
    assert len(list(listing.leaves())) == 2


def test_consistency_flag_is_reported(tmp_path: Path) -> None:
    write_dicomdir(tmp_path / "DICOMDIR", patient_tree(),
                   mangle=lambda ds, items: setattr(ds, "FileSetConsistencyFlag", 0xFFFF))
    listing = read_fileset(tmp_path)
    assert listing.method == METHOD_DICOMDIR
    assert listing.problems == ["DICOMDIR: File-set Consistency Flag is FFFFH (the writer left "
                                "known inconsistencies)"]


def test_inactive_records_are_skipped_with_their_subtree(tmp_path: Path) -> None:
    roots = patient_tree(3)
    roots[0].children[0].children[0].children[1].in_use = False
    roots.append(Rec("PATIENT", {"PatientID": "GONE"}, in_use=False, children=[
        Rec("STUDY", {"StudyInstanceUID": "1.9"})]))
    write_dicomdir(tmp_path / "DICOMDIR", roots)
    listing = read_fileset(tmp_path)
    assert [r.file_id for r in listing.leaves()] == [("DICOM", "IM1"), ("DICOM", "IM3")]
    assert [r.get("PatientID") for r in listing.roots] == ["PID1"]
    every = read_fileset(tmp_path, include_inactive=True)
    assert [r.in_use for r in every.records()].count(False) == 2


# --- File IDs: tolerant and safe --------------------------------------------------------------

def test_lowercase_and_iso_decorated_names(tmp_path: Path) -> None:
    make_files(tmp_path, "dicom/im1", "DICOM.;1/IM2.;1")
    (tmp_path / "DICOM.;1" / "IM2.;1").rename(tmp_path / "dicom" / "IM2;1")
    (tmp_path / "DICOM.;1").rmdir()
    write_dicomdir(tmp_path / "dicomdir", patient_tree())
    listing = read_fileset(tmp_path)
    assert listing.dicomdir == tmp_path / "dicomdir"
    assert [r.path for r in listing.leaves()] == [tmp_path / "dicom/im1",
                                                  tmp_path / "dicom/IM2;1"]


def test_dotted_lowercase_file_ids(tmp_path: Path) -> None:
    make_files(tmp_path, "scans/img-1.dcm", "scans/IMG-2.DCM")
    write_dicomdir(tmp_path / "DICOMDIR", patient_tree(
        file_ids=[["scans", "img-1.dcm"], ["SCANS", "img-2.dcm"]]))
    listing = read_fileset(tmp_path)
    assert [r.path for r in listing.leaves()] == [tmp_path / "scans/img-1.dcm",
                                                  tmp_path / "scans/IMG-2.DCM"]


@pytest.mark.parametrize(("file_id", "message"), [
    (["..", "outside"], "Referenced File ID '..\\outside': component '..' would leave the "
                        "media root"),
    (["DICOM", "..", "..", "outside"], "component '..' would leave the media root"),
    ("/etc/passwd", "Referenced File ID '\\etc\\passwd': component '\\etc' would leave "
                    "the media root"),
    (["", "etc", "passwd"], "component '\\etc' would leave the media root"),
    (["C:", "WINDOWS"], "component 'C:' would leave the media root"),
    (["DICOM/../..", "outside"], "component 'DICOM/../..' contains a path separator"),
], ids=["dotdot", "dotdot-deep", "absolute-slash", "absolute-backslash", "drive", "separator"])
def test_file_ids_leaving_the_root_are_refused(tmp_path: Path, file_id: list[str] | str,
                                               message: str) -> None:
    media = tmp_path / "media"
    make_files(media, "DICOM/IM2")
    make_files(tmp_path, "outside")
    write_dicomdir(media / "DICOMDIR", patient_tree(file_ids=[file_id, ["DICOM", "IM2"]]))
    bad, good = read_fileset(media).leaves()
    assert bad.path is None and bad.problem is not None
    assert message in bad.problem
    assert good.path == media / "DICOM" / "IM2" and good.problem is None


def test_symlink_out_to_a_fifo_is_never_opened(tmp_path: Path) -> None:
    """DICOM/IM1 is a symlink to a FIFO outside the media: opening it would block forever, so
    list and verify finishing at all shows that it was never opened."""
    media = tmp_path / "media"
    make_files(media, "DICOM/IM2")
    os.mkfifo(tmp_path / "trap")
    (media / "DICOM" / "IM1").symlink_to(tmp_path / "trap")
    (media / "DICOM" / "OUTDIR").symlink_to(tmp_path)  # a folder symlink out, never walked
    inner_fifo = media / "DICOM" / "FIFO"
    os.mkfifo(inner_fifo)  # inside the root, still not a file to open
    write_dicomdir(media / "DICOMDIR", patient_tree(
        file_ids=[["DICOM", "IM1"], ["DICOM", "IM2"], ["DICOM", "OUTDIR", "trap"],
                  ["DICOM", "FIFO"]]))
    res = mediasvc("fileset", "list", media, "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    problems = [img["problem"] for img in
                json.loads(res.stdout)["records"][0]["children"][0]["children"][0]["children"]]
    assert problems == [
        "Referenced File ID 'DICOM\\IM1' resolves outside the media root (symlink); not opened",
        None,
        "Referenced File ID 'DICOM\\OUTDIR\\trap' resolves outside the media root (symlink); "
        "not opened",
        "not a regular file; not opened"]
    res = mediasvc("fileset", "verify", media, timeout=60)
    assert res.returncode == 1
    assert ("DICOM\\IM1: IMAGE record: Referenced File ID 'DICOM\\IM1' resolves outside the "
            "media root (symlink); not opened") in res.stdout
    assert "DICOM/IM1: symlink resolving outside the media root; not opened" in res.stdout
    # a DICOMDIR that is itself a symlink out, or a FIFO, is not opened either
    (media / "DICOMDIR").unlink()
    (media / "DICOMDIR").symlink_to(tmp_path / "trap")
    res = mediasvc("fileset", "list", media, timeout=60)
    assert res.returncode == 0
    assert ("(read from: scan (DICOMDIR unusable: a symlink leading outside the media root; "
            "not opened))") in res.stdout
    (media / "DICOMDIR").unlink()
    os.mkfifo(media / "DICOMDIR")
    res = mediasvc("fileset", "list", media, timeout=60)
    assert "(read from: scan (DICOMDIR unusable: not a regular file))" in res.stdout
    # and the scan fallback walks past it too
    (media / "DICOMDIR").unlink()
    res = mediasvc("fileset", "list", media, timeout=60)
    assert res.returncode == 0 and "scan (no DICOMDIR)" in res.stdout
    assert "DICOM/IM1: symlink resolving outside the media root; not opened" in res.stdout


# --- a well-formed DICOMDIR from DCMTK --------------------------------------------------------

@pytest.fixture(scope="module")
def dcmtk_media(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    return dcmmkdir_media(small_corpus, tmp_path_factory.mktemp("dcmmkdir") / "media")


def test_dcmmkdir_dicomdir_lists_every_instance(dcmtk_media: Path, small_corpus: Path) -> None:
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
            for p in small_corpus.glob("*.dcm")}
    listing = read_fileset(dcmtk_media)
    assert (listing.method, listing.problems) == (METHOD_DICOMDIR, [])
    assert listing.counts() == {"PATIENT": 2, "STUDY": 2, "SERIES": 4, "IMAGE": 12}
    leaves = list(listing.leaves())
    assert {r.get("ReferencedSOPInstanceUIDInFile") for r in leaves} == uids
    for rec in leaves:
        assert rec.path is not None
        assert pydicom.dcmread(rec.path).SOPInstanceUID == rec.get(
            "ReferencedSOPInstanceUIDInFile")
    # every leaf sits under the SERIES / STUDY / PATIENT its file names
    seen = 0
    for image, (patient, study, series) in listing.leaves_with_ancestors():
        assert image.path is not None
        ds = pydicom.dcmread(image.path, stop_before_pixels=True)
        assert (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
            patient.get("PatientID"), study.get("StudyInstanceUID"),
            series.get("SeriesInstanceUID"))
        seen += 1
    assert seen == 12


def test_list_filters_keep_ancestors(dcmtk_media: Path) -> None:
    listing = read_fileset(dcmtk_media)
    patient = listing.roots[1]
    series = patient.children[0].children[0]
    pid, modality = patient.get("PatientID"), series.get("Modality")

    def counts(*args: str) -> dict[str, int]:
        res = mediasvc("fileset", "list", dcmtk_media, "--json", *args)
        assert res.returncode == 0, res.stderr
        return dict(json.loads(res.stdout)["counts"])

    assert counts("--patient-id", pid) == {"PATIENT": 1, "STUDY": 1, "SERIES": 2, "IMAGE": 6}
    assert counts("--study-uid", patient.children[0].get("StudyInstanceUID")) == {
        "PATIENT": 1, "STUDY": 1, "SERIES": 2, "IMAGE": 6}
    expected_series = sum(1 for _, r in listing.walk()
                          if r.record_type == "SERIES" and r.get("Modality") == modality)
    by_modality = counts("--modality", modality.lower())
    assert by_modality["SERIES"] == expected_series and by_modality["IMAGE"] == 3 * expected_series
    assert counts("--patient-id", pid, "--modality", "XX") == {}
    assert counts("--patient-id", "nobody") == {}
    text = mediasvc("fileset", "list", dcmtk_media, "--patient-id", pid)
    assert text.stdout.splitlines()[-1] == "1 PATIENT, 1 STUDY, 2 SERIES, 6 IMAGE"
    assert f"PatientID={pid}" in text.stdout


# --- no DICOMDIR, or an unusable one ----------------------------------------------------------

def test_scan_without_dicomdir(tmp_path: Path, small_corpus: Path) -> None:
    media = tmp_path / "media"
    shutil.copytree(small_corpus, media / "sub")
    (media / "README.TXT").write_text("not DICOM")
    listing = read_fileset(media)
    assert listing.method == METHOD_SCAN and listing.dicomdir is None
    assert listing.counts() == {"PATIENT": 2, "STUDY": 2, "SERIES": 4, "IMAGE": 12}
    leaf = next(listing.leaves())
    assert leaf.path is not None and leaf.file_id == ("sub", leaf.path.name)
    assert leaf.get("ReferencedSOPInstanceUIDInFile") == pydicom.dcmread(leaf.path).SOPInstanceUID
    with pytest.raises(FileSetError, match="no DICOMDIR"):
        read_fileset(media, scan_fallback=False)


def test_scan_when_dicomdir_is_unusable(tmp_path: Path, small_corpus: Path) -> None:
    media = tmp_path / "media"
    shutil.copytree(small_corpus, media)
    (media / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    listing = read_fileset(media)
    assert listing.method == ("scan (DICOMDIR unusable: not a DICOMDIR: no Directory Record "
                              "Sequence)")
    assert listing.counts()["IMAGE"] == 12
    (media / "DICOMDIR").write_bytes(b"")
    assert read_fileset(media).method == "scan (DICOMDIR unusable: empty file)"
    # a readable DICOM file without records is no DICOMDIR either, nor one of the instances
    shutil.copy(next(small_corpus.glob("*.dcm")), media / "DICOMDIR")
    listing = read_fileset(media)
    assert listing.method.startswith("scan (DICOMDIR unusable: not a DICOMDIR: no Directory "
                                     "Record Sequence (")
    assert listing.method.endswith(" Image Storage))")
    assert listing.counts()["IMAGE"] == 12
    with pytest.raises(FileSetError, match="DICOMDIR unusable: not a DICOMDIR"):
        read_fileset(media, scan_fallback=False)
    res = mediasvc("fileset", "verify", media)
    assert res.returncode == 1 and "media read by scanning" in res.stdout


def test_missing_media_is_a_clear_error(tmp_path: Path) -> None:
    res = mediasvc("fileset", "list", tmp_path / "nowhere")
    assert res.returncode == 3
    assert res.stderr.strip() == f"mediasvc: error: {tmp_path / 'nowhere'}: no such file or folder"


# --- damaged DICOMDIRs: a listing or a FileSetError, nothing else -----------------------------

@pytest.mark.parametrize("tree", ["orthanc_dclunie_charsets", "dwv_dcmtk_noimages",
                                  "fodicom_nema_rle_noimages", "dwv_bbmri_nonstandard"])
def test_damaged_dicomdirs_never_crash(tmp_path: Path, tree: str) -> None:
    """Truncated or byte-flipped copies of real DICOMDIRs (fixed seed): each is read (offsets
    or rebuilt), or scanned with the reason, or refused with FileSetError; verify too."""
    import random

    from mediasvc.fileset.verify import verify_fileset

    original = (DICOMDIR_TREES / tree / "DICOMDIR").read_bytes()
    rng = random.Random(tree)
    methods = set()
    for n in range(40):
        data = bytearray(original)
        if n % 2:
            data = data[:rng.randrange(1, len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(132, len(data))] = rng.randrange(256)
        (tmp_path / "DICOMDIR").write_bytes(bytes(data))
        try:
            listing = read_fileset(tmp_path)
            verify_fileset(tmp_path)
        except FileSetError:
            continue
        methods.add(listing.method.split(":")[0])
        assert listing.method in (METHOD_DICOMDIR, METHOD_REBUILT) or (
            listing.method.startswith("scan (DICOMDIR unusable: "))
    assert len(methods) >= 2  # the damage did reach both the reading and the fallback paths


def test_pydicom_value_warnings_stay_out_of_logs(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """pydicom logs odd values at WARNING with the value itself (patient names too): none of
    that while reading a disc, and the warning filters are as before afterwards."""
    patient = Rec("PATIENT", {"PatientID": "ID-THAT-IS-FAR-TOO-LONG-FOR-A-LO-VALUE-" * 3})
    write_dicomdir(tmp_path / "DICOMDIR", [patient])
    filters = list(warnings.filters)
    caplog.clear()  # writing it logged, on purpose
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.DEBUG, logger="pydicom"):
            listing = read_fileset(tmp_path)
            # values are decoded when first read: after read_fileset, by its caller
            assert listing.roots[0].get("PatientID").startswith("ID-THAT-IS-FAR-TOO-LONG")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert caught == []
    assert warnings.filters == filters
    assert logging.getLogger("pydicom").level == logging.WARNING
