"""MDS extraction checked against independent reads of the files (pydicom directly, here).

Third-party instances from ../shared/testdata/instances (CT, MR, PT, NM, DX, US, SEG), the RT
Structure Set shipped with pydicom, and make_corpus output (CT, MR, PT, DX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TESTDATA, make_corpus
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from mediasvc.store.mds import extract_instance, iso_datetime, iso_time
from mediasvc.store.mds_def import MdsDefinition, load_definition

INST = TESTDATA / "instances"


@pytest.fixture(scope="module")
def definition() -> MdsDefinition:
    return load_definition()


def read(path: Path | str) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def files(modality: str) -> list[Path]:
    out = []
    for p in sorted((INST / modality).iterdir()):
        try:
            pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # files without a preamble are not what these tests are about
            continue
        out.append(p)
    return out


def value(mds: dict[str, Any], key: str) -> Any:
    return mds[key]["value"] if key in mds else None


def nonempty(ds: Dataset, keyword: str) -> bool:
    return keyword in ds and ds[keyword].value not in (None, "", [])


# -- CT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", files("CT"), ids=lambda p: p.name)
def test_ct_kvp_kernel_fov(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    if nonempty(ds, "KVP"):
        assert value(mds, "ct.kvp") == pytest.approx(float(ds.KVP))
        assert mds["ct.kvp"]["source"] == "(0018,0060)"
    else:
        assert "ct.kvp" not in mds
    if nonempty(ds, "ConvolutionKernel"):
        kernel = ds.ConvolutionKernel
        expected = "\\".join(kernel) if isinstance(kernel, pydicom.multival.MultiValue) \
            else str(kernel).strip()
        assert value(mds, "ct.convolution_kernel") == expected
        assert mds["ct.convolution_kernel"]["source"] == "(0018,1210)"
    fov = value(mds, "image.field_of_view")
    if nonempty(ds, "ReconstructionDiameter"):
        d = round(float(ds.ReconstructionDiameter), 2)
        assert fov == [d, d]
        assert mds["image.field_of_view"]["source"] == "(0018,1100)"
    elif nonempty(ds, "PixelSpacing"):
        row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
        assert fov == [round(ds.Columns * col_sp, 2), round(ds.Rows * row_sp, 2)]
        assert mds["image.field_of_view"]["source"] == "derived"
    # groups of other modalities are not extracted from a CT image
    assert not [k for k in mds if k.split(".")[0] in ("mr", "nmpt", "dx", "segmentation")]


def test_ct_known_values(definition: MdsDefinition) -> None:
    mds = extract_instance(read(INST / "CT" / "dwv__osirix-goudurix.dcm"), definition)
    assert value(mds, "ct.kvp") == 120
    assert value(mds, "ct.convolution_kernel") == "B30f"
    assert value(mds, "image.field_of_view") == [200.0, 200.0]
    assert value(mds, "study.acquisition_datetime") == "2004-04-20T13:32:11.784922"
    assert mds["study.acquisition_datetime"]["source"] == "(0008,0022)+(0008,0032)"


def test_private_series_description_only_under_its_creator(definition: MdsDefinition) -> None:
    path = INST / "CT" / "orthanc-tests__2020-09-12-ELSCINT1-PMSCT_RLE1.dcm"
    ds = read(path)
    creator = ds.private_block(0x00E1, "ELSCINT1")
    assert "SeriesDescription" not in ds
    mds = extract_instance(ds, definition)
    assert value(mds, "series.description") == creator[0x40].value == "Body-Low Dose CT"
    assert mds["series.description"]["source"] == "(00E1,1040)@ELSCINT1"
    # The same element under another creator is not the ELSCINT1 Image Label.
    # (read again: pydicom caches private blocks per dataset, a copy would keep the cache)
    other = read(path)
    other[0x00E10010].value = "SOMEONE ELSE"
    assert "series.description" not in extract_instance(other, definition)
    # And under ELSCINT1 in another block it still is (PS3.5 7.8.1: the block is the file's).
    moved = read(path)
    del moved[0x00E10010]
    del moved[0x00E11040]
    moved.add_new(0x00E10011, "LO", "ELSCINT1")
    moved.add_new(0x00E11140, "SH", "Moved Label")
    assert value(extract_instance(moved, definition), "series.description") == "Moved Label"


# -- MR ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", files("MR"), ids=lambda p: p.name)
def test_mr_tr_te_field_strength(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds \
        else Dataset()
    frame = ds.PerFrameFunctionalGroupsSequence[0] if "PerFrameFunctionalGroupsSequence" in ds \
        else Dataset()

    def fg(seq: str, kw: str) -> Any:
        for group in (shared, frame):
            if seq in group and kw in group[seq][0]:
                return group[seq][0][kw].value
        return None

    tr = ds.RepetitionTime if nonempty(ds, "RepetitionTime") else fg(
        "MRTimingAndRelatedParametersSequence", "RepetitionTime")
    te = ds.EchoTime if nonempty(ds, "EchoTime") else fg("MREchoSequence", "EffectiveEchoTime")
    flip = ds.FlipAngle if nonempty(ds, "FlipAngle") else fg(
        "MRTimingAndRelatedParametersSequence", "FlipAngle")
    assert value(mds, "mr.repetition_time") == (None if tr is None else pytest.approx(float(tr)))
    assert value(mds, "mr.echo_time") == (None if te is None else pytest.approx(float(te)))
    assert value(mds, "mr.flip_angle") == (None if flip is None else pytest.approx(float(flip)))
    if nonempty(ds, "MagneticFieldStrength"):
        assert value(mds, "mr.field_strength") == pytest.approx(float(ds.MagneticFieldStrength))
        assert mds["mr.field_strength"]["source"] == "(0018,0087)"
    if flip is not None and nonempty(ds, "FlipAngle"):
        # the tables' (0018,0024) is Sequence Name, never the flip angle
        assert mds["mr.flip_angle"]["source"] == "(0018,1314)"


def test_mr_enhanced_functional_groups(definition: MdsDefinition) -> None:
    ds = read(INST / "MR" / "fo-dicom__mr_brucker.dcm")
    assert "RepetitionTime" not in ds and "PixelSpacing" not in ds
    mds = extract_instance(ds, definition)
    timing = ds.SharedFunctionalGroupsSequence[0].MRTimingAndRelatedParametersSequence[0]
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert value(mds, "mr.repetition_time") == pytest.approx(float(timing.RepetitionTime))
    assert mds["mr.repetition_time"]["source"] == \
        "(5200,9229)[0].(0018,9112)[0].(0018,0080)"
    assert value(mds, "image.pixel_spacing") == [float(v) for v in measures.PixelSpacing]
    assert value(mds, "image.field_of_view") == [
        round(ds.Columns * float(measures.PixelSpacing[1]), 2),
        round(ds.Rows * float(measures.PixelSpacing[0]), 2)]
    # per-frame group (first frame) when the shared group lacks it
    ds2 = read(INST / "MR" / "orthanc-tests__Issue22-NoPixelData.dcm")
    mds2 = extract_instance(ds2, definition)
    pm = ds2.PerFrameFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert value(mds2, "image.pixel_spacing") == [float(v) for v in pm.PixelSpacing]
    assert mds2["image.pixel_spacing"]["source"].startswith("(5200,9230)[0]")
    assert value(mds2, "study.acquisition_datetime") == iso_datetime(ds2.AcquisitionDateTime)


# -- PT / NM ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", files("PT"), ids=lambda p: p.name)
def test_pt_radiopharmaceutical_dose_in_mbq(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    info = ds.RadiopharmaceuticalInformationSequence[0]
    dose_bq = float(info.RadionuclideTotalDose)
    assert value(mds, "contrast.radiopharmaceutical_dose") == round(dose_bq / 1e6, 3)
    assert mds["contrast.radiopharmaceutical_dose"]["source"] == \
        "(0054,0016)[0].(0018,1074)"
    if nonempty(info, "Radiopharmaceutical"):
        assert value(mds, "contrast.radiopharmaceutical") == info.Radiopharmaceutical
    if nonempty(ds, "PatientWeight") and float(ds.PatientWeight) > 0:
        assert value(mds, "series.patient_weight") == pytest.approx(float(ds.PatientWeight))
    else:
        assert "series.patient_weight" not in mds  # 0 is "unknown", never a weight
    if nonempty(ds, "AttenuationCorrectionMethod"):
        assert value(mds, "nmpt.attenuation_correction") == ds.AttenuationCorrectionMethod


def test_pt_known_dose_and_injection_time(definition: MdsDefinition) -> None:
    ds = read(INST / "PT" / "fo-dicom__GH184.dcm")
    mds = extract_instance(ds, definition)
    assert value(mds, "contrast.radiopharmaceutical_dose") == 474.593  # 474592928 Bq
    start = ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime
    assert value(mds, "contrast.radiopharmaceutical_start_datetime") == \
        f"{ds.AcquisitionDate[:4]}-{ds.AcquisitionDate[4:6]}-{ds.AcquisitionDate[6:]}" \
        f"T{iso_time(start)}"


@pytest.mark.parametrize("path", files("NM"), ids=lambda p: p.name)
def test_nm_groups(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    assert value(mds, "series.modality") == "NM"
    assert value(mds, "image.pixel_spacing") == [float(v) for v in ds.PixelSpacing]
    assert "ct.kvp" not in mds and "mr.field_strength" not in mds
    assert ("contrast.radiopharmaceutical_dose" in mds) == (
        "RadiopharmaceuticalInformationSequence" in ds)


# -- DX / US ----------------------------------------------------------------------------------

def test_dx_testdata(definition: MdsDefinition) -> None:
    ds = read(INST / "DX" / "highdicom__dx_image.dcm")
    mds = extract_instance(ds, definition)
    assert value(mds, "dx.image_laterality") == ds.ImageLaterality == "L"
    assert value(mds, "dx.patient_orientation") == "\\".join(ds.PatientOrientation)
    assert "KVP" not in ds and "dx.kvp" not in mds  # missing, not invented
    assert "ct.kvp" not in mds


@pytest.mark.parametrize("path", files("US"), ids=lambda p: p.name)
def test_us(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    assert value(mds, "image.rows") == ds.Rows
    assert value(mds, "image.columns") == ds.Columns
    assert value(mds, "series.modality") == "US"
    if not nonempty(ds, "PixelSpacing"):
        assert "image.pixel_spacing" not in mds and "image.field_of_view" not in mds


# -- RTSTRUCT / SEG ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rtstruct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pydicom's RT Structure Set, with Contour Image Sequences added (it has none)."""
    ds = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0]
    refs = []
    for n in range(3):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2010020400001.3.{n + 1}"
        refs.append(ref)
    series.ContourImageSequence = Sequence(refs)
    out = tmp_path_factory.mktemp("rt") / "rtstruct.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def test_rtstruct_roi_names(rtstruct: Path, definition: MdsDefinition) -> None:
    ds = read(rtstruct)
    mds = extract_instance(ds, definition)
    rois = ds.StructureSetROISequence
    assert value(mds, "segmentation.roi_names") == [r.ROIName for r in rois]
    assert value(mds, "segmentation.roi_numbers") == [str(r.ROINumber) for r in rois]
    assert value(mds, "segmentation.roi_descriptions") == [r.ROIDescription for r in rois]
    assert mds["segmentation.roi_names"]["source"] == "(3006,0020)[*].(3006,0026)"
    assert value(mds, "segmentation.roi_type") == "RTSTRUCT"
    contour = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0].ContourImageSequence
    assert value(mds, "segmentation.referenced_sop_instance_uids") == [
        c.ReferencedSOPInstanceUID for c in contour]
    assert "image.rows" not in mds  # no image: the image group does not apply


