"""The local store: SQLite index in WAL mode on disk, content-addressed files, recovery."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import pydicom
import pytest

from mediasvc.errors import StoreError
from mediasvc.store import files
from mediasvc.store.importer import import_media
from mediasvc.store.index import Store

sys.path.insert(0, str(Path(__file__).parent))
from conftest import mediasvc  # noqa: E402


@pytest.fixture
def filled(small_corpus: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with Store.open(root) as st:
        rep = import_media(st, small_corpus)
    assert rep.counts()["imported"] == 12
    return root


def test_open_creates_wal_index(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.open(root).close()
    assert (root / "index.sqlite").is_file() and (root / "objects").is_dir()
    db = sqlite3.connect(root / "index.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"patients", "studies", "series", "instances", "imports", "forwards"} <= tables


def test_rows_and_files_agree(filled: Path, small_corpus: Path) -> None:
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in small_corpus.rglob("*.dcm")}
    with Store.open(filled) as st:
        studies = st.studies()
        assert len(studies) == 2
        for study in studies:
            assert study.patient_id and study.n_series == 2 and study.n_instances == 6
            assert study.modalities == ("CT", "MR")
            assert st.studies(patient_id=study.patient_id) == [study]
            for series in st.series_of(study.study_uid):
                rows = st.instances_of(series.series_uid)
                assert len(rows) == 3 and series.modality in ("CT", "MR")
                for row in rows:
                    data = row.path.read_bytes()
                    assert hashlib.sha256(data).hexdigest() == row.checksum
                    assert row.path.name == f"{row.checksum}.dcm"
                    assert data == by_uid[row.sop_uid].read_bytes()   # stored byte for byte
                    assert row.origin.medium_label == small_corpus.name
                    assert row.origin.source_path.endswith(".dcm")
                    assert row.origin.imported_at and row.origin.volume
                    assert isinstance(row.mds, dict)
        assert st.check() == []


def test_recovery_removes_orphans_and_rows_without_files(filled: Path) -> None:
    with Store.open(filled) as st:
        victim = st.instances()[0]
    orphan = filled / files.object_relpath("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left behind by a killed import")
    (filled / "tmp" / "put-x.part").write_bytes(b"half written")
    victim.path.unlink()
    with sqlite3.connect(filled / "index.sqlite") as db:   # as a killed writer leaves it
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('dirty', '1')")
    with Store.open(filled) as st:
        rec = st.last_recovery
        assert rec.orphan_files_removed == [orphan.relative_to(filled).as_posix()]
        assert rec.rows_without_file == [victim.path.relative_to(filled).as_posix()]
        assert not orphan.exists() and list((filled / "tmp").iterdir()) == []
        assert st.count_instances() == 11 and st.check() == []


def test_check_finds_damaged_files(filled: Path) -> None:
    with Store.open(filled) as st:
        row = st.instances()[3]
        row.path.write_bytes(row.path.read_bytes()[:-10])
        problems = st.check()
    assert len(problems) == 1 and "does not match its checksum" in problems[0]
    proc = mediasvc("store", "check", "--store", filled, "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["problems"] == problems


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with (Store.open(root) as a, Store.open(root) as b, a.writing(),
          pytest.raises(StoreError, match="another import"), b.writing(wait=0.3)):
        pass


def test_store_list_text_and_filters(filled: Path) -> None:
    with Store.open(filled) as st:
        study = st.studies()[0]
    proc = mediasvc("store", "list", "--store", filled)
    assert proc.returncode == 0
    assert proc.stdout.count("series,") == 2 and study.study_uid in proc.stdout
    proc = mediasvc("store", "list", "--store", filled, "--patient-id", "NOBODY")
    assert "no studies" in proc.stdout


def test_mds_stored_per_instance(filled: Path) -> None:
    with Store.open(filled) as st:
        for row in st.instances():
            ds = pydicom.dcmread(row.path, stop_before_pixels=True)
            assert row.mds["study.instance_uid"] == {"value": ds.StudyInstanceUID,
                                                     "source": "(0020,000D)"}
            assert row.mds["study.description"]["value"] == ds.StudyDescription


def test_truncated_file_is_rejected(small_corpus: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    good = sorted(small_corpus.rglob("*.dcm"))[:2]
    (media / "OK").write_bytes(good[0].read_bytes())
    (media / "CUT").write_bytes(good[1].read_bytes()[:-500])   # an early-ejected disc
    with Store.open(tmp_path / "store") as st:
        rep = import_media(st, media)
        assert st.count_instances() == 1
    outcome = {o.source: o for o in rep.outcomes}
    assert outcome["OK"].status == "imported"
    assert outcome["CUT"].status == "rejected" and "truncated" in outcome["CUT"].reason


def test_write_object_waits_for_a_writer_of_the_same_content(tmp_path: Path) -> None:
    """Two files of a medium with the same bytes, written by two workers at once: the one
    that finds the content address taken returns only when the whole content is there (its
    row may name the file), and reports that it did not write it."""
    import threading
    import time

    data = bytes(range(256)) * 4096   # 1 MiB
    digest = hashlib.sha256(data).hexdigest()
    final = tmp_path / files.object_relpath(digest)
    final.parent.mkdir(parents=True)
    fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL)   # the first worker, mid-write
    os.write(fd, data[:1000])

    def finish() -> None:
        time.sleep(0.3)
        os.write(fd, data[1000:])
        os.close(fd)

    writer = threading.Thread(target=finish)
    writer.start()
    start = time.monotonic()
    assert files.write_object(tmp_path, data, digest) is False
    waited = time.monotonic() - start
    writer.join()
    assert waited >= 0.25 and final.read_bytes() == data
    # Already complete: at once, nothing written.
    assert files.write_object(tmp_path, data, digest) is False
    # A name holding more than its content: not these bytes; said, not overwritten.
    other = b"x" * 10
    odd = tmp_path / files.object_relpath(hashlib.sha256(other).hexdigest())
    odd.parent.mkdir(parents=True, exist_ok=True)
    odd.write_bytes(b"y" * 20)
    with pytest.raises(OSError, match="not the 10 bytes"):
        files.write_object(tmp_path, other, hashlib.sha256(other).hexdigest())
    assert odd.read_bytes() == b"y" * 20
    # A new content: written, and said so.
    new = b"new content"
    assert files.write_object(tmp_path, new, hashlib.sha256(new).hexdigest()) is True
    assert (tmp_path / files.object_relpath(hashlib.sha256(new).hexdigest())).read_bytes() == new


def _fs_type(path: Path) -> str:
    """The type of the file system holding ``path`` (the longest mount point above it)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mount, fstype = line.split()[1:3]
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def _resident_pages(path: Path) -> int:
    """How many pages of ``path`` are in the page cache (mincore(2) on a mapping of it)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0
        resident = sum(v & 1 for v in vec)
        del addr
    return resident


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, files.DIRECT_MIN - 1, files.DIRECT_MIN,
                                  files.DIRECT_MIN + 1234, (3 << 20) + 7])
def test_read_buffer_and_direct_writes_keep_every_byte(tmp_path: Path, size: int) -> None:
    """A file read into the aligned buffer and written to its content address, by direct I/O
    for the whole blocks of a large content, through the page cache for the rest: the same
    bytes and size, whatever the size (the buffer grows past its first 2 MiB), and a large
    content leaves at most its last block in the page cache."""
    data = os.urandom(size)
    src = tmp_path / "src"
    src.write_bytes(data)
    buf = files.ReadBuffer()
    view = buf.read(src)
    assert bytes(view) == data
    digest = hashlib.sha256(view).hexdigest()
    assert files.write_object(tmp_path, view, digest) is True
    stored = tmp_path / files.object_relpath(digest)
    assert stored.stat().st_size == size
    if size >= files.DIRECT_MIN:
        assert files._is_aligned(view)
        if _fs_type(tmp_path) != "tmpfs":   # tmpfs: the page cache is the file
            assert _resident_pages(stored) <= 1, "the whole blocks went through the page cache"
    assert stored.read_bytes() == data
    # The same bytes from an ordinary (unaligned, read-only) buffer: through the page cache.
    assert not files._is_aligned(memoryview(data)) or size == 0
    other = tmp_path / "other"
    other.mkdir()
    assert files.write_object(other, data, digest) is True
    assert (other / files.object_relpath(digest)).read_bytes() == data
