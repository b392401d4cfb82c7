"""File-set Creator: every profile's DICOMDIR read back by dciodvfy, dcmdump, dcentvfy and
pydicom; per-file verdicts; transcoding; keys merged from any object; capacity."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TESTDATA, make_corpus, mediasvc, run
from dicom_factory import INTRAORAL, US_IMAGE, US_MULTIFRAME, XA_IMAGE, make_image
from pydicom import dcmread
from pydicom.fileset import FileSet

from mediasvc.profiles import media_profiles

FILE_ID_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")


def dciodvfy_errors(dicomdir: Path) -> list[str]:
    proc = run(["dciodvfy", dicomdir])
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")]


def records(dicomdir: Path) -> list:
    return list(dcmread(dicomdir).DirectoryRecordSequence)


def check_fileset(out: Path, n_instances: int) -> list:
    """The checks every written file-set must pass; returns its records."""
    dicomdir = out / "DICOMDIR"
    assert dciodvfy_errors(dicomdir) == []
    dump = run(["dcmdump", "-q", dicomdir])
    assert dump.returncode == 0, dump.stderr
    fs = FileSet(dicomdir)
    loaded = [inst.load() for inst in fs]
    assert len(loaded) == n_instances
    for inst in fs:
        parts = Path(inst.path).relative_to(out).parts
        assert len(parts) <= 8 and all(FILE_ID_COMPONENT.fullmatch(p) for p in parts), parts
    recs = records(dicomdir)
    leaves = [r for r in recs if "ReferencedFileID" in r]
    assert len(leaves) == n_instances
    return recs


def export(*args: str | Path) -> tuple[int, dict]:
    """Run `mediasvc export ... --json`; the report's per-file verdicts of every volume are
    gathered under "files" (one volume here: no test of this file exceeds a capacity)."""
    proc = mediasvc("export", *args, "--json")
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    report["notes"] = report.get("notes", []) + [
        n for v in report.get("volumes", []) for n in v["fileset"].get("notes", [])]
    if "files" not in report:
        seen: dict[tuple[str, str], dict] = {}
        for entry in [f for v in report.get("volumes", []) for f in v["fileset"]["files"]] + \
                report.get("rejected", []):
            seen.setdefault((entry["path"], entry["status"]), entry)
        report["files"] = list(seen.values())
    return proc.returncode, report


# -- inputs per profile ---------------------------------------------------------------------

def _inputs_for(profile_id: str, base: Path) -> tuple[Path, int]:
    src = base / "src"
    if profile_id.startswith("STD-GEN"):
        make_corpus(src, "--patients", "2", "--studies", "1", "--series", "2", "--images", "2")
        return src, 8
    if profile_id.startswith("STD-CTMR"):
        make_corpus(src, "--patients", "1", "--studies", "2", "--series", "2", "--images", "2",
                    "--modalities", "CT,MR")
        return src, 8
    if profile_id.startswith("STD-US-ID"):
        series = "1.2.826.0.1.3680043.10.1149.9.77"
        for i in range(3):
            make_image(src / f"us{i}.dcm", sop_class=US_IMAGE, modality="US", bits=8,
                       samples=3, series_uid=series, study_uid=series + ".1", number=i + 1,
                       seed=i)
        if profile_id == "STD-US-ID-MF-CDR":
            make_image(src / "mf.dcm", sop_class=US_MULTIFRAME, modality="US", bits=8,
                       frames=4, series_uid=series + ".2", study_uid=series + ".1")
            return src, 4
        return src, 3
    if profile_id == "STD-DEN-CD":
        for i in range(2):
            make_image(src / f"io{i}.dcm", sop_class=INTRAORAL, modality="IO", bits=16,
                       number=i + 1, seed=i, study_uid="1.2.826.0.1.3680043.10.1149.9.5",
                       series_uid="1.2.826.0.1.3680043.10.1149.9.5.1",
                       InstitutionName="CLINIC", ManufacturerModelName="M",
                       DetectorID="D1", DetectorManufacturerName="DM",
                       DetectorManufacturerModelName="DMM", PresentationIntentType=
                       "FOR PRESENTATION", ImageLaterality="U",
                       PositionerType="", PatientOrientation=["A", "F"])
        return src, 2
    if profile_id == "STD-XABC-CD":
        for i in range(2):
            make_image(src / f"xa{i}.dcm", sop_class=XA_IMAGE, modality="XA", bits=8,
                       rows=64, cols=64, number=i + 1, seed=i,
                       study_uid="1.2.826.0.1.3680043.10.1149.9.6",
                       series_uid="1.2.826.0.1.3680043.10.1149.9.6.1",
                       InstitutionName="CATH LAB", InstitutionAddress="",
                       PerformingPhysicianName="", CalibrationImage="NO")
        return src, 2
    raise AssertionError(f"no test input for {profile_id}")


@pytest.mark.parametrize("profile_id", sorted(media_profiles()))
def test_every_profile_writes_a_dicomdir_validators_accept(profile_id: str,
                                                          tmp_path: Path) -> None:
    src, n = _inputs_for(profile_id, tmp_path)
    out = tmp_path / "out"
    code, report = export(src, "--profile", profile_id, "--out", out)
    assert report["counts"]["rejected"] == 0, report["files"]
    assert code == 0
    recs = check_fileset(out, n)
    profile = media_profiles()[profile_id]
    images = [r for r in recs if r.DirectoryRecordType == "IMAGE"]
    if profile.icon_image == "required":
        for rec in images:
            icon = rec.IconImageSequence[0]
            assert (icon.Rows, icon.Columns) == (profile.icon_size, profile.icon_size)
            assert icon.BitsAllocated == 8 and icon.PhotometricInterpretation == "MONOCHROME2"
            assert len(icon.PixelData) == profile.icon_size ** 2
    for rec in records(out / "DICOMDIR"):
        if "ReferencedTransferSyntaxUIDInFile" in rec:
            assert rec.ReferencedTransferSyntaxUIDInFile in profile.transfer_syntaxes
    # Every key the profile requires of IMAGE records is there.
    for rec in images:
        for key in profile.record_keys("IMAGE").required:
            assert key in rec, key


def test_consistent_input_passes_dcentvfy(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _ = export(small_corpus, "--out", out)
    assert code == 0
    files = sorted(p for p in (out / "DICOM").rglob("*") if p.is_file())
    assert len(files) == 12
    proc = run(["dcentvfy", *files])
    assert proc.returncode == 0 and "Error" not in proc.stdout + proc.stderr


def test_files_are_byte_identical_and_records_match_files(small_corpus: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    _, report = export(small_corpus, "--out", out)
    for entry in report["files"]:
        assert entry["status"] == "placed"
        placed = out.joinpath(*entry["file_id"].split("\\"))
        assert placed.read_bytes() == Path(entry["path"]).read_bytes()
    for rec in records(out / "DICOMDIR"):
        if "ReferencedFileID" in rec:
            ds = dcmread(out.joinpath(*rec.ReferencedFileID), stop_before_pixels=True)
            assert rec.ReferencedSOPInstanceUIDInFile == ds.SOPInstanceUID
            assert rec.ReferencedSOPClassUIDInFile == ds.SOPClassUID
            assert rec.InstanceNumber == ds.InstanceNumber


def test_hierarchy_and_baseline_keys(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(small_corpus, "--out", out)
    fs = FileSet(out / "DICOMDIR")
    assert len(fs.find_values("PatientID")) == 2
    assert len(fs.find_values("StudyInstanceUID")) == 2
    assert len(fs.find_values("SeriesInstanceUID")) == 4
    types = [r.DirectoryRecordType for r in records(out / "DICOMDIR")]
    assert types.count("PATIENT") == 2 and types.count("SERIES") == 4
    for rec in records(out / "DICOMDIR"):
        want = {"PATIENT": ["PatientName", "PatientID"],
                "STUDY": ["StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
                          "StudyInstanceUID", "StudyID"],
                "SERIES": ["Modality", "SeriesInstanceUID", "SeriesNumber"],
                "IMAGE": ["InstanceNumber"]}[rec.DirectoryRecordType]
        assert all(k in rec for k in want), (rec.DirectoryRecordType, want)


# -- verdicts ---------------------------------------------------------------------------------

def test_bad_inputs_are_named_with_reasons_and_nothing_else_is_lost(
        small_corpus: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(small_corpus, src)
    good = sorted(src.iterdir())
    (src / "notes.txt").write_text("not an image")
    data = good[0].read_bytes()
    (src / "truncated.dcm").write_bytes(data[: len(data) // 2])
    shutil.copy(good[1], src / "copy_of_1.dcm")  # identical duplicate
    other = dcmread(good[2])
    other.PatientComments = "changed"
    other.save_as(src / "changed_2.dcm")  # same SOP Instance UID, other content
    nouid = dcmread(good[3])
    del nouid.SeriesInstanceUID
    nouid.SOPInstanceUID = "1.2.826.0.1.3680043.10.1149.9.99"
    nouid.file_meta.MediaStorageSOPInstanceUID = nouid.SOPInstanceUID
    nouid.save_as(src / "noseries.dcm")
    make_image(src / "us.dcm", sop_class=US_IMAGE, modality="US", bits=8)
    out = tmp_path / "out"
    code, report = export(src, "--profile", "STD-CTMR-CD", "--out", out)
    assert code == 1
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["notes.txt"]["status"] == "rejected"
    assert "not a DICOM file" in by_name["notes.txt"]["reason"]
    assert by_name["truncated.dcm"]["reason"].startswith("truncated")
    assert by_name["copy_of_1.dcm"]["status"] == "duplicate"
    assert "duplicate SOP Instance UID with other content" in by_name["changed_2.dcm"]["reason"]
    assert "missing type 1 attribute Series Instance UID" in by_name["noseries.dcm"]["reason"]
    assert "not allowed by STD-CTMR-CD" in by_name["us.dcm"]["reason"]
    # Every good file is on the medium, once (PT/DX of the corpus are not CT/MR: rejected).
    placed = [f for f in report["files"] if f["status"] in ("placed", "transcoded")]
    ctmr = [p for p in good if dcmread(p, stop_before_pixels=True).Modality in ("CT", "MR")]
    assert len(placed) == len(ctmr)
    check_fileset(out, len(ctmr))
    text = mediasvc("export", src, "--profile", "STD-CTMR-CD", "--out", tmp_path / "o2")
    assert text.returncode == 1
    assert "REJECTED" in text.stdout and "truncated.dcm: truncated" in text.stdout


def test_an_instance_larger_than_the_capacity_is_an_error_that_says_so(
        small_corpus: Path, tmp_path: Path) -> None:
    # Content over the capacity spans volumes (media production); a capacity that cannot
    # hold anything is an error, and nothing is written.
    proc = mediasvc("export", small_corpus, "--out", tmp_path / "o", "--capacity", "20k")
    assert proc.returncode in (2, 3)
    assert "capacity" in proc.stderr
    assert not (tmp_path / "o" / "DICOMDIR").exists()


def test_existing_fileset_is_not_overwritten(small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert export(small_corpus, "--out", out)[0] == 0
    before = (out / "DICOMDIR").read_bytes()
    proc = mediasvc("export", small_corpus, "--out", out)
    assert proc.returncode == 3 and "fileset add" in proc.stderr
    assert (out / "DICOMDIR").read_bytes() == before


# -- transcoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "MR/dcm_qa_ts__In_3.dcm",  # explicit VR big endian
    "PT/orthanc-tests__Issue94.dcm",  # implicit VR little endian
    "MR/dcm_qa_ts__In_5.dcm",  # JPEG lossless
    "NM/orthanc-tests__TransferSyntaxes_1.2.840.10008.1.2.5.dcm",  # RLE
    "MR/orthanc-tests__TransferSyntaxes_1.2.840.10008.1.2.dcm",  # no file meta at all
])
def test_transcoded_to_explicit_little_endian_with_the_same_pixels(name: str,
                                                                  tmp_path: Path) -> None:
    src = TESTDATA / "instances" / name
    out = tmp_path / "out"
    code, report = export(src, "--out", out)
    assert code == 0, report
    entry = report["files"][0]
    assert entry["status"] == "transcoded" and "-> Explicit VR Little Endian" in entry["reason"]
    placed = dcmread(out.joinpath(*entry["file_id"].split("\\")))
    original = dcmread(src, force=True)
    original.file_meta.setdefault("TransferSyntaxUID", "1.2.840.10008.1.2")
    assert placed.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert placed.SOPInstanceUID == original.SOPInstanceUID == entry["sop_instance_uid"]
    assert np.array_equal(placed.pixel_array, original.pixel_array)
    leaf = [r for r in records(out / "DICOMDIR") if "ReferencedFileID" in r][0]
    assert leaf.ReferencedTransferSyntaxUIDInFile == "1.2.840.10008.1.2.1"
    check_fileset(out, 1)


@pytest.mark.parametrize(("profile", "compress", "uid"), [
    ("STD-GEN-USB-J2K", "j2k-lossless", "1.2.840.10008.1.2.4.90"),
    ("STD-CTMR-CD", "jpeg-lossless", "1.2.840.10008.1.2.4.70"),
])
def test_compress_is_lossless_where_asked(profile: str, compress: str, uid: str,
                                         tmp_path: Path) -> None:
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "1",
                      "--images", "2", "--modalities", "CT")
    out = tmp_path / "out"
    code, report = export(src, "--profile", profile, "--compress", compress, "--out", out)
    assert code == 0
    for entry in report["files"]:
        placed = dcmread(out.joinpath(*entry["file_id"].split("\\")))
        assert placed.file_meta.TransferSyntaxUID == uid
        source = dcmread(entry["path"])
        assert placed.SOPInstanceUID == source.SOPInstanceUID  # lossless: same instance
        assert np.array_equal(placed.pixel_array, source.pixel_array)
    check_fileset(out, 2)


def test_compress_refused_where_the_profile_does_not_allow_it(tmp_path: Path,
                                                             small_corpus: Path) -> None:
    proc = mediasvc("export", small_corpus, "--compress", "j2k", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "STD-GEN-CD does not allow" in proc.stderr


# -- keys from any object ---------------------------------------------------------------------

def test_if_present_keys_come_from_any_instance_not_only_the_first(tmp_path: Path) -> None:
    site = tmp_path / "profiles" / "media"
    site.mkdir(parents=True)
    text = (Path(__file__).parents[1] / "profiles/media/STD-GEN-CD.toml").read_text()
    text = text.replace('id = "STD-GEN-CD"', 'id = "SITE-CD"')
    text += '\n[records.SERIES]\nif_present = ["BodyPartExamined", "ProtocolName"]\n'
    (site / "SITE-CD.toml").write_text(text)
    series = "1.2.826.0.1.3680043.10.1149.9.42"
    make_image(tmp_path / "src" / "a.dcm", series_uid=series, study_uid=series + ".0",
               number=1)
    make_image(tmp_path / "src" / "b.dcm", series_uid=series, study_uid=series + ".0",
               number=2, BodyPartExamined="CHEST")
    make_image(tmp_path / "src" / "c.dcm", series_uid=series, study_uid=series + ".0",
               number=3, ProtocolName="THORAX")
    out = tmp_path / "out"
    proc = mediasvc("export", tmp_path / "src", "--profile", "SITE-CD", "--out", out,
                    env={"MEDIASVC_PROFILES": str(tmp_path / "profiles")})
    assert proc.returncode == 0, proc.stderr
    (series_rec,) = [r for r in records(out / "DICOMDIR") if r.DirectoryRecordType == "SERIES"]
    assert series_rec.BodyPartExamined == "CHEST"
    assert series_rec.ProtocolName == "THORAX"


def test_missing_type2_iod_values_are_invented_and_said(tmp_path: Path) -> None:
    make_image(tmp_path / "src" / "a.dcm", StudyID="", SeriesNumber=None, InstanceNumber=None)
    out = tmp_path / "out"
    code, report = export(tmp_path / "src", "--out", out)
    assert code == 0
    assert any("StudyID absent in every file" in n for n in report["notes"])
    assert "InstanceNumber absent" in report["files"][0]["reason"]
    recs = records(out / "DICOMDIR")
    study = [r for r in recs if r.DirectoryRecordType == "STUDY"][0]
    assert study.StudyID == "1"
    check_fileset(out, 1)


def test_invalid_optional_values_are_left_out_so_validators_accept_the_dicomdir(
        tmp_path: Path) -> None:
    # Patient's Sex "?" (not a CS value): the DVD profiles copy Patient's Sex when present.
    src = TESTDATA / "instances" / "RF" / "orthanc-tests__KarstenHilbertRF.dcm"
    out = tmp_path / "out"
    code, report = export(src, "--profile", "STD-GEN-DVD-JPEG", "--out", out)
    assert code == 0
    assert "PatientSex has a value invalid for its VR" in report["files"][0]["reason"]
    patient = [r for r in records(out / "DICOMDIR") if r.DirectoryRecordType == "PATIENT"][0]
    assert "PatientSex" not in patient
    assert dciodvfy_errors(out / "DICOMDIR") == []


def test_specific_character_set_only_where_text_keys_need_it(small_corpus: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(small_corpus, "--out", out)
    for rec in records(out / "DICOMDIR"):
        text = [e for e in rec if e.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC", "SQ")]
        if "SpecificCharacterSet" in rec:
            assert text, rec.DirectoryRecordType


def test_enhanced_image_keys_come_from_the_shared_functional_groups(tmp_path: Path) -> None:
    """Enhanced MR keeps orientation and spacing in Shared Functional Groups (PS3.3
    C.7.6.16); the DVD profiles want them in IMAGE records (PS3.11 Table H.3-2). Same values
    as dcmmkdir -Pdv writes; no position, which differs per frame."""
    src = TESTDATA / "instances" / "MR" / "fo-dicom__mr_brucker.dcm"
    out = tmp_path / "out"
    assert export(src, "--profile", "STD-GEN-DVD-JPEG", "--out", out)[0] == 0
    (ours,) = [r for r in records(out / "DICOMDIR") if r.DirectoryRecordType == "IMAGE"]
    staging = tmp_path / "dcmtk"
    (staging / "DICOM").mkdir(parents=True)
    shutil.copy(src, staging / "DICOM" / "IM1")
    assert run(["dcmmkdir", "-Pdv", "+r", "DICOM"], cwd=staging).returncode == 0
    (theirs,) = [r for r in records(staging / "DICOMDIR") if r.DirectoryRecordType == "IMAGE"]
    for key in ("ImageOrientationPatient", "PixelSpacing"):
        assert key in theirs and ours[key].value == theirs[key].value, key
    assert "ImagePositionPatient" not in ours
    assert dciodvfy_errors(out / "DICOMDIR") == []


def test_export_killed_after_its_dicomdir_but_before_readme_is_redone(
        small_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert export(small_corpus, "--out", out)[0] == 0
    assert not (out / ".mediasvc-partial").exists()
    # The state a kill between the DICOMDIR and README.TXT leaves behind.
    (out / ".mediasvc-partial").touch()
    (out / "README.TXT").unlink()
    code, report = export(small_corpus, "--out", out)
    assert code == 0, report
    assert (out / "README.TXT").is_file() and not (out / ".mediasvc-partial").exists()
    check_fileset(out, 12)
    assert sum(1 for p in (out / "DICOM").rglob("*") if p.is_file()) == 12


ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def _enhanced_ct(path: Path, *, orientations: list[list[float]], positions: list[list[float]],
                 study_uid: str | None = None) -> str:
    """Write an Enhanced CT instance (PS3.3 A.38) with Plane Orientation, Plane Position and
    Pixel Measures per frame, Frame VOI LUT and CT Image Frame Type shared (C.7.6.16); return
    its SOP Instance UID."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    frames = len(positions)
    per_frame = []
    for n in range(frames):
        item = Dataset()
        pos, ori, pm = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = positions[n]
        ori.ImageOrientationPatient = orientations[n]
        pm.PixelSpacing = [0.5, 0.5]
        pm.SliceThickness = 2.0
        content = Dataset()
        content.InStackPositionNumber = n + 1
        item.FrameContentSequence = Sequence([content])
        item.PlanePositionSequence = Sequence([pos])
        item.PlaneOrientationSequence = Sequence([ori])
        item.PixelMeasuresSequence = Sequence([pm])
        per_frame.append(item)
    shared = Dataset()
    voi, ftype = Dataset(), Dataset()
    voi.WindowCenter = 40
    voi.WindowWidth = 400
    ftype.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared.FrameVOILUTSequence = Sequence([voi])
    shared.CTImageFrameTypeSequence = Sequence([ftype])
    # 64, not the factory's 32: raw US 32 is b" \x00", which scan.has_value takes for padding.
    return make_image(path, sop_class=ENHANCED_CT, frames=frames, study_uid=study_uid, rows=64,
                      cols=64,
                      PerFrameFunctionalGroupsSequence=Sequence(per_frame),
                      SharedFunctionalGroupsSequence=Sequence([shared]),
                      FrameOfReferenceUID="1.2.826.0.1.3680043.10.1149.9.77").SOPInstanceUID


