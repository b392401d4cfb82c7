"""Media application profiles as data: every shipped profile loads and says what PS3.11 says;
a broken profile file is refused with an error naming file, key and value; a site directory
(MEDIASVC_PROFILES) replaces the shipped one; value rules judge real data sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTDATA, make_corpus, mediasvc
from pydicom import dcmread
from pydicom.dataset import Dataset

from mediasvc.config import load_toml
from mediasvc.errors import NO_VALUE, ConfigError, UsageError
from mediasvc.fileset.records import BASELINE_KEYS
from mediasvc.profiles import (
    RECORD_TYPES,
    RecordKeys,
    ValueRule,
    media_profile,
    media_profiles,
    parse_media_profile,
    profiles_dir,
)

ELE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
US_MF = "1.2.840.10008.5.1.4.1.1.3.1"
XA = "1.2.840.10008.5.1.4.1.1.12.1"
IO_DX = "1.2.840.10008.5.1.4.1.1.1.3"

REQUIRED = ("STD-GEN-CD", "STD-GEN-DVD-JPEG", "STD-GEN-DVD-J2K", "STD-GEN-BD-JPEG",
            "STD-GEN-BD-J2K", "STD-GEN-USB-JPEG", "STD-GEN-USB-J2K", "STD-CTMR-CD",
            "STD-CTMR-DVD", "STD-US-ID-SF-CDR", "STD-US-ID-MF-CDR", "STD-DEN-CD", "STD-XABC-CD")
H32_IMAGE = {"Rows", "Columns", "ImageType", "CalibrationImage", "LossyImageCompressionRatio",
             "FrameOfReferenceUID", "SynchronizationFrameOfReferenceUID", "NumberOfFrames",
             "AcquisitionTimeSynchronized", "AcquisitionDateTime", "ReferencedImageSequence",
             "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"}


# -- the shipped profiles -------------------------------------------------------------------

def test_every_required_profile_loads_and_is_consistent() -> None:
    profiles = media_profiles()
    assert set(REQUIRED) <= set(profiles)
    for pid, p in profiles.items():
        assert p.id == pid and p.source is not None and p.source.stem == pid
        assert p.capacity > 100_000_000
        assert p.default_transfer_syntax in p.transfer_syntaxes
        assert set(p.compress_to) <= set(p.transfer_syntaxes)
        assert p.icon_size in (64, 128)
        assert p.any_sop_class or p.sop_classes
        assert p.reference.startswith("PS3.11")
        # each file cites its annex in a comment (the data says where it comes from)
        assert p.source.read_text().startswith("# ") and "PS3.11" in p.source.read_text()


def test_capacities_are_nominal_media_sizes() -> None:
    sizes = {pid: media_profile(pid).capacity for pid in REQUIRED}
    assert sizes["STD-GEN-CD"] == sizes["STD-CTMR-CD"] == sizes["STD-XABC-CD"] == 650_000_000
    assert sizes["STD-GEN-DVD-JPEG"] == sizes["STD-CTMR-DVD"] == 4_700_000_000
    assert sizes["STD-GEN-BD-JPEG"] == sizes["STD-GEN-BD-J2K"] == 25_000_000_000
    assert sizes["STD-GEN-USB-JPEG"] == sizes["STD-GEN-USB-J2K"] == 8_000_000_000


def test_general_purpose_cd_is_uncompressed_any_class() -> None:
    p = media_profile("STD-GEN-CD")
    assert p.any_sop_class and p.allows_sop_class("1.2.3.4.5")
    assert p.transfer_syntaxes == (ELE,) and p.compress_to == ()
    # the keys dcmmkdir -Pgp writes beyond PS3.3 Annex F (docs/profiles.md)
    assert p.record_keys("IMAGE") == RecordKeys(optional=("ImageType",
                                                          "ReferencedImageSequence"))
    assert p.record_keys("PATIENT") == RecordKeys()
    assert p.icon_image == "optional"


@pytest.mark.parametrize("pid", ["STD-GEN-DVD-JPEG", "STD-GEN-BD-JPEG", "STD-GEN-USB-JPEG"])
def test_jpeg_profiles(pid: str) -> None:
    p = media_profile(pid)
    assert set(p.transfer_syntaxes) == {ELE, JPEG_LOSSLESS_SV1, JPEG_BASELINE,
                                        "1.2.840.10008.1.2.4.51"}
    assert p.compress_to == (JPEG_LOSSLESS_SV1, JPEG_BASELINE)
    _check_table_h32(p.id)


@pytest.mark.parametrize("pid", ["STD-GEN-DVD-J2K", "STD-GEN-BD-J2K", "STD-GEN-USB-J2K"])
def test_j2k_profiles(pid: str) -> None:
    p = media_profile(pid)
    assert set(p.transfer_syntaxes) == {ELE, J2K_LOSSLESS, "1.2.840.10008.1.2.4.91"}
    assert p.compress_to[0] == J2K_LOSSLESS
    _check_table_h32(p.id)


def _check_table_h32(pid: str) -> None:
    p = media_profile(pid)
    assert p.any_sop_class
    assert p.record_keys("PATIENT").if_present == ("PatientBirthDate", "PatientSex")
    assert p.record_keys("SERIES").if_present == ("InstitutionName", "InstitutionAddress",
                                                  "PerformingPhysicianName")
    image = p.record_keys("IMAGE")
    assert image.required == ("Rows", "Columns")
    assert set(image.all()) == H32_IMAGE


@pytest.mark.parametrize("pid", ["STD-CTMR-CD", "STD-CTMR-DVD"])
def test_ctmr(pid: str) -> None:
    p = media_profile(pid)
    assert p.allows_sop_class(CT) and p.allows_sop_class(MR)
    assert not p.allows_sop_class(US) and not p.allows_sop_class(XA)
    assert p.transfer_syntaxes == (ELE, JPEG_LOSSLESS_SV1)
    assert (p.icon_image, p.icon_size) == ("required", 64)
    image = p.record_keys("IMAGE")  # Table E.3-2
    assert image.required == ("Rows", "Columns")
    assert set(image.if_present) == {"ReferencedImageSequence", "ImagePositionPatient",
                                     "ImageOrientationPatient", "FrameOfReferenceUID",
                                     "PixelSpacing"}


def test_xabc() -> None:
    p = media_profile("STD-XABC-CD")
    assert p.sop_classes == frozenset({XA})
    assert p.transfer_syntaxes == (JPEG_LOSSLESS_SV1,)
    assert p.default_transfer_syntax == JPEG_LOSSLESS_SV1  # uncompressed XA gets compressed
    assert (p.icon_image, p.icon_size) == ("required", 128)
    assert p.record_keys("PATIENT").required_empty == ("PatientBirthDate", "PatientSex")
    assert p.record_keys("IMAGE").required == ("ImageType",)
    assert p.record_keys("IMAGE").required_empty == ("CalibrationImage",)


def test_ultrasound_and_dental() -> None:
    sf, mf = media_profile("STD-US-ID-SF-CDR"), media_profile("STD-US-ID-MF-CDR")
    assert sf.sop_classes == frozenset({US}) and mf.sop_classes == frozenset({US, US_MF})
    assert sf.transfer_syntaxes == mf.transfer_syntaxes == (ELE, RLE, JPEG_BASELINE)
    den = media_profile("STD-DEN-CD")
    assert den.allows_sop_class(IO_DX) and not den.allows_sop_class(CT)
    assert den.transfer_syntaxes == (ELE,) and den.keys == {}  # K.3.3: no additional keys


def test_profiles_add_only_keys_beyond_the_baseline() -> None:
    """The writer adds the PS3.3 Annex F keys itself; a profile repeating one would ask for it
    twice (possibly with another type). Every record type the writer knows is a valid
    profile section."""
    assert set(BASELINE_KEYS) <= set(RECORD_TYPES)
    for p in media_profiles().values():
        for rtype, keys in p.keys.items():
            baseline = {kw for kw, _ in BASELINE_KEYS.get(rtype, ())}
            assert not baseline & set(keys.all()), (p.id, rtype, baseline & set(keys.all()))
            assert "IconImageSequence" not in keys.all(), (p.id, "icons belong in [icons]")


def test_unknown_profile_is_a_usage_error_listing_the_known() -> None:
    with pytest.raises(UsageError, match=r"unknown media profile 'STD-NOPE'.*STD-GEN-CD"):
        media_profile("STD-NOPE")


# -- value rules on real data sets ----------------------------------------------------------

def _image(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _violations(pid: str, ds: Dataset, sop: str, ts: str = ELE) -> list[str]:
    found = [r.violation(ds, sop, True, ts) for r in media_profile(pid).rules]
    return [v for v in found if v]


def test_ctmr_rules_accept_a_good_mr_and_name_what_is_wrong() -> None:
    good = _image(Modality="MR", PhotometricInterpretation="MONOCHROME2", BitsAllocated=16,
                  BitsStored=12, HighBit=11)
    assert _violations("STD-CTMR-CD", good, MR) == []
    bad_hb = _image(Modality="MR", PhotometricInterpretation="MONOCHROME2", BitsAllocated=16,
                    BitsStored=12, HighBit=15)
    assert _violations("STD-CTMR-CD", bad_hb, MR) == [
        "HighBit '15' is not allowed when BitsStored is 12 "
        "(PS3.11 E.3.4.1: High Bit = Bits Stored - 1) (allowed: 11)"]
    rgb_ct = _image(Modality="CT", PhotometricInterpretation="RGB")
    assert _violations("STD-CTMR-CD", rgb_ct, CT) == [
        "PhotometricInterpretation 'RGB' is not allowed (PS3.11 E.3.4.1) (allowed: MONOCHROME2)"]
    mr_as_ct = _image(Modality="MR", PhotometricInterpretation="MONOCHROME2")
    assert _violations("STD-CTMR-CD", mr_as_ct, CT) == [
        "Modality 'MR' is not allowed (PS3.11 E.3.4.1) (allowed: CT)"]
    no_pi = _image(Modality="CT")
    assert _violations("STD-CTMR-CD", no_pi, CT) == [
        "PhotometricInterpretation is missing (PS3.11 E.3.4.1)"]


def test_dental_rules_bits_and_type2_specialization() -> None:
    base = dict(InstitutionName="", ManufacturerModelName="X1", DetectorID="D7",
                DetectorManufacturerName="", DetectorManufacturerModelName="M")
    ok = _image(BitsStored=12, BitsAllocated=16, **base)
    assert _violations("STD-DEN-CD", ok, IO_DX) == []  # empty type 2 values are fine
    eight_in_16 = _image(BitsStored=8, BitsAllocated=16, **base)
    assert _violations("STD-DEN-CD", eight_in_16, IO_DX) == [
        "BitsAllocated '16' is not allowed when BitsStored is 8 (PS3.11 Table K.3-3) "
        "(allowed: 8)"]
    no_detector = _image(BitsStored=10, BitsAllocated=16, **base)
    del no_detector.DetectorID
    assert _violations("STD-DEN-CD", no_detector, IO_DX) == [
        "DetectorID is missing (PS3.11 Table K.3-4)"]


def test_xabc_bounds_and_ultrasound_syntax_conditions() -> None:
    big = _image(Modality="XA", Rows=1024, Columns=512, BitsAllocated=8, BitsStored=8)
    assert _violations("STD-XABC-CD", big, XA, JPEG_LOSSLESS_SV1) == [
        "Rows 1024 is above 512 (PS3.11 A.3.4)"]
    ybr = _image(PhotometricInterpretation="YBR_FULL")
    assert _violations("STD-US-ID-SF-CDR", ybr, US, RLE) == []
    assert _violations("STD-US-ID-SF-CDR", ybr, US, ELE) == [
        "PhotometricInterpretation 'YBR_FULL' is not allowed when stored as "
        "1.2.840.10008.1.2.1 (PS3.11 C.3.1) (allowed: MONOCHROME2, RGB, PALETTE COLOR, "
        "YBR_FULL_422, YBR_PARTIAL_422)"]


def test_rules_without_a_data_set_only_judge_plain_value_lists() -> None:
    """A caller that only compares ``values`` (applies() without ds) must never reject on a
    condition it did not evaluate: conditional, bounded and presence rules say False."""
    rules = media_profile("STD-CTMR-CD").rules
    plain = [r for r in rules if r.applies(MR, True)]
    assert plain and all(r.plain for r in plain)
    assert not any(r.applies(MR, True) for r in rules if r.when)
    presence = ValueRule("DetectorID", (), True, (), may_be_empty=True)
    assert not presence.applies(IO_DX, True)
    assert presence.violation(_image(DetectorID=""), IO_DX, True, ELE) is None


# -- broken profile files -------------------------------------------------------------------

GOOD = '''# a site profile
id = "SITE-CD"
title = "Site CD"
reference = "PS3.11 Annex D"
medium = "CD-R"
capacity = "700M"
sop_classes = ["1.2.840.10008.5.1.4.1.1.2"]
transfer_syntaxes = ["1.2.840.10008.1.2.1"]

[icons]
image = "optional"
size = 64

[records.IMAGE]
if_present = ["PixelSpacing"]

[[rules]]
keyword = "Modality"
values = ["CT"]
'''


def _write(root: Path, text: str, name: str = "SITE-CD") -> Path:
    (root / "media").mkdir(parents=True, exist_ok=True)
    path = root / "media" / f"{name}.toml"
    path.write_text(text)
    return path


BAD = [
    # (what, replace this, with this, key, value, reason part)
    ("unknown key", 'medium = "CD-R"\n', 'medium = "CD-R"\ncolour = "red"\n',
     "colour", "red", "unknown key (allowed:"),
    ("bad UID", '"1.2.840.10008.5.1.4.1.1.2"', '"1.2.840.10008.5.1.4.1.1.CT"',
     "sop_classes", ["1.2.840.10008.5.1.4.1.1.CT"], "'1.2.840.10008.5.1.4.1.1.CT' is not a UID"),
    ("unknown keyword", '["PixelSpacing"]', '["PixelSpacin"]',
     "records.IMAGE.if_present", ["PixelSpacin"],
     "'PixelSpacin' is not a DICOM keyword of the data dictionary (PS3.6)"),
    ("bad size", 'capacity = "700M"', 'capacity = "lots"',
     "capacity", "lots", "'lots' is not a size such as 700M or 4.7G"),
    ("negative size", 'capacity = "700M"', "capacity = -5",
     "capacity", -5, "must be a positive size"),
    ("wrong record type", "[records.IMAGE]", "[records.PICTURE]",
     "records.PICTURE", {"if_present": ["PixelSpacing"]}, "unknown record type (known: PATIENT"),
    ("icon size", "size = 64", "size = 100", "icons.size", 100, "must be 64 or 128"),
    ("icon rule", 'image = "optional"', 'image = "sometimes"',
     "icons.image", "sometimes", "must be one of none, optional, required"),
    ("keyword twice", 'if_present = ["PixelSpacing"]',
     'if_present = ["PixelSpacing"]\noptional = ["PixelSpacing"]',
     "records.IMAGE.optional", ["PixelSpacing"], "PixelSpacing is listed twice"),
    ("rule keyword", 'keyword = "Modality"', 'keyword = "Modallity"',
     "rules[0].keyword", "Modallity", "not a DICOM keyword"),
    ("rule condition keyword", 'values = ["CT"]\n', 'values = ["CT"]\nwhen = { Bitz = ["8"] }\n',
     "rules[0].when.Bitz", ["8"], "not a DICOM keyword"),
    ("rule values not strings", 'values = ["CT"]', "values = [8]",
     "rules[0].values", [8], "must be a list of strings"),
    ("rule bounds", 'values = ["CT"]\n', 'values = ["CT"]\nmin = 5\nmax = 1\n',
     "rules[0].max", 1, "must be >= min (5)"),
    ("default syntax", 'transfer_syntaxes = ["1.2.840.10008.1.2.1"]',
     'transfer_syntaxes = ["1.2.840.10008.1.2.1"]\n'
     'default_transfer_syntax = "1.2.840.10008.1.2"',
     "default_transfer_syntax", "1.2.840.10008.1.2", "must be one of transfer_syntaxes"),
    ("compress target", 'transfer_syntaxes = ["1.2.840.10008.1.2.1"]',
     'transfer_syntaxes = ["1.2.840.10008.1.2.1"]\ncompress_to = ["1.2.840.10008.1.2.4.70"]',
     "compress_to", ["1.2.840.10008.1.2.4.70"], "1.2.840.10008.1.2.4.70 is not one of"),
    ("id not file name", 'id = "SITE-CD"', 'id = "OTHER-CD"',
     "id", "OTHER-CD", "must equal the file name (SITE-CD)"),
    ("missing title", 'title = "Site CD"\n', "", "title", NO_VALUE, "required key is missing"),
]


@pytest.mark.parametrize("what,old,new,key,value,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_profile_is_refused_naming_file_key_value(tmp_path: Path, what: str, old: str,
                                                      new: str, key: str, value: object,
                                                      reason: str) -> None:
    assert old in GOOD, what
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        media_profiles(tmp_path)
    err = info.value
    assert (err.file, err.key, err.value) == (str(path), key, value)
    assert reason in err.reason
    shown = "" if value is NO_VALUE else f" = {value!r}"
    assert str(err).startswith(f"{path}: {key}{shown}: ")


def test_the_good_site_profile_parses(tmp_path: Path) -> None:
    p = parse_media_profile(load_toml(_write(tmp_path, GOOD)))
    assert (p.id, p.capacity, p.icon_image, p.icon_series) == ("SITE-CD", 700_000_000,
                                                               "optional", "none")
    assert p.record_keys("IMAGE").if_present == ("PixelSpacing",)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "\n[icons\n")
    with pytest.raises(ConfigError, match=r"not valid TOML") as info:
        media_profiles(tmp_path)
    assert info.value.file == str(path)


# -- a site profile directory ---------------------------------------------------------------

def test_site_profile_directory_via_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, GOOD)
    monkeypatch.setenv("MEDIASVC_PROFILES", str(tmp_path))
    assert profiles_dir() == tmp_path
    assert set(media_profiles()) == {"SITE-CD"}  # the site's directory replaces ours
    assert media_profile("SITE-CD").capacity == 700_000_000


def test_site_profile_directory_in_a_real_process(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    env = dict(os.environ, MEDIASVC_PROFILES=str(tmp_path))
    code = ("from mediasvc.profiles import media_profile as m; p = m('SITE-CD'); "
            "print(p.id, p.capacity, p.sop_classes == {'1.2.840.10008.5.1.4.1.1.2'})")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["SITE-CD", "700000000", "True"]


def test_cli_refuses_a_broken_site_profile_with_exit_2(tmp_path: Path) -> None:
    """The user's view: a typo in a site profile makes `mediasvc export` stop before touching
    anything, with status 2 and a message naming the file, the key and the value."""
    path = _write(tmp_path / "site", GOOD.replace('capacity = "700M"', 'capacity = "7OOM"'))
    src = tmp_path / "src"
    src.mkdir()
    env = dict(os.environ, MEDIASVC_PROFILES=str(tmp_path / "site"))
    out = subprocess.run([sys.executable, "-m", "mediasvc", "export", str(src), "--profile",
                          "SITE-CD", "--out", str(tmp_path / "out")], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert f"{path}: capacity = '7OOM': '7OOM' is not a size" in out.stderr
    assert not (tmp_path / "out").exists()


# -- the rules at work: `mediasvc export` judges files by them ------------------------------

@pytest.fixture(scope="module")
def ctmr_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Against STD-CTMR-CD: a good CT, an MR with Bits Stored 10 (a plain rule: 8, 12 or 16)
    and an MR with High Bit 15 for Bits Stored 12 (a conditional rule: Bits Stored - 1)."""
    root = tmp_path_factory.mktemp("rules")
    corpus = make_corpus(root / "corpus", "--patients", "1", "--studies", "1", "--series", "2",
                         "--images", "1", "--modalities", "CT,MR")
    src = root / "src"
    src.mkdir()
    (ct,) = [p for p in corpus.glob("*.dcm") if dcmread(p).Modality == "CT"]
    (mr,) = [p for p in corpus.glob("*.dcm") if dcmread(p).Modality == "MR"]
    shutil.copy(ct, src / "ct.dcm")
    ds = dcmread(mr)
    ds.BitsStored, ds.HighBit = 10, 9
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID[:-3] + "999"
    ds.save_as(src / "bs10.dcm")
    ds = dcmread(mr)
    ds.HighBit = 15
    ds.save_as(src / "hb15.dcm")
    return src


