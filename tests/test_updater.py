"""File-set Updater: true append, remove with the in-use flag, compact, and a DICOMDIR that is
always either the old or the new one, whatever moment the process is killed at."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_corpus, mediasvc, run
from pydicom import dcmread
from pydicom.fileset import FileSet


def tree_files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in (root / "DICOM").rglob("*")
            if p.is_file()}


def leaves(dicomdir: Path, *, active_only: bool = True) -> list:
    return [r for r in dcmread(dicomdir).DirectoryRecordSequence
            if "ReferencedFileID" in r and (r.RecordInUseFlag != 0 or not active_only)]


def dciodvfy_ok(dicomdir: Path) -> bool:
    proc = run(["dciodvfy", dicomdir])
    return not any(line.startswith("Error") for line in (proc.stdout + proc.stderr).splitlines())


@pytest.fixture()
def medium(tmp_path: Path) -> Path:
    src = make_corpus(tmp_path / "a", "--patients", "1", "--studies", "1", "--series", "2",
                      "--images", "3", "--seed", "5")
    out = tmp_path / "medium"
    assert mediasvc("export", src, "--out", out).returncode == 0
    return out


def test_add_is_a_true_append(medium: Path, tmp_path: Path) -> None:
    before = tree_files(medium)
    more = make_corpus(tmp_path / "b", "--patients", "2", "--studies", "1", "--series", "1",
                       "--images", "2", "--seed", "6")
    already = next((tmp_path / "a").iterdir())
    proc = mediasvc("fileset", "add", medium, more, already)
    assert proc.returncode == 0, proc.stderr
    assert "placed 4" in proc.stdout and "identical duplicates 1" in proc.stdout
    after = tree_files(medium)
    # Nothing that was there moved or changed.
    assert all(after[p] == data for p, data in before.items())
    assert len(after) == len(before) + 4
    assert len(leaves(medium / "DICOMDIR")) == 10
    assert dciodvfy_ok(medium / "DICOMDIR")
    assert len([i.load() for i in FileSet(medium / "DICOMDIR")]) == 10
    assert mediasvc("fileset", "verify", medium).returncode == 0
    # The patient shared with the first corpus (same Patient ID) has one record, not two.
    patients = [r for r in dcmread(medium / "DICOMDIR").DirectoryRecordSequence
                if r.DirectoryRecordType == "PATIENT"]
    assert sorted(p.PatientID for p in patients) == ["PID00000", "PID00001"]


def test_add_refuses_other_content_under_a_known_uid(medium: Path, tmp_path: Path) -> None:
    src = next((tmp_path / "a").iterdir())
    ds = dcmread(src)
    ds.PatientComments = "edited"
    ds.save_as(tmp_path / "edited.dcm")
    before = (medium / "DICOMDIR").read_bytes()
    proc = mediasvc("fileset", "add", medium, tmp_path / "edited.dcm")
    assert proc.returncode == 1
    assert "a different instance with this SOP Instance UID is already on the medium" in \
        proc.stdout
    assert (medium / "DICOMDIR").read_bytes() == before


def test_remove_series_then_compact(medium: Path) -> None:
    ds = dcmread(medium / "DICOMDIR")
    series = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    uid = series[0].SeriesInstanceUID
    files = [medium.joinpath(*r.ReferencedFileID) for r in leaves(medium / "DICOMDIR")]
    proc = mediasvc("fileset", "remove", medium, "--series", uid)
    assert proc.returncode == 0 and "4 records made inactive" in proc.stdout
    inactive = [r for r in dcmread(medium / "DICOMDIR").DirectoryRecordSequence
                if r.RecordInUseFlag == 0]
    assert len(inactive) == 4  # the series and its three images
    assert all(r.RecordInUseFlag == 0 for r in inactive)
    gone = [f for f in files if not f.exists()]
    assert len(gone) == 3
    assert not gone[0].parent.exists()  # the emptied series folder went too
    assert mediasvc("fileset", "verify", medium).returncode == 0
    assert len(FileSet(medium / "DICOMDIR")) == 3
    proc = mediasvc("fileset", "compact", medium)
    assert proc.returncode == 0 and "4 inactive records dropped" in proc.stdout
    recs = dcmread(medium / "DICOMDIR").DirectoryRecordSequence
    assert len(recs) == 6 and all(r.RecordInUseFlag == 0xFFFF for r in recs)
    assert dciodvfy_ok(medium / "DICOMDIR")


def test_remove_patient_leaves_nothing_active_and_unknown_uid_says_so(medium: Path) -> None:
    proc = mediasvc("fileset", "remove", medium, "--study", "1.2.3.4.5")
    assert proc.returncode == 1 and "nothing matched" in proc.stderr
    proc = mediasvc("fileset", "remove", medium, "--patient", "PID00000")
    assert proc.returncode == 0
    assert leaves(medium / "DICOMDIR") == []
    assert not any(p.is_file() for p in (medium / "DICOM").rglob("*"))


def test_dicomdir_is_old_or_new_whatever_moment_add_is_killed(medium: Path,
                                                              tmp_path: Path) -> None:
    rng = random.Random(7)
    batches = [make_corpus(tmp_path / f"b{i}", "--patients", "1", "--studies", "1",
                           "--series", "1", "--images", "30", "--seed", str(100 + i))
               for i in range(3)]
    for batch in batches:
        for _ in range(4):
            before = len(leaves(medium / "DICOMDIR"))
            proc = subprocess.Popen([sys.executable, "-m", "mediasvc", "fileset", "add",
                                     str(medium), str(batch)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, 1.2))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            count = len(leaves(medium / "DICOMDIR"))  # parses: never half written
            assert count in (before, before + 30)
            referenced = [medium.joinpath(*r.ReferencedFileID)
                          for r in leaves(medium / "DICOMDIR")]
            assert all(p.is_file() for p in referenced)
        # Run to the end: the batch is on the medium once.
        assert mediasvc("fileset", "add", medium, batch).returncode == 0
    assert len(leaves(medium / "DICOMDIR")) == 6 + 90
    assert dciodvfy_ok(medium / "DICOMDIR")
    # Files copied by killed runs were cleared from the journal: nothing unreferenced is left.
    proc = mediasvc("fileset", "verify", medium)
    assert proc.returncode == 0, proc.stdout
    assert not list(medium.glob(".DICOMDIR.*.tmp")) and not (medium / ".mediasvc-pending").exists()
