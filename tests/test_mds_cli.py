"""End to end: `mediasvc export` a small tree, `mediasvc import` it, then `mediasvc mds` as
JSON, CSV and --completeness, as real processes; values checked against pydicom reads of the
source files."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TESTDATA, make_corpus, mediasvc
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

INST = TESTDATA / "instances"
EXTRA = [INST / "SEG" / "highdicom__seg_image_ct_binary.dcm",
         INST / "DX" / "highdicom__dx_image.dcm",
         INST / "PT" / "orthanc-tests__Issue94.dcm"]  # uncompressed: export keeps it as is


def _rtstruct(out: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0]
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2010020400001.3.1"
    series.ContourImageSequence = Sequence([ref])
    ds.save_as(out, enforce_file_format=True)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("mdscli")
    src = make_corpus(base / "src", "--patients", "1", "--studies", "1", "--series", "4",
                      "--images", "2", "--rows", "16", "--cols", "16")
    for path in EXTRA:
        shutil.copy(path, src / path.name)
    _rtstruct(src / "rtstruct.dcm")
    sources = {}
    for path in src.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sources[ds.SOPInstanceUID] = ds
    media, store = base / "media", base / "store"
    r = mediasvc("export", src, "--out", media, "--fileset-id", "MDSTEST", "--link", "copy")
    assert r.returncode == 0, r.stderr
    r = mediasvc("import", media, "--store", store, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["imported"] == len(sources)
    return {"store": store, "sources": sources, "base": base}


def mds(imported: dict[str, Any], *args: str) -> tuple[int, str, str]:
    r = mediasvc("mds", "--store", imported["store"], *args)
    return r.returncode, r.stdout, r.stderr


def items(entity: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in entity["items"]}


@pytest.fixture(scope="module")
def report(imported: dict[str, Any]) -> list[dict[str, Any]]:
    rc, out, err = mds(imported, "--format", "json")
    assert rc == 0, err
    data: list[dict[str, Any]] = json.loads(out)
    return data


def test_json_values_match_the_files(imported: dict[str, Any],
                                     report: list[dict[str, Any]]) -> None:
    sources: dict[str, Dataset] = imported["sources"]
    studies = {ds.StudyInstanceUID for ds in sources.values()}
    assert {s["study_uid"] for s in report} == studies
    seen = set()
    for study in report:
        for series in study["series"]:
            for image in series["images"]:
                ds = sources[image["sop_instance_uid"]]
                it = items(image)
                seen.add(ds.Modality)
                assert Path(image["path"]).is_file()
                if ds.Modality == "CT":
                    assert it["ct.kvp"]["value"] == int(ds.KVP)
                    assert it["ct.convolution_kernel"]["value"] == ds.ConvolutionKernel
                elif ds.Modality == "MR":
                    assert it["mr.repetition_time"]["value"] == float(ds.RepetitionTime)
                    assert it["mr.echo_time"]["value"] == float(ds.EchoTime)
                    assert it["mr.field_strength"]["value"] == float(ds.MagneticFieldStrength)
                elif ds.Modality == "DX":
                    assert it["dx.image_laterality"]["value"] == ds.ImageLaterality
                elif ds.Modality == "SEG":
                    assert it["segmentation.roi_names"]["value"] == [
                        s.SegmentLabel for s in ds.SegmentSequence]
                    assert it["segmentation.file_id"]["value"] == image["path"]
                    assert it["segmentation.file_id"]["source"] == "computed"
                elif ds.Modality == "RTSTRUCT":
                    assert it["segmentation.roi_names"]["value"] == [
                        r.ROIName for r in ds.StructureSetROISequence]
                    assert it["segmentation.referenced_sop_instance_uids"]["value"] == [
                        "1.2.826.0.1.3680043.8.498.2010020400001.3.1"]
                if "PixelSpacing" in ds and "ReconstructionDiameter" not in ds:
                    assert it["image.field_of_view"]["value"] == [
                        round(ds.Columns * float(ds.PixelSpacing[1]), 2),
                        round(ds.Rows * float(ds.PixelSpacing[0]), 2)]
            if series["modality"] == "PT":
                ds = sources[series["images"][0]["sop_instance_uid"]]
                dose = ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
                assert items(series)["contrast.radiopharmaceutical_dose"]["value"] == round(
                    float(dose) / 1e6, 3)
    assert seen >= {"CT", "MR", "PT", "DX", "SEG", "RTSTRUCT"}


def test_computed_counts(imported: dict[str, Any], report: list[dict[str, Any]]) -> None:
    sources: dict[str, Dataset] = imported["sources"]
    for study in report:
        mine = [ds for ds in sources.values() if ds.StudyInstanceUID == study["study_uid"]]
        series_uids = {ds.SeriesInstanceUID for ds in mine}
        it = items(study)
        assert it["study.number_of_series"]["value"] == len(series_uids)
        assert it["study.number_of_series"]["source"] == "computed"
        assert it["study.modalities"]["value"] == sorted({ds.Modality for ds in mine})
        assert "MDSTEST" in it["study.storage_location"]["value"]
        for series in study["series"]:
            n = sum(1 for ds in mine if ds.SeriesInstanceUID == series["series_uid"])
            assert items(series)["series.number_of_instances"]["value"] == n
            assert items(series)["series.number_of_instances"]["source"] == "computed"


def test_csv_matches_json(imported: dict[str, Any], report: list[dict[str, Any]]) -> None:
    rc, out, err = mds(imported, "--format", "csv")
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = 0
    for study in report:
        expected += len(study["items"])
        for series in study["series"]:
            expected += len(series["items"]) + sum(len(i["items"]) for i in series["images"])
    assert len(rows) == expected
    sources: dict[str, Dataset] = imported["sources"]
    ct = next(ds for ds in sources.values() if ds.Modality == "CT")
    row = next(r for r in rows if r["sop_instance_uid"] == ct.SOPInstanceUID
               and r["key"] == "ct.kvp")
    assert row == {**row, "id": "7.1", "value": str(int(ct.KVP)), "source": "(0018,0060)",
                   "status": "present", "entity": "image", "level": "ct",
                   "study_uid": ct.StudyInstanceUID, "series_uid": ct.SeriesInstanceUID}


def test_completeness(imported: dict[str, Any]) -> None:
    rc, out, err = mds(imported, "--completeness")
    assert rc == 1, err  # some mandatory items are missing: listed, exit status 1
    result = {s["study_uid"]: s for s in json.loads(out)}
    sources: dict[str, Dataset] = imported["sources"]
    corpus_study = next(ds.StudyInstanceUID for ds in sources.values()
                        if ds.Modality == "MR")
    dx_study = next(ds.StudyInstanceUID for ds in sources.values()
                    if ds.Modality == "DX" and ds.SOPInstanceUID.startswith("1.2.826.0.1.36800"
                                                                            "43.8.498"))
    assert result[corpus_study]["complete"]
    missing_dx = {c["key"] for c in result[dx_study]["missing"]["dx"]}
    assert missing_dx == {"dx.kvp", "dx.exposure", "dx.exposure_time"}
    # French obligations: those are optional there; labels in French
    rc, out, _ = mds(imported, "--completeness", "--lang", "fr", "--study-uid", dx_study)
    [fr] = json.loads(out)
    assert "dx" not in fr["missing"]
    assert fr["missing"]["study"][0]["label"] == "Description"
    # CSV form
    rc, out, _ = mds(imported, "--completeness", "--format", "csv", "--study-uid", dx_study)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["key"] for r in rows if r["level"] == "dx"} == missing_dx
    # a complete study alone: exit status 0
    rc, out, _ = mds(imported, "--completeness", "--study-uid", corpus_study)
    assert rc == 0 and json.loads(out)[0]["missing"] == {}


def test_reextract_gives_the_same_values(imported: dict[str, Any],
                                         report: list[dict[str, Any]]) -> None:
    rc, out, err = mds(imported, "--reextract")
    assert rc == 0, err
    assert json.loads(out) == report


def test_errors(imported: dict[str, Any]) -> None:
    rc, out, err = mds(imported, "--study-uid", "1.2.3.4")
    assert rc == 2 and "no study 1.2.3.4 in the store" in err
    rc, out, err = mds(imported, "--lang", "de")
    assert rc == 2 and "no labels in language 'de' (languages: en, fr)" in err
    rc, out, err = mds(imported, "--variant", "de")
    assert rc == 2 and "no MDS variant 'de' (variants: en, fr)" in err
    r = mediasvc("mds", "--store", imported["base"] / "nowhere")
    assert r.returncode == 2 and "no store here" in r.stderr
    assert not (imported["base"] / "nowhere").exists()
    # a site's definition with a typo: refused, naming file, key and value
    shipped = (Path(__file__).parents[1] / "profiles" / "mds" / "mds.toml").read_text("utf-8")
    assert 'tags = ["KVP"]' in shipped
    bad = imported["base"] / "bad.toml"
    bad.write_text(shipped.replace('tags = ["KVP"]', 'tags = ["KVPP"]'), encoding="utf-8")
    rc, out, err = mds(imported, "--definition", str(bad))
    assert rc == 2 and out == ""
    assert re.search(rf"{re.escape(str(bad))}: item\[\d+\]\.tags\[0\] = 'KVPP': 'KVPP' is "
                     r"not a DICOM keyword of the data dictionary \(PS3\.6\)", err), err
