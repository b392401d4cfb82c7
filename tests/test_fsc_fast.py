"""The File-set Creator's fast path (issue 12, item 2): headers parsed from the first block of
each file, leaf records encoded in the scan workers, keys shared per series, a pool started
safely. Each test compares outcomes with the full read (dcmread of the whole header) or
checks the property the fast path depends on."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTDATA, make_corpus
from pydicom import dcmread
from pydicom.dataset import Dataset

from mediasvc.fileset import creator, header
from mediasvc.fileset.creator import scan_sources, write_fileset
from mediasvc.fileset.scan import SourceInstance
from mediasvc.profiles import media_profile

STRUCTURAL = {0x00041400, 0x00041420}  # offsets: positions differ with record lengths


def _records(dicomdir: Path) -> list[dict[int, tuple[str, str]]]:
    ds = dcmread(dicomdir)
    return [{e.tag: (e.VR, str(e.value)) for e in rec if e.tag not in STRUCTURAL}
            for rec in ds.DirectoryRecordSequence]


def _export(sources: list[Path], out: Path, profile_id: str = "STD-GEN-CD"
            ) -> tuple[list[dict[int, tuple[str, str]]], list[tuple[str, str, str]]]:
    profile = media_profile(profile_id)
    scan = scan_sources(sources, profile, workers=1)
    result = write_fileset(scan.instances, out, profile, fileset_id="FAST", link="copy",
                           workers=1)
    verdicts = sorted((Path(v.path).name, v.status, v.reason)
                      for v in [*scan.verdicts, *result.verdicts])
    return _records(out / "DICOMDIR"), verdicts


def _testdata_folder(tmp_path: Path) -> Path:
    """Every third-party instance of ../shared/testdata (many modalities, transfer syntaxes,
    character sets; some rejected), next to a small synthetic corpus."""
    src = tmp_path / "src"
    make_corpus(src / "corpus", "--patients", "2", "--studies", "1", "--series", "2",
                "--images", "3", "--rows", "16", "--cols", "16")
    for path in sorted((TESTDATA / "instances").rglob("*")):
        if path.is_file():
            target = src / "td" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return src


@pytest.mark.parametrize("profile_id", ["STD-GEN-CD", "STD-GEN-DVD-JPEG"])
def test_block_parse_gives_the_records_of_the_full_read(tmp_path: Path, profile_id: str,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    src = _testdata_folder(tmp_path)
    fast, fast_verdicts = _export([src], tmp_path / "fast", profile_id)
    # A block too small for any header: every file goes the full dcmread way.
    monkeypatch.setattr(header, "BLOCK", 64)
    full, full_verdicts = _export([src], tmp_path / "full", profile_id)
    assert len(fast) > 40
    assert sum(1 for v in fast_verdicts if v[1] == "placed") > 30
    assert fast_verdicts == full_verdicts
    assert len(fast) == len(full)
    for a, b in zip(fast, full, strict=True):
        assert a == b


def _long_header_instance(path: Path) -> Dataset:
    """A CT whose header is longer than the first block: a 100 kB private value sits before
    Series Number and Instance Number (group 0020), which a parse of the block alone would
    never see."""
    src = make_corpus(path.parent.parent / "one", "--patients", "1", "--studies", "1",
                      "--series", "1", "--images", "1", "--rows", "16", "--cols", "16")
    ds = dcmread(next(src.iterdir()))
    block = ds.private_block(0x0019, "MEDIASVC TEST", create=True)
    block.add_new(0x01, "OB", b"\x01" * 100_000)
    ds.SeriesNumber = 7
    ds.InstanceNumber = 42
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_a_header_longer_than_the_first_block_is_read_whole(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    ds = _long_header_instance(folder / "long.dcm")
    assert ds.PixelData and (folder / "long.dcm").stat().st_size > header.BLOCK
    records, verdicts = _export([folder], tmp_path / "out")
    assert [v[1] for v in verdicts] == ["placed"]
    by_type = {r[0x00041430][1]: r for r in records}
    assert by_type["SERIES"][0x00200011] == ("IS", "7")
    assert by_type["IMAGE"][0x00200013] == ("IS", "42")
    assert by_type["IMAGE"][0x00041511] == ("UI", ds.SOPInstanceUID)


def test_instances_of_a_series_share_one_keys_object(tmp_path: Path) -> None:
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "2",
                      "--images", "150", "--rows", "8", "--cols", "8")
    scan = scan_sources([src], media_profile("STD-GEN-CD"), workers=2)
    assert len(scan.instances) == 300
    by_series: dict[str, set[int]] = {}
    for inst in scan.instances:
        by_series.setdefault(inst.series_uid, set()).add(id(inst.keys))
        assert inst.leaf is not None and "LEAF" not in inst.keys
    assert [len(ids) for ids in by_series.values()] == [1, 1]
    first = scan.instances[0]
    assert str(first.keys["PATIENT"]["PatientID"].value, "ascii").strip() == "PID00000"


def test_the_pool_is_not_forked_while_the_caller_runs_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "1",
                      "--images", "300", "--rows", "8", "--cols", "8")
    methods: list[str] = []
    real = creator.multiprocessing.get_context

    def spy(method: str) -> Any:
        methods.append(method)
        return real(method)

    monkeypatch.setattr(creator.multiprocessing, "get_context", spy)
    profile = media_profile("STD-GEN-CD")
    plain = scan_sources([src], profile, workers=2)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        threaded = scan_sources([src], profile, workers=2)
    finally:
        stop.set()
        thread.join()
    assert methods == ["fork", "forkserver"]
    uids = [i.sop_instance_uid for i in plain.instances]
    assert len(uids) == 300
    assert [i.sop_instance_uid for i in threaded.instances] == uids
    assert all(isinstance(i, SourceInstance) and i.leaf is not None
               for i in threaded.instances)


def test_lossy_compression_records_name_the_new_sop_instance_uid(tmp_path: Path) -> None:
    """The leaf record is encoded by the scan, before lossy compression gives the file a new
    SOP Instance UID (PS3.3 C.12.1.1.5 / PS3.4): the record must name the new one."""
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "1",
                      "--images", "3", "--rows", "64", "--cols", "64")
    profile = media_profile("STD-GEN-DVD-J2K")
    scan = scan_sources([src], profile, compress="j2k", workers=1)
    old = {i.sop_instance_uid for i in scan.instances}
    out = tmp_path / "out"
    write_fileset(scan.instances, out, profile, fileset_id="LOSSY", workers=1)
    images = [r for r in dcmread(out / "DICOMDIR").DirectoryRecordSequence
              if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == 3
    for rec in images:
        placed = dcmread(out.joinpath(*rec.ReferencedFileID), stop_before_pixels=True)
        assert rec.ReferencedSOPInstanceUIDInFile == placed.SOPInstanceUID
        assert placed.SOPInstanceUID not in old
        assert rec.ReferencedTransferSyntaxUIDInFile == placed.file_meta.TransferSyntaxUID


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit VR", "implicit VR"])
def test_rows_of_32_is_a_value_not_padding(tmp_path: Path, implicit: bool) -> None:
    """Rows = 32 is stored as b"\\x20\\x00": only character strings lose their space padding
    (PS3.5 6.2), so a 32x32 image passes the DVD profiles' type 1 Rows/Columns rule."""
    from dicom_factory import make_image
    src = tmp_path / "src"
    src.mkdir()
    make_image(src / "IMG32.dcm", rows=32, cols=32, implicit=implicit)
    records, verdicts = _export([src], tmp_path / "out", "STD-GEN-DVD-JPEG")
    assert [v[1] for v in verdicts] in (["placed"], ["transcoded"]), verdicts
    images = [r for r in records if r.get(0x00041430, ("", ""))[1] == "IMAGE"]
    assert len(images) == 1
    assert images[0][0x00280010] == ("US", "32") and images[0][0x00280011] == ("US", "32")
