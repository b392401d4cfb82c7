"""The MDS definition: the shipped file (its fixes of the source tables) and validation errors
that name file, key and value (pinned messages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from mediasvc.errors import ConfigError, UsageError
from mediasvc.store.mds import extract_instance
from mediasvc.store.mds_def import (
    DateTimeAlt,
    FovAlt,
    MdsDefinition,
    PathAlt,
    default_path,
    load_definition,
)

HEAD = """
name = "test MDS"
version = "1"
languages = ["en", "fr"]
variants = ["en", "fr"]

[[group]]
level = "series"
number = "3"
entity = "series"
label = { en = "Series", fr = "Série" }

[[group]]
level = "ct"
number = "7"
entity = "image"
label = { en = "CT", fr = "CT" }
modalities = ["CT"]
"""

GOOD_ITEM = """
[[item]]
key = "ct.kvp"
number = { en = "7.1", fr = "7.1" }
label = { en = "kVp", fr = "kVp" }
level = "ct"
type = "integer"
obligation = "mandatory"
tags = ["KVP"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mds.toml"
    path.write_text(HEAD + text, encoding="utf-8")
    return path


def item(**fields: str) -> str:
    base = {"key": '"series.x"', "number": '{ en = "3.1" }',
            "label": '{ en = "X", fr = "X" }', "level": '"series"', "type": '"string"',
            "obligation": '"optional"', "tags": '["SeriesDescription"]'}
    base.update(fields)
    return "\n[[item]]\n" + "\n".join(f"{k} = {v}" for k, v in base.items() if v) + "\n"


def error(tmp_path: Path, text: str, variant: str = "en") -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_definition(path, variant)
    assert exc.value.file == str(path.resolve())
    return str(exc.value).replace(str(path.resolve()), "FILE")


# -- the shipped definition -------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> MdsDefinition:
    return load_definition()


def _sources(d: MdsDefinition, key: str) -> list[str]:
    out = []
    for alt in d.by_key[key].alternatives:
        if isinstance(alt, PathAlt):
            out.append(alt.path.source)
        elif isinstance(alt, DateTimeAlt):
            out.append(f"{alt.dates[0].source}+{alt.time.source}")
        elif isinstance(alt, FovAlt):
            out.append("fov")
    return out


def test_shipped_definition_fixes_the_tables(shipped: MdsDefinition) -> None:
    assert default_path().name == "mds.toml"
    assert len(shipped.items) == 62
    # DX kVp is KVP (0018,0060), not (0008,0060) Modality
    assert _sources(shipped, "dx.kvp") == ["(0018,0060)"]
    # Flip angle is (0018,1314); (0018,0024) is Sequence Name (item 6.1)
    assert _sources(shipped, "mr.flip_angle")[0] == "(0018,1314)"
    assert _sources(shipped, "mr.sequence_name")[0] == "(0018,0024)"
    # tags lost in the English table, from the French one
    assert _sources(shipped, "study.institution_name") == ["(0008,0080)"]
    assert _sources(shipped, "ct.convolution_kernel")[0] == "(0018,1210)"
    # series number is a series item; ROI identifier is ROI Number (3006,0022)
    assert shipped.by_key["series.number"].level == "series"
    assert _sources(shipped, "segmentation.roi_numbers")[0] == "(3006,0020)[*].(3006,0022)"
    # the private series description is read only under ELSCINT1
    assert _sources(shipped, "series.description") == [
        "(00E1,1040)@ELSCINT1", "(0008,103E)", "(0008,1030)"]
    # both numberings, stable keys
    acq = shipped.by_key["study.acquisition_datetime"]
    assert acq.numbers == {"en": "1.3", "fr": None}
    assert shipped.by_key["study.storage_location"].numbers == {"en": "1.4", "fr": "1.3"}
    assert shipped.by_key["dx.kvp"].numbers == {"en": "9.3", "fr": "9.5"}
    # functional groups: shared first, then the first frame
    assert _sources(shipped, "image.pixel_spacing") == [
        "(0028,0030)", "(5200,9229)[0].(0028,9110)[0].(0028,0030)",
        "(5200,9230)[0].(0028,9110)[0].(0028,0030)", "(0018,1164)"]


def test_conditional_obligations(shipped: MdsDefinition) -> None:
    dose = shipped.by_key["contrast.radiopharmaceutical_dose"].obligation
    assert dose.resolve({"PT"}) == "mandatory"
    assert dose.resolve({"NM"}) == "optional"
    assert dose.resolve({"CT"}) == "not-applicable"
    assert dose.resolve({"CT", "PT"}) == "mandatory"  # a study: the strongest
    assert dose.describe() == "mandatory if PT, optional if NM, else not-applicable"
    weight = shipped.by_key["series.patient_weight"].obligation
    assert (weight.resolve({"PT"}), weight.resolve({"MR"})) == ("mandatory", "optional")
    mr = shipped.by_key["mr.echo_time"].group
    assert mr.applies({"MR"}) and not mr.applies({"CT"})


def test_french_variant(shipped: MdsDefinition) -> None:
    fr = load_definition(variant="fr")
    assert shipped.by_key["dx.kvp"].obligation.default == "mandatory"
    assert fr.by_key["dx.kvp"].obligation.default == "optional"
    assert fr.by_key["dx.exposure"].obligation.default == "optional"
    assert fr.by_key["dx.image_laterality"].obligation.default == "mandatory"
    en_keys = {i.key for i in shipped.report_items()}
    fr_keys = {i.key for i in fr.report_items()}
    assert fr_keys - en_keys == {"dx.view_code_meaning", "dx.view_code_value"}
    assert en_keys <= fr_keys  # study.acquisition_datetime kept in French too
    # extraction is the same whatever the variant
    assert [i.key for i in shipped.items] == [i.key for i in fr.items]
    assert fr.by_key["mr.field_strength"].labels["fr"] == "Intensité du champ nominale"
    with pytest.raises(UsageError, match="no MDS variant 'de'"):
        load_definition(variant="de")


def test_good_minimal_definition(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, GOOD_ITEM))
    ds = Dataset()
    ds.Modality, ds.KVP = "CT", "120"
    assert extract_instance(ds, d) == {"ct.kvp": {"value": 120, "source": "(0018,0060)"}}
    ds.Modality = "MR"
    assert extract_instance(ds, d) == {}  # the CT group does not apply to MR