@pytest.mark.parametrize("path", files("SEG"), ids=lambda p: p.name)
def test_seg_segment_names(path: Path, definition: MdsDefinition) -> None:
    ds = read(path)
    mds = extract_instance(ds, definition)
    segments = ds.SegmentSequence
    assert value(mds, "segmentation.roi_names") == [s.SegmentLabel for s in segments]
    assert value(mds, "segmentation.roi_numbers") == [str(s.SegmentNumber) for s in segments]
    assert value(mds, "segmentation.roi_type") == f"SEG {ds.SegmentationType}"
    refs = [i.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence
            for i in s.ReferencedInstanceSequence]
    assert value(mds, "segmentation.referenced_sop_instance_uids") == list(dict.fromkeys(refs))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert value(mds, "image.pixel_spacing") == [float(v) for v in measures.PixelSpacing]


# -- make_corpus output -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study with a CT, an MR, a PT and a DX series of 2 images, 16x16."""
    return make_corpus(tmp_path_factory.mktemp("corpus4") / "src", "--patients", "1",
                       "--studies", "1", "--series", "4", "--images", "2", "--rows", "16",
                       "--cols", "16")


def test_make_corpus_values(corpus4: Path, definition: MdsDefinition) -> None:
    seen = set()
    for path in sorted(corpus4.glob("*.dcm")):
        ds = read(path)
        mds = extract_instance(ds, definition)
        seen.add(ds.Modality)
        assert value(mds, "image.field_of_view") == [
            round(ds.Columns * float(ds.PixelSpacing[1]), 2),
            round(ds.Rows * float(ds.PixelSpacing[0]), 2)]
        if ds.Modality == "CT":
            assert value(mds, "ct.kvp") == int(ds.KVP)
            assert value(mds, "ct.convolution_kernel") == ds.ConvolutionKernel
            assert value(mds, "ct.tube_current") == ds.XRayTubeCurrent
            assert value(mds, "ct.spiral_pitch") == pytest.approx(float(ds.SpiralPitchFactor))
        elif ds.Modality == "MR":
            assert value(mds, "mr.repetition_time") == float(ds.RepetitionTime)
            assert value(mds, "mr.echo_time") == float(ds.EchoTime)
            assert value(mds, "mr.field_strength") == float(ds.MagneticFieldStrength)
            assert value(mds, "mr.receive_coil") == ds.ReceiveCoilName
        elif ds.Modality == "PT":
            dose = ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
            assert value(mds, "contrast.radiopharmaceutical_dose") == float(dose) / 1e6 == 370
            assert value(mds, "series.patient_size") == float(ds.PatientSize)
        elif ds.Modality == "DX":
            assert value(mds, "dx.kvp") == int(ds.KVP)
            assert value(mds, "dx.exposure") == float(ds.Exposure)
            assert value(mds, "dx.exposure_time") == float(ds.ExposureTime)
    assert seen == {"CT", "MR", "PT", "DX"}


