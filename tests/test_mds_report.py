"""The MDS report built from plain data: aggregation, computed values, statuses, French labels,
CSV rows and completeness. Values are extracted from real files (testdata, make_corpus) and
checked against pydicom reads done here."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TESTDATA, make_corpus
from pydicom.data import get_testdata_file

from mediasvc.errors import UsageError
from mediasvc.store.mds import extract_instance
from mediasvc.store.mds_def import MdsDefinition, load_definition
from mediasvc.store.mds_report import (
    CSV_COLUMNS,
    InstanceData,
    SeriesData,
    StudyData,
    build_report,
    completeness,
    report_rows,
    write_csv,
)

INST = TESTDATA / "instances"


@pytest.fixture(scope="module")
def en() -> MdsDefinition:
    return load_definition()


@pytest.fixture(scope="module")
def fr() -> MdsDefinition:
    return load_definition(variant="fr")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("rep") / "src", "--patients", "1", "--studies",
                       "1", "--series", "4", "--images", "3", "--rows", "16", "--cols", "16")


def study_from_files(paths: list[Path], definition: MdsDefinition,
                     location: str | None = "store X") -> StudyData:
    """Group files by series as the store would (plain data, no store)."""
    by_series: dict[str, list[InstanceData]] = defaultdict(list)
    modality: dict[str, str] = {}
    study_uid = ""
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        study_uid = ds.StudyInstanceUID
        modality[ds.SeriesInstanceUID] = ds.Modality
        by_series[ds.SeriesInstanceUID].append(
            InstanceData(ds.SOPInstanceUID, extract_instance(ds, definition), str(path)))
    return StudyData(study_uid, [SeriesData(uid, insts, modality[uid])
                                 for uid, insts in by_series.items()], location)


def items(entity: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in entity["items"]}


def series_by_modality(study: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["modality"]: s for s in study["series"]}


def test_study_level_computed_values(corpus: Path, en: MdsDefinition) -> None:
    paths = sorted(corpus.glob("*.dcm"))
    [study] = build_report([study_from_files(paths, en)], en)
    it = items(study)
    assert it["study.number_of_series"] == {
        **it["study.number_of_series"], "value": 4, "source": "computed", "status": "present"}
    assert it["study.modalities"]["value"] == ["CT", "DX", "MR", "PT"]
    assert it["study.modalities"]["source"] == "computed"
    assert it["study.storage_location"]["value"] == "store X"
    assert it["study.instance_uid"]["value"] == pydicom.dcmread(paths[0]).StudyInstanceUID
    # earliest acquisition of the study
    times = []
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        t = ds.AcquisitionTime
        times.append(f"{ds.AcquisitionDate[:4]}-{ds.AcquisitionDate[4:6]}-"
                     f"{ds.AcquisitionDate[6:]}T{t[:2]}:{t[2:4]}:{t[4:6]}")
    assert it["study.acquisition_datetime"]["value"] == min(times)
    for s in study["series"]:
        si = items(s)
        assert si["series.number_of_instances"]["value"] == 3
        assert si["series.number_of_instances"]["source"] == "computed"
        assert len(s["images"]) == 3


def test_counts_from_the_files_win_over_computed(corpus: Path, en: MdsDefinition) -> None:
    paths = sorted(corpus.glob("*.dcm"))
    study = study_from_files(paths, en)
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    ds.NumberOfStudyRelatedSeries = 7  # what the modality said (e.g. more than on the disc)
    study.series[0].instances[0].mds = extract_instance(ds, en)
    [rep] = build_report([study], en)
    assert items(rep)["study.number_of_series"]["value"] == 7
    assert items(rep)["study.number_of_series"]["source"] == "(0020,1206)"


def test_statuses_and_obligations(corpus: Path, en: MdsDefinition) -> None:
    [study] = build_report([study_from_files(sorted(corpus.glob("*.dcm")), en)], en)
    series = series_by_modality(study)
    pt, ct = items(series["PT"]), items(series["CT"])
    assert pt["series.patient_weight"]["obligation"] == "mandatory"
    assert pt["series.patient_weight"]["value"] == 72.5
    assert ct["series.patient_weight"]["obligation"] == "optional"
    assert ct["series.patient_weight"]["status"] == "missing"
    assert pt["series.patient_weight"]["condition"] == "mandatory if PT, else optional"
    assert "condition" not in pt["series.modality"]
    assert pt["contrast.radiopharmaceutical_dose"]["value"] == 370.0
    assert pt["contrast.radiopharmaceutical_dose"]["unit"] == "MBq"
    assert ct["contrast.radiopharmaceutical_dose"]["status"] == "not-applicable"
    ct_image = items(series["CT"]["images"][0])
    assert ct_image["mr.echo_time"]["status"] == "not-applicable"
    assert ct_image["ct.kvp"]["status"] == "present"
    assert ct_image["segmentation.file_id"]["status"] == "not-applicable"
    mr_image = items(series["MR"]["images"][0])
    assert mr_image["mr.flip_angle"]["value"] == 90.0
    assert mr_image["mr.flip_angle"]["source"] == "(0018,1314)"
    assert mr_image["mr.flip_angle"]["id"] == "6.7"


def test_missing_is_reported_never_invented(en: MdsDefinition) -> None:
    us = INST / "US" / "orthanc-tests__Issue16.dcm"
    ds = pydicom.dcmread(us, stop_before_pixels=True)
    assert "PixelSpacing" not in ds and "SliceThickness" not in ds
    [study] = build_report([study_from_files([us], en, location=None)], en)
    image = items(study["series"][0]["images"][0])
    for key in ("image.pixel_spacing", "image.slice_thickness", "image.field_of_view"):
        assert image[key]["status"] == "missing" and image[key]["value"] is None
    assert image["image.rows"]["value"] == ds.Rows
    assert items(study)["study.storage_location"]["status"] == "missing"


def test_segmentation_entities(tmp_path: Path, en: MdsDefinition) -> None:
    seg = INST / "SEG" / "highdicom__seg_image_ct_binary_fractional.dcm"
    rt = Path(get_testdata_file("rtstruct.dcm"))
    [s1] = build_report([study_from_files([seg], en)], en)
    image = items(s1["series"][0]["images"][0])
    ds = pydicom.dcmread(seg, stop_before_pixels=True)
    assert image["segmentation.roi_type"]["value"] == "SEG FRACTIONAL"
    assert image["segmentation.roi_names"]["value"] == [s.SegmentLabel for s in ds.SegmentSequence]
    assert image["segmentation.file_id"] == {**image["segmentation.file_id"],
                                             "value": str(seg), "source": "computed"}
    [s2] = build_report([study_from_files([rt], en)], en)
    image = items(s2["series"][0]["images"][0])
    assert image["segmentation.roi_names"]["value"] == ["patient", "Isocenter 1", "Isocenter 2"]
    assert image["image.rows"]["status"] == "not-applicable"  # no image in a structure set


def test_french_labels_and_numbering(corpus: Path, fr: MdsDefinition) -> None:
    [study] = build_report([study_from_files(sorted(corpus.glob("*.dcm")), fr)], fr, lang="fr")
    it = items(study)
    assert it["study.storage_location"]["label"] == "Localisation de stockage"
    assert (it["study.storage_location"]["id"], it["study.storage_location"]["number"]) == \
        ("1.4", "1.3")
    assert it["study.acquisition_datetime"]["number"] is None
    dx = items(series_by_modality(study)["DX"]["images"][0])
    assert dx["dx.kvp"]["label"] == "Pic en kilovoltage du générateur de rayons X utilisé"
    assert (dx["dx.kvp"]["id"], dx["dx.kvp"]["number"]) == ("9.3", "9.5")
    assert dx["dx.kvp"]["obligation"] == "optional"
    assert "dx.view_code_meaning" in dx
    mr = items(series_by_modality(study)["MR"]["images"][0])
    assert mr["mr.field_strength"]["label"] == "Intensité du champ nominale"
    with pytest.raises(UsageError, match="no labels in language 'de'"):
        build_report([], fr, lang="de")


def test_completeness_per_level(en: MdsDefinition, fr: MdsDefinition) -> None:
    dx = INST / "DX" / "highdicom__dx_image.dcm"
    ds = pydicom.dcmread(dx, stop_before_pixels=True)
    [result] = completeness(build_report([study_from_files([dx], en)], en))
    assert result["study_uid"] == ds.StudyInstanceUID and not result["complete"]
    missing = {level: {c["key"]: c for c in entries}
               for level, entries in result["missing"].items()}
    # no KVP, Exposure, Exposure Time in this file: mandatory in the English table
    assert set(missing["dx"]) == {"dx.kvp", "dx.exposure", "dx.exposure_time"}
    assert missing["dx"]["dx.kvp"] == {"id": "9.3", "key": "dx.kvp",
                                       "label": "Peak kilovoltage of the X-ray generator used",
                                       "missing_in": 1, "of": 1}
    assert set(missing["image"]) == {"image.slice_thickness"}  # a projection image
    assert set(missing["study"]) == {"study.description"}
    assert set(missing["equipment"]) == {"equipment.model_name"}
    assert "StudyDescription" not in ds and "ManufacturerModelName" not in ds
    # the French table makes them optional
    [result_fr] = completeness(build_report([study_from_files([dx], fr)], fr, lang="fr"))
    assert "dx" not in result_fr["missing"]


def test_complete_study(corpus: Path, en: MdsDefinition) -> None:
    [result] = completeness(build_report([study_from_files(sorted(corpus.glob("*.dcm")), en)],
                                         en))
    assert result["complete"] and result["missing"] == {}


def test_csv_rows(corpus: Path, en: MdsDefinition) -> None:
    paths = sorted(corpus.glob("*.dcm"))
    report = build_report([study_from_files(paths, en)], en)
    out = io.StringIO()
    write_csv(report_rows(report), CSV_COLUMNS, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    n_study, n_series, n_image = (len(en.report_items(e)) for e in ("study", "series", "image"))
    assert len(rows) == n_study + 4 * n_series + 12 * n_image
    assert tuple(rows[0]) == CSV_COLUMNS
    by = {(r["sop_instance_uid"], r["key"]): r for r in rows}
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    spacing = by[(ds.SOPInstanceUID, "image.pixel_spacing")]
    assert spacing["value"] == "\\".join(str(float(v)) for v in ds.PixelSpacing)
    assert spacing["entity"] == "image" and spacing["series_uid"] == ds.SeriesInstanceUID
    modalities = by[("", "study.modalities")]
    assert modalities["value"] == "CT\\DX\\MR\\PT" and modalities["source"] == "computed"