def test_per_frame_keys_identical_in_every_frame_go_into_the_image_record(
        tmp_path: Path) -> None:
    """PS3.3 F.5 lets an IMAGE record hold attributes of the Image IE; an enhanced image
    keeps them in functional groups (C.7.6.16). A per-frame value is a key of the instance
    only when every frame has it (orientation here); one that differs (position) is left
    out, since the record describes the whole instance."""
    same = [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * 3
    differ = [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
              [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]]
    positions = [[0.0, 0.0, float(z)] for z in (0, 2, 4)]
    src = tmp_path / "src"
    uids = {"same": _enhanced_ct(src / "same.dcm", orientations=same, positions=positions),
            "differ": _enhanced_ct(src / "differ.dcm", orientations=differ,
                                   positions=positions)}
    out = tmp_path / "out"
    code, report = export(src, "--profile", "STD-GEN-DVD-JPEG", "--out", out)
    assert code == 0, report
    images = {r.ReferencedSOPInstanceUIDInFile: r for r in records(out / "DICOMDIR")
              if r.DirectoryRecordType == "IMAGE"}
    by_file = {name: images[uid] for name, uid in uids.items()}
    assert [float(v) for v in by_file["same"].ImageOrientationPatient] == same[0]
    assert "ImageOrientationPatient" not in by_file["differ"]
    for rec in by_file.values():
        assert [float(v) for v in rec.PixelSpacing] == [0.5, 0.5]  # per frame, all equal
        assert "ImagePositionPatient" not in rec  # differs per frame
    assert dciodvfy_errors(out / "DICOMDIR") == []


def test_functional_group_keys_from_a_header_read_without_pixels(tmp_path: Path) -> None:
    """The key lookup works on a data set read with stop_before_pixels (the functional
    groups precede Pixel Data): shared Frame VOI LUT and Frame Type (as Image Type), per
    frame Slice Thickness when equal; nothing when the frames differ."""
    from mediasvc.fileset.scan import _from_functional_groups

    path = tmp_path / "ct.dcm"
    _enhanced_ct(path, orientations=[[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * 2,
                 positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    ds = dcmread(path, stop_before_pixels=True)
    assert "PixelData" not in ds

    def value(keyword: str) -> object:
        elem = _from_functional_groups(ds, keyword)
        return None if elem is None else (elem.keyword, elem.VR, list(elem.value)
                                          if elem.VM > 1 else elem.value)

    assert value("WindowCenter") == ("WindowCenter", "DS", 40)
    assert value("WindowWidth") == ("WindowWidth", "DS", 400)
    assert value("ImageType") == ("ImageType", "CS", ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"])
    assert value("SliceThickness") == ("SliceThickness", "DS", 2.0)
    assert value("ImagePositionPatient") is None
