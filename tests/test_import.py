"""`mediasvc import`: third-party DICOMDIR trees, an exported file-set, ISO images, path safety,
duplicates and conflicts, reconciliation. Real processes, real files, SQLite on disk."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from mediasvc.store import files
from mediasvc.store.importer import import_media
from mediasvc.store.index import Store
from mediasvc.store.reconcile import Reconciler, load_mapping

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TESTDATA, make_corpus, mediasvc, run  # noqa: E402

TREES = sorted(p for p in (TESTDATA / "dicomdir").iterdir() if p.is_dir()) \
    if (TESTDATA / "dicomdir").is_dir() else []


def import_json(media: Path, store: Path, *extra: str) -> tuple[int, dict]:
    proc = mediasvc("import", media, "--store", store, "--json", *extra)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def referenced_ids(tree: Path) -> list[tuple[str, ...]]:
    """Referenced File IDs of leaf records, read independently with pydicom (DIRFILEs too)."""
    out: list[tuple[str, ...]] = []
    todo = [tree / "DICOMDIR"]
    while todo:
        ds = pydicom.dcmread(todo.pop(), force=True)
        for rec in ds.DirectoryRecordSequence:
            fid = rec.get("ReferencedFileID")
            if fid is None:
                continue
            comps = tuple([fid] if isinstance(fid, str) else list(fid))
            if rec.DirectoryRecordType in ("PATIENT", "STUDY", "SERIES"):
                todo.append(tree.joinpath(*comps))   # Philips multi-file directory
            else:
                out.append(comps)
    return out


def readable_instance(path: Path) -> str | None:
    try:
        ds = pydicom.dcmread(path)
    except (OSError, InvalidDicomError):
        return None
    return str(ds.get("SOPInstanceUID", "")) or None


def dcmmkdir_fileset(src: Path, out: Path, fileset_id: str = "TESTSET") -> Path:
    """The files of ``src`` as DICOM/IMn with a DICOMDIR written by DCMTK dcmmkdir (the
    reference File-set Creator), independent of our own creator."""
    (out / "DICOM").mkdir(parents=True)
    for n, f in enumerate(sorted(src.rglob("*.dcm")), start=1):
        shutil.copyfile(f, out / "DICOM" / f"IM{n}")
    proc = run(["dcmmkdir", "+r", "+id", out, "--fileset-id", fileset_id, "-Pgp", "DICOM"],
               cwd=out)
    assert proc.returncode == 0 and (out / "DICOMDIR").is_file(), proc.stderr
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 instances (2 patients) as a file-set with a DICOMDIR."""
    base = tmp_path_factory.mktemp("exported")
    src = make_corpus(base / "src", "--patients", "2", "--studies", "1", "--series", "2",
                      "--images", "3", "--rows", "32", "--cols", "32")
    return dcmmkdir_fileset(src, base / "fs")


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_import_every_testdata_tree(tree: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    refs = referenced_ids(tree)
    present = {}
    for comps in refs:
        path = tree.joinpath(*comps)
        uid = readable_instance(path) if path.is_file() else None
        if uid:
            present["/".join(comps)] = uid
    code, rep = import_json(tree, store)
    counts = rep["counts"]
    # Imported = the readable referenced instances, identified by their SOP Instance UIDs.
    assert counts["imported"] == len(present), rep["counts"]
    with Store.open(store) as st:
        stored = {i.sop_uid for i in st.instances()}
    assert stored == set(present.values())
    # The rest is reported by name, and then the import is not complete.
    not_imported = [o for o in rep["instances"] if o["status"] != "imported"]
    assert len(not_imported) == len(refs) - len(present)
    for o in not_imported:
        assert o["source"] and o["status"] in ("missing", "rejected", "refused", "unreadable")
        assert not tree.joinpath(*o["source"].split("/")).is_file() or o["status"] != "missing"
    assert rep["complete"] == (len(not_imported) == 0)
    assert rep["method"].startswith("dicomdir")
    assert code == (0 if rep["complete"] and refs else 1)
    # A second import of the same medium adds nothing.
    code2, rep2 = import_json(tree, store)
    assert rep2["counts"]["imported"] == 0
    assert rep2["counts"]["duplicate"] == len(present)
    with Store.open(store) as st:
        assert st.count_instances() == len(present)
        assert st.check() == []


def test_import_exported_fileset_and_list(exported: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, rep = import_json(exported, store)
    assert code == 0 and rep["complete"] and rep["fileset_id"] == "TESTSET"
    assert rep["method"] == "dicomdir" and rep["counts"]["imported"] == 12
    proc = mediasvc("store", "list", "--store", store, "--json")
    studies = json.loads(proc.stdout)
    assert len(studies) == 2
    for st in studies:
        assert st["n_instances"] == 6 and st["n_series"] == 2
        for se in st["series"]:
            for inst in se["instances"]:
                path = Path(inst["path"])
                assert path.is_file() and path.is_relative_to(store)
                ds = pydicom.dcmread(path)
                assert ds.SOPInstanceUID == inst["sop_instance_uid"]
                assert inst["origin"]["fileset_id"] == "TESTSET"
                assert inst["origin"]["source_path"].startswith("DICOM/")
    pid = studies[0]["patient_id"]
    one = json.loads(mediasvc("store", "list", "--store", store, "--json",
                              "--patient-id", pid).stdout)
    assert [s["patient_id"] for s in one] == [pid]
    text = mediasvc("store", "list", "--store", store, "--study-uid",
                    studies[1]["study_uid"]).stdout
    assert studies[1]["study_uid"] in text and studies[0]["study_uid"] not in text


def test_default_store_is_var_store(exported: Path, tmp_path: Path) -> None:
    proc = mediasvc("import", exported, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "var" / "store" / "index.sqlite").is_file()
    assert "complete" in proc.stdout


def test_iso_image_imported_without_mounting(exported: Path, tmp_path: Path) -> None:
    iso = tmp_path / "disc.iso"
    proc = run(["xorriso", "-as", "mkisofs", "-R", "-V", "PATIENTCD", "-o", iso, exported])
    assert proc.returncode == 0, proc.stderr
    mounts_before = Path("/proc/self/mounts").read_text()
    store = tmp_path / "store"
    code, rep = import_json(iso, store)
    assert code == 0, rep
    assert rep["counts"]["imported"] == 12 and rep["complete"]
    assert rep["medium_label"] == "PATIENTCD" and rep["fileset_id"] == "TESTSET"
    assert Path("/proc/self/mounts").read_text() == mounts_before
    with Store.open(store) as st:
        rows = st.instances()
        assert {r.origin.volume for r in rows} == {str(iso)}
        assert st.check() == []
    assert list((store / "tmp").iterdir()) == []   # the extraction is gone
    # Same content from the folder: nothing new.
    code, rep = import_json(exported, store)
    assert rep["counts"]["duplicate"] == 12 and rep["counts"]["imported"] == 0


def test_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an iso" * 100)
    proc = mediasvc("import", junk, "--store", tmp_path / "store")
    assert proc.returncode == 3
    assert "junk.bin" in proc.stderr and "ISO" in proc.stderr


def test_missing_media(tmp_path: Path) -> None:
    proc = mediasvc("import", tmp_path / "nope", "--store", tmp_path / "store")
    assert proc.returncode == 3 and "nope" in proc.stderr


@pytest.fixture
def hostile(exported: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the file-set whose DICOMDIR points outside the root (.., symlink), with one
    referenced file deleted and one damaged. Returns (media, the outside file)."""
    media = tmp_path / "media"
    shutil.copytree(exported, media)
    outside = tmp_path / "SECRET"
    shutil.copyfile(next(iter(sorted(exported.rglob("IM*")))), outside)
    ds = pydicom.dcmread(media / "DICOMDIR")
    leaves = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    first = media.joinpath(*leaves[0].ReferencedFileID)
    first.unlink()
    os.symlink(outside, first)                                 # symlink leaving the root
    with warnings.catch_warnings():   # pydicom rightly warns: ".." is no valid CS value
        warnings.simplefilter("ignore")
        leaves[1].ReferencedFileID = ["..", "SECRET"]           # .. leaving the root
    media.joinpath(*leaves[2].ReferencedFileID).unlink()        # missing
    media.joinpath(*leaves[3].ReferencedFileID).write_bytes(b"garbage" * 50)   # not DICOM
    ds.save_as(media / "DICOMDIR")
    return media, outside


def test_nothing_outside_the_media_root_is_opened(hostile: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    media, outside = hostile
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(os.fsdecode(args[0])))

    sys.addaudithook(hook)
    try:
        with Store.open(tmp_path / "store") as store:
            rep = import_media(store, media)
    finally:
        watching[0] = False
    real_media, real_store = os.path.realpath(media), os.path.realpath(tmp_path / "store")
    assert os.path.realpath(outside) not in opened
    for p in opened:
        if p.startswith(os.path.realpath(tmp_path)):
            assert p.startswith((real_media, real_store)), p
    counts = rep.counts()
    assert counts["refused"] == 2 and counts["missing"] == 1 and counts["rejected"] == 1
    assert counts["imported"] == 8 and not rep.complete
    by_status = {o.status: o for o in rep.outcomes}
    assert "SECRET" in by_status["refused"].source or any(
        "SECRET" in o.source for o in rep.outcomes if o.status == "refused")
    assert "not a DICOM file" in by_status["rejected"].reason


def test_cli_report_names_what_was_not_imported(hostile: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    media, _ = hostile
    proc = mediasvc("import", media, "--store", tmp_path / "store")
    assert proc.returncode == 1
    assert "INCOMPLETE" in proc.stdout
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("  refused ") for line in lines) == 2
    assert sum(line.startswith("  missing ") for line in lines) == 1
    assert any(line.startswith("  rejected  DICOM/") and "not a DICOM file" in line
               for line in lines)


def test_conflict_keeps_both(exported: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert import_json(exported, store)[0] == 0
    other = tmp_path / "other"
    other.mkdir()
    src = sorted(exported.rglob("IM*"))[0]
    ds = pydicom.dcmread(src)
    ds.SeriesDescription = "CHANGED ON ANOTHER SYSTEM"
    ds.save_as(other / "IM1")
    code, rep = import_json(other, store)
    assert code == 1
    assert rep["counts"]["conflict"] == 1 and rep["method"].startswith("scan")
    with Store.open(store) as st:
        rows = [r for r in st.instances() if r.sop_uid == ds.SOPInstanceUID]
        assert len(rows) == 2 and all(r.conflict for r in rows)
        assert len({r.checksum for r in rows}) == 2
        descriptions = {pydicom.dcmread(r.path).SeriesDescription for r in rows}
        assert "CHANGED ON ANOTHER SYSTEM" in descriptions and len(descriptions) == 2
        assert st.check() == []
    # Importing the changed copy again is a duplicate of the conflict copy, not a third row.
    code, rep = import_json(other, store)
    assert rep["counts"]["duplicate"] == 1


@pytest.mark.parametrize("reconcile", [False, True], ids=["plain", "reconciled"])
def test_copies_on_one_medium_in_parallel(reconcile: bool, tmp_path: Path) -> None:
    """Identical files under several names, read by several workers at once: the first in
    the medium's order is imported, the others are duplicates of it; every row's file is
    there with its SHA-256 as name, and no file is left without a row (a worker that finds
    the content address taken, or whose copy turns out not to be needed, leaves no orphan)."""
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "4",
                      "--images", "20", "--rows", "16", "--cols", "16")
    medium = tmp_path / "medium"
    medium.mkdir()
    originals = sorted(src.rglob("*.dcm"))
    for n, f in enumerate(originals):
        shutil.copy(f, medium / f"A{n:03d}")
        if n % 3 == 0:   # copies spread over the medium, so over different worker tasks
            shutil.copy(f, medium / f"Z{n:03d}")
    copies = len(range(0, len(originals), 3))
    store = tmp_path / "store"
    extra = ("--patient-id", "LOC-7") if reconcile else ()
    code, rep = import_json(medium, store, *extra)
    assert rep["counts"]["imported"] == len(originals), rep["counts"]
    assert rep["counts"]["duplicate"] == copies and rep["complete"]
    with Store.open(store) as st:
        rows = st.instances()
        assert len(rows) == len(originals)
        for r in rows:
            assert files.sha256_file(r.path) == r.checksum == r.path.name[:-4]
            if reconcile:
                assert pydicom.dcmread(r.path).PatientID == "LOC-7"
        on_disk = sorted(p for p in (store / "objects").rglob("*") if p.is_file())
        assert on_disk == sorted(r.path for r in rows), "files without a row"
        assert st.check() == []


def test_reconcile_patient_identity(exported: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, rep = import_json(exported, store, "--patient-id", "LOC-42", "--patient-name",
                            "LOCAL^JANE", "--issuer", "HOSP")
    assert code == 0 and rep["counts"]["imported"] == 12
    originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p)
                 for p in exported.rglob("IM*")}
    with Store.open(store) as st:
        assert [s.patient_id for s in st.studies()] == ["LOC-42", "LOC-42"]
        for row in st.instances():
            ds = pydicom.dcmread(row.path)
            orig = originals[ds.SOPInstanceUID]
            assert ds.PatientID == "LOC-42" and str(ds.PatientName) == "LOCAL^JANE"
            assert ds.IssuerOfPatientID == "HOSP"
            assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
                orig.StudyInstanceUID, orig.SeriesInstanceUID)
            item = ds.OriginalAttributesSequence[-1]
            assert item.ReasonForTheAttributeModification == "COERCE"
            assert item.ModifyingSystem and item.AttributeModificationDateTime
            prior = item.ModifiedAttributesSequence[0]
            assert prior.PatientID == orig.PatientID
            assert str(prior.PatientName) == str(orig.PatientName)
            assert pydicom.dcmread(row.path).pixel_array.shape == orig.pixel_array.shape
    # dcmdump (DCMTK) reads the coerced file and shows the sequence.
    one = next(iter(Path(store, "objects").rglob("*.dcm")))
    dump = run(["dcmdump", one]).stdout
    assert "(0400,0561)" in dump and "COERCE" in dump
    # The same medium again: nothing new, even though the coercion time differs.
    code, rep = import_json(exported, store, "--patient-id", "LOC-42", "--patient-name",
                            "LOCAL^JANE", "--issuer", "HOSP")
    assert rep["counts"]["duplicate"] == 12 and rep["counts"]["imported"] == 0


@pytest.mark.parametrize("kind", ["csv", "toml"])
def test_reconcile_mapping_file(kind: str, exported: Path, tmp_path: Path) -> None:
    pids = sorted({pydicom.dcmread(p).PatientID for p in exported.rglob("IM*")})
    mapping = tmp_path / f"map.{kind}"
    if kind == "csv":
        mapping.write_text(f"old_id,new_id,name\n{pids[0]},NEW-1,MAPPED^ONE\n")
    else:
        mapping.write_text(f'[[patient]]\nold_id = "{pids[0]}"\nnew_id = "NEW-1"\n'
                           'name = "MAPPED^ONE"\n')
    store = tmp_path / "store"
    code, rep = import_json(exported, store, "--mapping", mapping)
    assert code == 0, rep
    with Store.open(store) as st:
        ids = sorted(s.patient_id for s in st.studies())
        assert ids == sorted(["NEW-1", pids[1]])
        mapped = st.studies(patient_id="NEW-1")[0]
        assert mapped.patient_name == "MAPPED^ONE"


def test_mapping_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "map.toml"
    bad.write_text('[[patient]]\nold_id = "A"\nnewid = "B"\n')
    with pytest.raises(Exception) as info:
        load_mapping(bad)
    assert "map.toml" in str(info.value) and "newid" in str(info.value)
    proc = mediasvc("import", tmp_path, "--store", tmp_path / "s", "--mapping", bad)
    assert proc.returncode == 2 and "map.toml" in proc.stderr


def test_reconciler_leaves_unmapped_alone() -> None:
    ds = pydicom.Dataset()
    ds.PatientID = "OTHER"
    assert Reconciler(mapping={}).apply(ds) == []
    assert "OriginalAttributesSequence" not in ds


def test_dicomdir_file_as_media(exported: Path, tmp_path: Path) -> None:
    code, rep = import_json(exported / "DICOMDIR", tmp_path / "store")
    assert code == 0 and rep["counts"]["imported"] == 12 and rep["fileset_id"] == "TESTSET"


def test_progress_bar_on_a_terminal() -> None:
    import io

    from mediasvc.cli.import_ import ProgressBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar(out, min_seconds=0.0)
    for n in range(1, 101):
        bar(n, 100)
    bar.close()
    text = out.getvalue()
    assert "\r[" in text and "100/100 files" in text and text.endswith("\n")
    quiet = io.StringIO()          # not a terminal (a script, --json into a pipe): no bar
    bar = ProgressBar(quiet, min_seconds=0.0)
    bar(1, 1)
    bar.close()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("where", ["long header", "no pixel data"])
def test_header_longer_than_the_first_parse(small_corpus: Path, tmp_path: Path,
                                            where: str) -> None:
    """The importer parses a file's first HEAD bytes, then the whole file when the header
    may go on past them: a 100 KB comment before Rows/Columns, or a file with no pixel data
    at all, gives the same header as pydicom reading the whole file, and the truncation check
    still sees the pixel data."""
    from mediasvc.store import importer

    ds = pydicom.dcmread(sorted(small_corpus.rglob("*.dcm"))[0])
    ds.ImageComments = "x" * (importer.HEAD + 40_000)   # (0020,4000): before (0028,xxxx)
    if where == "no pixel data":
        del ds.PixelData
    path = tmp_path / "f.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = memoryview(path.read_bytes())
    parsed, end = importer._parse_header(data)
    whole = pydicom.dcmread(path, stop_before_pixels=True)
    assert [e.tag for e in parsed] == [e.tag for e in whole]
    assert parsed.ImageComments == whole.ImageComments   # (as UN: too long for LT's 16 bits)
    if where == "long header":
        assert parsed.Rows == ds.Rows
        assert importer._truncated(parsed, len(data) - end) == ""
        assert "truncated" in importer._truncated(parsed, len(data) - end - 100)
    else:
        assert end == len(data)
    with Store.open(tmp_path / "store") as st:
        rep = import_media(st, tmp_path)
        assert [o.status for o in rep.outcomes] == ["imported"]
        assert st.count_instances() == 1


def test_files_read_early_and_not_referenced_leave_nothing(tmp_path: Path) -> None:
    """Files that look like File IDs are read while the DICOMDIR is parsed. Those it does not
    reference (other instances; byte-identical copies of referenced ones) are neither
    imported nor left in the store: every file under objects/ has its row."""
    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "4",
                      "--images", "20", "--rows", "16", "--cols", "16")
    medium = dcmmkdir_fileset(src, tmp_path / "medium")
    other = make_corpus(tmp_path / "other", "--patients", "1", "--studies", "1", "--series",
                        "2", "--images", "20", "--rows", "16", "--cols", "16")
    for n, f in enumerate(sorted(other.rglob("*.dcm"))):
        shutil.copyfile(f, medium / "DICOM" / f"AX{n}")   # read first
    for n in range(1, 81, 4):   # same bytes as a referenced file, under another name
        shutil.copyfile(medium / "DICOM" / f"IM{n}", medium / "DICOM" / f"COPY{n}")
    code, rep = import_json(medium, tmp_path / "store")
    assert rep["counts"]["imported"] == 80 and rep["complete"], rep["counts"]
    assert not any("AX" in o["source"] or "COPY" in o["source"] for o in rep["instances"])
    with Store.open(tmp_path / "store") as st:
        rows = st.instances()
        assert len(rows) == 80
        on_disk = sorted(p for p in (tmp_path / "store" / "objects").rglob("*") if p.is_file())
        assert on_disk == sorted(r.path for r in rows), "files without a row"
        assert st.check() == []


def test_examiner_removes_what_early_reads_stored_and_nobody_uses(tmp_path: Path) -> None:
    """The examiner's side of the above, with the early reads certainly done before the
    listing is asked for: the unreferenced files' copies are in the store until the import
    drops them, and only theirs go."""
    from mediasvc.store import importer

    src = make_corpus(tmp_path / "src", "--patients", "1", "--studies", "1", "--series", "2",
                      "--images", "40", "--rows", "16", "--cols", "16")
    paths = [str(p) for p in sorted(src.rglob("*.dcm"))]
    wanted, unwanted = paths[:50], paths[50:]
    root = tmp_path / "store"
    Store.open(root).close()
    examiner = importer._Examiner(root, workers=2)
    try:
        examiner.start_early(unwanted + wanted)
        for fut, _ in list(examiner.early.values()):
            fut.result()   # every early read done, its copy stored
        results = list(examiner.examine_all(wanted))
        assert [r.path for r in results] == wanted and all(r.stored for r in results)
        stored = {p.name[:-4] for p in (root / "objects").rglob("*.dcm")}
        assert len(stored) == len(paths)
        examiner.drop_unused({r.source_sum for r in results})
    finally:
        examiner.close()
    assert {p.name[:-4] for p in (root / "objects").rglob("*.dcm")} == {
        r.source_sum for r in results}


def test_early_candidates_are_plain_files_that_look_like_file_ids(tmp_path: Path) -> None:
    """What is read before the DICOMDIR is parsed: regular files without a dot in the name,
    none larger than EARLY_MAX_FILE; no DICOMDIR, no viewer or text files, no symbolic link
    (to a file or a folder) followed, no FIFO opened; in name order."""
    from mediasvc.store import importer

    (tmp_path / "DICOM" / "ST1").mkdir(parents=True)
    (tmp_path / "VIEWER").mkdir()
    for rel in ("DICOMDIR", "README.TXT", "INDEX.HTM", "VIEWER/APP.EXE", "DICOM/ST1/IM2",
                "DICOM/ST1/IM1", "DICOM/IM0"):
        (tmp_path / rel).write_bytes(b"x")
    with open(tmp_path / "DICOM" / "HUGE", "wb") as fh:   # sparse: no disk space taken
        fh.truncate(importer.EARLY_MAX_FILE + 1)
    (tmp_path / "DICOM" / "LINK").symlink_to(tmp_path / "DICOM" / "IM0")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "SECRET").write_bytes(b"x")
    (tmp_path / "DICOM" / "OUT").symlink_to(outside, target_is_directory=True)
    os.mkfifo(tmp_path / "DICOM" / "FIFO")
    found = importer._early_candidates(tmp_path, 100)
    assert found == [str(tmp_path / "DICOM" / "IM0"), str(tmp_path / "DICOM" / "ST1" / "IM1"),
                     str(tmp_path / "DICOM" / "ST1" / "IM2")]
    assert importer._early_candidates(tmp_path, 2) == found[:2]