# -- conversions ------------------------------------------------------------------------------

def test_unit_conversions_and_bad_values(definition: MdsDefinition) -> None:
    ds = Dataset()
    ds.Modality = "DX"
    ds.ExposureInuAs = 2500  # uAs -> 2.5 mAs
    ds.ExposureTimeInuS = 12500.0  # us -> 12.5 ms
    ds.Rows, ds.Columns = 10, 20
    # a malformed DS as read from a file: not a value, nothing invented
    ds._dict[Tag(0x00280030)] = RawDataElement(Tag(0x00280030), "DS", 6, b"abc\\1 ", 0,
                                               False, True)
    ds.AcquisitionDate, ds.AcquisitionTime = "20260230", "1200"  # there is no 30 February
    mds = extract_instance(ds, definition)
    assert mds["dx.exposure"] == {"value": 2.5, "source": "(0018,1153)"}
    assert mds["dx.exposure_time"] == {"value": 12.5, "source": "(0018,8150)"}
    assert "image.pixel_spacing" not in mds and "image.field_of_view" not in mds
    assert "series.acquisition_datetime" not in mds
    # "NaN" is no DS value (PS3.5 6.2): nothing rather than a NaN in the warehouse
    ds._dict[Tag(0x00181153)] = RawDataElement(Tag(0x00181153), "DS", 4, b"NaN ", 0, False,
                                               True)
    assert "dx.exposure" not in extract_instance(ds, definition)
    ds.AcquisitionDate = "20260228"
    assert extract_instance(ds, definition)["series.acquisition_datetime"] == {
        "value": "2026-02-28T12:00:00", "source": "(0008,0022)+(0008,0032)"}


def test_datetime_parsing() -> None:
    assert iso_datetime("20130711161700+0200") == "2013-07-11T16:17:00+02:00"
    assert iso_datetime("20141008142501.76000") == "2014-10-08T14:25:01.76000"
    assert iso_datetime("2014") is None
    assert iso_time("0815") == "08:15:00"
    assert iso_time("25") is None


def test_every_testdata_file_extracts_without_error(definition: MdsDefinition) -> None:
    """Third-party and broken files: extraction never raises and gives plain JSON values."""
    import json
    import warnings

    count = 0
    for path in sorted(TESTDATA.rglob("*")):
        if not path.is_file():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:
                continue  # not readable at all: the importer rejects it before the MDS
            mds = extract_instance(ds, definition)
        json.dumps(mds, allow_nan=False)
        for key, entry in mds.items():
            assert key in definition.by_key
            assert set(entry) == {"value", "source"} and entry["value"] is not None
        count += 1
    assert count >= 100