def test_export_judges_files_by_the_profile_rules(ctmr_mix: Path, tmp_path: Path) -> None:
    done = mediasvc("export", ctmr_mix, "--profile", "STD-CTMR-CD", "--out", tmp_path / "out")
    assert done.returncode == 1, done.stdout + done.stderr  # something was rejected
    assert "bs10.dcm: BitsStored '10' is not allowed" in done.stdout
    assert ("hb15.dcm: HighBit '15' is not allowed when BitsStored is 12 "
            "(PS3.11 E.3.4.1: High Bit = Bits Stored - 1) (allowed: 11)") in done.stdout
    records = dcmread(tmp_path / "out" / "DICOMDIR").DirectoryRecordSequence
    images = [r for r in records if r.DirectoryRecordType == "IMAGE"]
    assert [r.ReferencedSOPClassUIDInFile for r in images] == [CT]  # only the good CT


def test_rules_judge_the_instance_as_stored_after_transcoding(tmp_path: Path) -> None:
    """A JPEG 2000 (lossy, YBR_ICT) ultrasound image is not allowed as is by STD-US-ID-SF-CDR
    (no JPEG 2000 there); decoded to Explicit VR Little Endian it is RGB, which C.3.1 allows."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(TESTDATA / "instances" / "US" / "orthanc-tests__Formats_jp2k91YBR-ICT.dcm", src)
    done = mediasvc("export", src, "--profile", "STD-US-ID-SF-CDR", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    (image,) = [r for r in dcmread(tmp_path / "out" / "DICOMDIR").DirectoryRecordSequence
                if r.DirectoryRecordType == "IMAGE"]
    assert image.ReferencedTransferSyntaxUIDInFile == ELE
    stored = dcmread(tmp_path / "out" / Path(*image.ReferencedFileID))
    assert stored.PhotometricInterpretation == "RGB"