# -- validation errors ------------------------------------------------------------------------

def test_unknown_keyword(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["SeriesDescripton"]')) == (
        "FILE: item[0].tags[0] = 'SeriesDescripton': 'SeriesDescripton' is not a DICOM "
        "keyword of the data dictionary (PS3.6)")


def test_private_element_needs_its_creator(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["(00E1,1040)"]')) == (
        "FILE: item[0].tags[0] = '(00E1,1040)': (00E1,1040) is a private element: give its "
        "private creator ({ path = ..., creator = ... })")


def test_unknown_public_tag(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["(0018,FFF0)"]')) == (
        "FILE: item[0].tags[0] = '(0018,FFF0)': (0018,FFF0) is not in the data dictionary "
        "(PS3.6)")


def test_step_through_a_non_sequence(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["Modality[0].CodeValue"]')) == (
        "FILE: item[0].tags[0] = 'Modality[0].CodeValue': Modality[0] is not a sequence "
        "(only the last step may be an element)")


def test_path_ending_on_a_sequence(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["fg:PixelMeasuresSequence"]')) == (
        "FILE: item[0].tags[0] = 'SharedFunctionalGroupsSequence[0].PixelMeasuresSequence': "
        "PixelMeasuresSequence is a sequence: name an element inside it")


def test_list_path_needs_a_list_type(tmp_path: Path) -> None:
    assert error(tmp_path, item(tags='["SegmentSequence[*].SegmentLabel"]')) == (
        "FILE: item[0].tags[0] = 'SegmentSequence[*].SegmentLabel': a [*] path gives a list: "
        "the item's type must be one of strings, decimals, not 'string'")


def test_bad_obligation(tmp_path: Path) -> None:
    assert error(tmp_path, item(obligation='"mandatroy"')) == (
        "FILE: item[0].obligation = 'mandatroy': must be one of mandatory, not-applicable, "
        "optional")
    assert error(tmp_path, item(obligation='{ PT = "always", default = "optional" }')) == (
        "FILE: item[0].obligation.PT = 'always': must be one of mandatory, not-applicable, "
        "optional")
    assert error(tmp_path, item(obligation_de='"optional"')) .startswith(
        "FILE: item[0].obligation_de = 'optional': unknown key (allowed: ")


def test_unit_conversion_must_be_known(tmp_path: Path) -> None:
    text = item(type='"decimal"', unit='"MBq"',
                tags='[{ path = "RadiopharmaceuticalInformationSequence.RadionuclideTotalDose",'
                     ' unit = "mCi" }]')
    msg = error(tmp_path, text)
    assert msg.startswith("FILE: item[0].tags[0].unit = 'mCi': no conversion from mCi to the "
                          "item's unit MBq (known: Bq->MBq, ")


def test_unknown_level_and_missing_label(tmp_path: Path) -> None:
    assert error(tmp_path, item(level='"mri"')) == (
        "FILE: item[0].level = 'mri': must be one of ct, series")
    assert error(tmp_path, item(label='{ en = "X" }')) == (
        "FILE: item[0].label.fr: required key is missing")


def test_duplicate_key_and_missing_tags(tmp_path: Path) -> None:
    assert error(tmp_path, item() + item()) == (
        "FILE: item[1].key = 'series.x': duplicate item key")
    assert error(tmp_path, item(tags='[]')) == (
        "FILE: item[0].tags = []: an item needs tags or compute")


def test_compute_must_fit_the_level(tmp_path: Path) -> None:
    assert error(tmp_path, item(compute='"number_of_series"')) == (
        "FILE: item[0].compute = 'number_of_series': number_of_series is computed for a "
        "study, but level 'series' is a series level")


def test_fov_must_name_items(tmp_path: Path) -> None:
    text = item(key='"ct.fov"', level='"ct"', type='"decimals"',
                tags='[{ derive = "fov", rows = "image.rows", columns = "image.columns", '
                     'spacing = "image.pixel_spacing" }]')
    assert error(tmp_path, text) == (
        "FILE: item[0].tags = [{'derive': 'fov', 'rows': 'image.rows', 'columns': "
        "'image.columns', 'spacing': 'image.pixel_spacing'}]: derive fov: rows = "
        "'image.rows' is not an item key")


def test_typo_in_an_item_key_is_refused(tmp_path: Path) -> None:
    assert error(tmp_path, item(obligaton='"optional"')).startswith(
        "FILE: item[0].obligaton = 'optional': unknown key (allowed: ")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("name = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_definition(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_definition(tmp_path / "absent.toml")
