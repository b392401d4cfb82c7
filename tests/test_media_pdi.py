"""README.TXT / INDEX.HTM content, label merge data: from a DICOMDIR written by DCMTK."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pydicom
import pytest
from conftest import run

from mediasvc.errors import ConfigError
from mediasvc.media.labels import FIELDS, escape_field, label_fields, load_label_settings
from mediasvc.media.pdi import (
    PatientInfo,
    SiteInfo,
    StudyInfo,
    VolumeContext,
    VolumeInfo,
    dicom_date,
    index_htm,
    person_name,
    read_volume,
    write_root_files,
)

SITE = SiteInfo("Example Hospital, Radiology", "+41 00 000 00 00")


@pytest.fixture(scope="module")
def dcmtk_tree(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file-set made by the reference FSC (dcmmkdir) from the small corpus."""
    root = tmp_path_factory.mktemp("dcmtk") / "vol"
    (root / "DICOM").mkdir(parents=True)
    for n, src in enumerate(sorted(small_corpus.glob("*.dcm")), 1):
        shutil.copy(src, root / "DICOM" / f"IM{n:06d}")
    proc = run(["dcmmkdir", "+r", "+id", root, "--recurse", "DICOM"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_read_volume_matches_the_corpus(dcmtk_tree: Path, small_corpus: Path) -> None:
    vol = read_volume(dcmtk_tree)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in small_corpus.glob("*.dcm")]
    assert len(vol.patients) == len({ds.PatientID for ds in sources}) == 2
    assert len(vol.studies) == len({ds.StudyInstanceUID for ds in sources})
    assert vol.instance_count == len(sources) == 12
    ids = {p.patient_id for p in vol.patients}
    assert ids == {ds.PatientID for ds in sources}
    for _, study in vol.studies:
        assert study.instance_count == 6 and len(study.series) == 2
        for series in study.series:
            for file_id in series.files:
                assert (dcmtk_tree.joinpath(*file_id)).is_file()


def test_readme_and_index_say_what_where_and_how(dcmtk_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "vol"
    shutil.copytree(dcmtk_tree, root)
    vol = read_volume(root)
    other = VolumeInfo("OTHER", [PatientInfo("ROE^RICHARD", "PID9", "", "M",
                                             [StudyInfo("1.2.3", "20250101", "", "CT HEAD",
                                                        "", "1")])])
    ctx = VolumeContext(number=2, count=3, others=((1, other), (3, other)),
                        split_notes=("study 1.2 split by series over volumes 2, 3",),
                        viewer="VIEWER")
    written = write_root_files(root, vol, SITE, ctx)
    assert [p.name for p in written] == ["README.TXT", "INDEX.HTM"]
    readme = (root / "README.TXT").read_bytes().decode("utf-8")
    assert "\r\n" in readme
    assert "volume 2 of 3" in readme
    assert "Example Hospital, Radiology" in readme and "+41 00 000 00 00" in readme
    assert "mediasvc" in readme and "DICOMDIR" in readme
    assert "DOE, PATIENT000" in readme and "PID00000" in readme
    assert "On volume 1 of 3:" in readme and "On volume 3 of 3:" in readme
    assert "ROE, RICHARD [PID9] 2025-01-01" in readme
    assert "split by series" in readme and "VIEWER" in readme
    # INDEX.HTM is well-formed XHTML with the same facts.
    tree = ET.parse(root / "INDEX.HTM")
    text = "".join(tree.getroot().itertext())
    assert "volume 2 of 3" in text and "DOE, PATIENT001" in text and "ROE, RICHARD" in text
    assert not list(root.glob("*.part"))


def test_index_escapes_markup() -> None:
    vol = VolumeInfo("X", [PatientInfo("<script>^A&B", "1", "", "",
                                       [StudyInfo("1", "", "", "a<b", "", "")])])
    page = index_htm(vol, SiteInfo("<i>", ""), VolumeContext())
    ET.fromstring(page.split("\n", 2)[2])  # parses: nothing unescaped
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(("value", "shown"), [
    ("19750312", "1975-03-12"), ("18991231", "1899-12-31"), ("", ""), ("1975", "1975"),
    ("1975.03.12", "1975-03-12"), ("UNKNOWN", "UNKNOWN"),
])
def test_dates_never_fail(value: str, shown: str) -> None:
    assert dicom_date(value) == shown


def test_person_names() -> None:
    assert person_name("DOE^JOHN^Q^DR^JR") == "DOE, DR JOHN Q JR"
    assert person_name("DOE") == "DOE"
    assert person_name("^JOHN") == "JOHN"
    assert person_name("YAMADA^TARO=山田^太郎") == "YAMADA, TARO"
    assert person_name("") == ""


def test_label_fields_escaped_with_robust_dates() -> None:
    vol = VolumeInfo("X", [PatientInfo("MÜLLER^JOSÉ", "P1\n", "18890101", "M", [
        StudyInfo("1", "20260115", "", "CT THORAX\r\nCopies=99", "", ""),
        StudyInfo("2", "", "", "CT\tABDOMEN", "", ""),
    ])])
    fields = label_fields(vol, SITE, web=True, number=1, count=2)
    assert list(fields) == list(FIELDS)
    assert fields["PATIENT_NAME"] == "MULLER, JOSE"
    assert fields["PATIENT_ID"] == "P1"
    assert fields["BIRTH_DATE"] == "1889-01-01"
    assert fields["STUDY_DATES"] == "2026-01-15"
    # one line: a newline would inject a key into the job file
    assert fields["STUDY_DESCRIPTIONS"] == "CT THORAX Copies=99; CT ABDOMEN"
    assert fields["CONTENT"] == "DICOM PLUS WEB" and fields["VOLUME"] == "1 OF 2"
    assert all("\n" not in v and "\r" not in v and v.isascii() for v in fields.values())
    empty = VolumeInfo("X", [PatientInfo("", "", "", "", [])])
    blank = label_fields(empty, SiteInfo(), web=False)
    assert blank["BIRTH_DATE"] == "" and blank["CONTENT"] == "DICOM ONLY"


def test_escape_field_bounds_length() -> None:
    assert len(escape_field("A" * 500)) == 120
    assert escape_field("  a \x00\x1b b  ") == "a b"


def test_label_settings_file(tmp_path: Path) -> None:
    good = tmp_path / "label.toml"
    good.write_text('template = "C:\\\\Labels\\\\dicom.std"\n[fields]\nINSTITUTION = "Radio"\n')
    settings = load_label_settings(good)
    assert settings.template == "C:\\Labels\\dicom.std"
    vol = VolumeInfo("X", [])
    assert label_fields(vol, SITE, web=False, settings=settings)["INSTITUTION"] == "Radio"
    bad = tmp_path / "bad.toml"
    bad.write_text('[fields]\nPATIENT_NAM = "x"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: fields\.PATIENT_NAM.*unknown label field"):
        load_label_settings(bad)


def test_volume_from_instances_matches_the_dicomdir(small_corpus: Path, tmp_path: Path) -> None:
    from mediasvc.fileset.creator import scan_sources, write_fileset
    from mediasvc.media.pdi import volume_from_instances
    from mediasvc.profiles import media_profile

    # One source in ISO_IR 100: names must come out decoded with the file's character set.
    latin = pydicom.dcmread(next(iter(sorted(small_corpus.glob("*.dcm")))))
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName, latin.PatientID = "MÜLLER^JÖRG", "LAT1"
    latin.StudyInstanceUID, latin.SeriesInstanceUID = "1.2.3.4.1", "1.2.3.4.2"
    latin.SOPInstanceUID = latin.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.3"
    (tmp_path / "extra").mkdir()
    latin.save_as(tmp_path / "extra" / "latin.dcm")
    profile = media_profile("STD-GEN-CD")
    scan = scan_sources([small_corpus, tmp_path / "extra"], profile, workers=1)
    result = write_fileset(scan.instances, tmp_path / "v", profile, fileset_id="X", workers=1)
    file_ids = {v.sop_instance_uid: v.file_id for v in result.verdicts if v.file_id}
    fast = volume_from_instances(scan.instances, file_ids)
    read = read_volume(tmp_path / "v")

    def shape(vol: VolumeInfo) -> object:
        return sorted((p.patient_id, p.name, s.uid, s.date, s.description, r.uid, r.modality,
                       r.number, sorted(r.files))
                      for p in vol.patients for s in p.studies for r in s.series)

    assert shape(fast) == shape(read) and fast.instance_count == 13
    assert "MÜLLER^JÖRG" in {p.name for p in fast.patients}
