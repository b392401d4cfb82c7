"""`fileset add/remove/compact` refresh README.TXT, INDEX.HTM and IHE_PDI/ (IHE PDI content)
where mediasvc wrote them, so that they list what the DICOMDIR now holds; a foreign README is
left alone and the command says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import make_corpus, mediasvc
from dicom_factory import make_image
from pydicom import dcmread
from pydicom.uid import generate_uid

INSTITUTION = "Example Hospital, Radiology"


def content_line(text: str) -> tuple[int, int, int]:
    """(patients, studies, instances) of README.TXT's content line, as pdi.readme_text
    prints it."""
    m = re.search(r"Content of this volume \((\d+) patient\(s\), (\d+) study\(ies\), "
                  r"(\d+) instances\):", text)
    assert m, text
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def web_pages(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in (root / "IHE_PDI").glob("*.HTM")}


@pytest.fixture()
def medium(tmp_path: Path) -> Path:
    src = make_corpus(tmp_path / "a", "--patients", "1", "--studies", "1", "--series", "2",
                      "--images", "3", "--seed", "5", "--rows", "64", "--cols", "64")
    out = tmp_path / "medium"
    proc = mediasvc("export", src, "--out", out, "--web", "--institution", INSTITUTION,
                    "--contact", "+41 00 000 00 00")
    assert proc.returncode == 0, proc.stderr
    return out


def added_study(folder: Path) -> str:
    """Two images of one new study and series (another patient); returns the study UID."""
    study, series = generate_uid(), generate_uid()
    for n in (1, 2):
        make_image(folder / f"new{n}.dcm", rows=64, cols=64, study_uid=study,
                   series_uid=series, patient_id="PIDNEW", number=n, seed=n,
                   StudyDescription="ADDED STUDY")
    return study


def test_add_then_remove_refresh_readme_index_and_web_pages(medium: Path,
                                                           tmp_path: Path) -> None:
    readme0 = (medium / "README.TXT").read_text()
    assert content_line(readme0) == (1, 1, 6)
    assert not any("ADDED STUDY" in t for t in web_pages(medium).values())
    study = added_study(tmp_path / "new")

    proc = mediasvc("fileset", "add", medium, tmp_path / "new")
    assert proc.returncode == 0, proc.stderr
    assert "refreshed IHE_PDI/, README.TXT, INDEX.HTM" in proc.stdout
    readme = (medium / "README.TXT").read_text()
    assert content_line(readme) == (2, 2, 8)
    assert "ADDED STUDY: 1 series, 2 instances" in readme
    assert f"Institution: {INSTITUTION}" in readme  # what the old README said is kept
    index = (medium / "INDEX.HTM").read_text()
    assert "ADDED STUDY: 1 series, 2 instances" in index
    pages = web_pages(medium)
    [study_page] = [n for n, t in pages.items() if n.startswith("STU") and "ADDED STUDY" in t]
    [series_page] = re.findall(r'href="(SER\d{5}\.HTM)"', pages[study_page])
    images = re.findall(r'<img src="(S\d{5}/I\d{5}\.JPG)"', pages[series_page])
    assert len(images) == 2 and all((medium / "IHE_PDI" / i).is_file() for i in images)
    assert f'href="IHE_PDI/{study_page}"' in index  # INDEX.HTM links the new study's page
    assert not list(medium.glob(".IHE_PDI*"))

    proc = mediasvc("fileset", "remove", medium, "--study", study)
    assert proc.returncode == 0, proc.stderr
    readme = (medium / "README.TXT").read_text()
    assert content_line(readme) == (1, 1, 6)
    assert "ADDED STUDY" not in readme
    assert "ADDED STUDY" not in (medium / "INDEX.HTM").read_text()
    pages = web_pages(medium)
    assert not any("ADDED" in t for t in pages.values())
    assert len(pages) == 1 + 1 + 2  # one patient, one study, two series pages
    assert len(list((medium / "IHE_PDI").rglob("*.JPG"))) == 6
    assert readme == readme0  # the same volume content: the same README as the export wrote

    proc = mediasvc("fileset", "compact", medium)
    assert proc.returncode == 0 and "refreshed" in proc.stdout
    assert (medium / "README.TXT").read_text() == readme0
    # The DICOMDIR still lists what the pages show.
    leaves = [r for r in dcmread(medium / "DICOMDIR").DirectoryRecordSequence
              if "ReferencedFileID" in r]
    assert len(leaves) == 6


def test_a_foreign_readme_is_left_alone_and_the_command_says_so(medium: Path,
                                                               tmp_path: Path) -> None:
    foreign = b"Burned by another program.\r\nCall 555-0100.\r\n"
    (medium / "README.TXT").write_bytes(foreign)
    added_study(tmp_path / "new")
    proc = mediasvc("fileset", "add", medium, tmp_path / "new")
    assert proc.returncode == 0, proc.stderr
    assert "README.TXT was not written by mediasvc: left alone" in proc.stdout
    assert (medium / "README.TXT").read_bytes() == foreign
    # INDEX.HTM and the web pages are ours: refreshed, with the institution from INDEX.HTM.
    index = (medium / "INDEX.HTM").read_text()
    assert "ADDED STUDY" in index and INSTITUTION in index
    assert any("ADDED STUDY" in t for t in web_pages(medium).values())


def test_nothing_of_mediasvc_on_the_volume_nothing_is_written(medium: Path,
                                                             tmp_path: Path) -> None:
    """A volume whose README and INDEX another program wrote: neither they nor its IHE_PDI/
    are touched; --json carries the notes."""
    (medium / "README.TXT").write_text("theirs\n")
    (medium / "INDEX.HTM").write_text("<html>theirs</html>\n")
    before = {p: p.read_bytes() for p in (medium / "IHE_PDI").rglob("*") if p.is_file()}
    added_study(tmp_path / "new")
    proc = mediasvc("fileset", "add", medium, tmp_path / "new", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "IHE_PDI/ was not written by mediasvc: left alone" in proc.stdout
    assert "INDEX.HTM was not written by mediasvc: left alone" in proc.stdout
    assert (medium / "README.TXT").read_text() == "theirs\n"
    assert {p: p.read_bytes() for p in (medium / "IHE_PDI").rglob("*") if p.is_file()} == before


def test_what_only_the_old_readme_knew_is_written_again() -> None:
    """Volume k of n, the other volumes' content, split studies, the viewer and the site are
    not in this volume's DICOMDIR: a refresh reads them back from the README it replaces."""
    from mediasvc.media.pdi import (
        PatientInfo,
        SeriesInfo,
        SiteInfo,
        StudyInfo,
        VolumeContext,
        VolumeInfo,
        index_htm,
        readme_text,
    )
    from mediasvc.media.pdi_refresh import parse_index, parse_readme

    def volume(desc: str) -> VolumeInfo:
        study = StudyInfo("1.2.3", "20260101", "", desc, "A1", "1",
                          [SeriesInfo("1.2.3.1", "CT", "1", "", [("DICOM", "IM1")])])
        return VolumeInfo("SET", [PatientInfo("DOE^JANE", "P1", "", "F", [study])])

    site = SiteInfo(INSTITUTION, "+41 00 000 00 00")
    ctx = VolumeContext(2, 3, ((1, volume("HEAD")), (3, volume("LEGS"))),
                        ("CHEST split over volumes 2, 3",), True, "VIEWER")
    text = readme_text(volume("CHEST"), site, ctx)
    said = parse_readme(text)
    assert (said.site, said.number, said.count, said.viewer) == (site, 2, 3, "VIEWER")
    assert said.split_notes == ["CHEST split over volumes 2, 3"]
    again = VolumeContext(said.number, said.count, (), tuple(said.split_notes), True,
                          said.viewer, tuple((n, tuple(v)) for n, v in said.others.items()))
    assert readme_text(volume("CHEST"), said.site, again) == text
    from_index = parse_index(index_htm(volume("CHEST"), site, ctx))
    assert (from_index.site, from_index.number, from_index.count) == (site, 2, 3)


def test_a_web_swap_cut_by_a_crash_is_finished_by_the_next_refresh(medium: Path) -> None:
    """Killed between its two renames, IHE_PDI/ is missing and .IHE_PDI.new complete: the
    next refresh puts it in place before building anew; nothing dotted is left."""
    from mediasvc.media.pdi_refresh import refresh_volume

    (medium / "IHE_PDI").rename(medium / ".IHE_PDI.new")
    (medium / ".IHE_PDI.old").mkdir()
    report = refresh_volume(medium)
    assert report.written == ["IHE_PDI/", "README.TXT", "INDEX.HTM"]
    assert len(web_pages(medium)) == 4 and not list(medium.glob(".IHE_PDI*"))
