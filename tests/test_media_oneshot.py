"""`mediasvc export SRC --to iso:OUT` (one pass, media/oneshot.py) with each ISO writer, read
back with isoinfo, xorriso and the kernel's iso9660 (loop mount where allowed); faults."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import make_corpus, mediasvc, run, tree_digest
from test_service_support import Service, drop_folder, write_config

from mediasvc.errors import BurnError
from mediasvc.media.iso import image_files, write_image
from mediasvc.media.oneshot import export_iso
from mediasvc.profiles import media_profile

WRITERS = ("pycdlib", "xorriso")
FSID = "ONESHOT 1"
SITE = ("--institution", "Example Hospital", "--contact", "+41 00 000 00 00")
# Offsets into the DICOMDIR's own bytes (PS3.3 F.3.2.1, F.3.2.2): they move with the length
# of the Media Storage SOP Instance UID, which is new for every DICOMDIR written.
OFFSET_TAGS = {0x00041200, 0x00041202, 0x00041400, 0x00041420}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 patients x 1 study x 2 series x 3 images, and one file that is not DICOM."""
    src = make_corpus(tmp_path_factory.mktemp("oneshot") / "src", "--patients", "2",
                      "--studies", "1", "--series", "2", "--images", "3", "--rows", "64",
                      "--cols", "64")
    (src / "BROKEN.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    return src


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same export as a staging tree (--out, hard links: its files are the sources)."""
    out = tmp_path_factory.mktemp("ref") / "vol"
    proc = mediasvc("export", corpus, "--out", out, "--fileset-id", FSID, *SITE)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # BROKEN.dcm rejected
    return out


@pytest.fixture(scope="module", params=WRITERS)
def oneshot(request: pytest.FixtureRequest, corpus: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp(f"iso-{request.param}")
    iso = folder / "disc.iso"
    proc = mediasvc("export", corpus, "--to", f"iso:{iso}", "--fileset-id", FSID, *SITE,
                    "--iso-writer", request.param, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # BROKEN.dcm rejected, rest on it
    report = json.loads(proc.stdout)
    assert report["images"] == [{"path": str(iso), "bytes": iso.stat().st_size,
                                 "volume_id": "ONESHOT_1", "writer": request.param}]
    assert sorted(p.name for p in folder.iterdir()) == ["disc.iso"]  # no temp folder left
    return iso, report


def _strip(name: str) -> str:
    return re.sub(r"\.?;1$", "", name)


def _extract(iso: Path, dest: Path) -> dict[str, str]:
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dest], check=True)
    return {_strip(k): v for k, v in tree_digest(dest).items()}


def _dicomdir_content(path: Path) -> list[list[tuple[int, object]]]:
    """The DICOMDIR as records of (tag, value), offsets left out (see OFFSET_TAGS)."""
    ds = pydicom.dcmread(path)
    head = [(e.tag, e.value) for e in ds if e.tag != 0x00041220 and e.tag not in OFFSET_TAGS]
    meta = [(e.tag, e.value) for e in ds.file_meta
            if e.tag not in (0x00020000, 0x00020003)]
    return [meta, head] + [[(e.tag, e.value) for e in rec if e.tag not in OFFSET_TAGS]
                           for rec in ds.DirectoryRecordSequence]


def test_bad_file_named_with_its_reason_and_the_rest_on_the_image(
        oneshot: tuple[Path, dict], corpus: Path) -> None:
    iso, report = oneshot
    rejected = report["rejected"]
    assert [Path(r["path"]).name for r in rejected] == ["BROKEN.dcm"]
    assert rejected[0]["reason"]
    assert report["counts"]["placed"] == 12
    listing = run(["isoinfo", "-R", "-l", "-i", iso], check=True).stdout
    assert len(re.findall(r"\sIM\d{6}\.;1\s*$", listing, re.MULTILINE)) == 12


def test_isoinfo_reads_every_file_byte_identical(oneshot: tuple[Path, dict],
                                                 reference: Path) -> None:
    iso, _ = oneshot
    listing = run(["isoinfo", "-R", "-l", "-i", iso], check=True).stdout
    paths: list[str] = []
    folder = "/"
    for line in listing.splitlines():
        m = re.match(r"Directory listing of (\S+)", line)
        if m:
            folder = m.group(1)
        elif line.startswith("-"):
            paths.append(folder + line.split()[-1])
    seen: dict[str, bytes] = {}
    for p in paths:
        data = subprocess.run(["isoinfo", "-i", str(iso), "-x", p], capture_output=True,
                              check=True).stdout
        seen[_strip(p.lstrip("/"))] = data
    want = {p.relative_to(reference).as_posix(): p for p in reference.rglob("*")
            if p.is_file()}
    assert set(seen) == set(want)
    for rel, data in seen.items():
        if rel != "DICOMDIR":
            # DICOM/... of the reference are hard links to the sources: the source's bytes.
            assert data == want[rel].read_bytes(), rel
    for rel in [r for r in want if r.startswith("DICOM/")]:
        assert want[rel].stat().st_nlink > 1  # (the reference shares the sources' inodes)


def test_xorriso_extract_identical_and_dicomdir_valid(oneshot: tuple[Path, dict],
                                                      reference: Path, corpus: Path,
                                                      tmp_path: Path) -> None:
    iso, _ = oneshot
    digest = _extract(iso, tmp_path / "x")
    ref = tree_digest(reference)
    assert set(digest) == set(ref)
    assert {k: v for k, v in digest.items() if k != "DICOMDIR"} == \
        {k: v for k, v in ref.items() if k != "DICOMDIR"}
    # DICOMDIR: the same records and keys as --out writes (only its own UID is new).
    assert _dicomdir_content(tmp_path / "x" / "DICOMDIR") == \
        _dicomdir_content(reference / "DICOMDIR")
    proc = run(["dciodvfy", tmp_path / "x" / "DICOMDIR"])
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
    assert errors == []
    # Every instance on the image is its source, byte for byte.
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p.read_bytes()
              for p in corpus.glob("1.*.dcm")}
    on_disc = [p for p in (tmp_path / "x" / "DICOM").rglob("*") if p.is_file()]
    assert len(on_disc) == len(by_uid) == 12
    for p in on_disc:
        assert p.read_bytes() == by_uid[pydicom.dcmread(p, stop_before_pixels=True)
                                        .SOPInstanceUID]


def test_level1_names_dicomdir_first_instances_in_record_order(
        oneshot: tuple[Path, dict], tmp_path: Path) -> None:
    iso, _ = oneshot
    info = run(["isoinfo", "-d", "-i", iso], check=True).stdout
    assert "Volume id: ONESHOT_1" in info
    assert "NO Joliet present" in info and "NO Rock Ridge present" in info
    listing = run(["isoinfo", "-l", "-i", iso], check=True).stdout
    names = [n for n in re.findall(r"\]\s+(\S+)\s*$", listing, re.MULTILINE)
             if n not in (".", "..")]
    assert all(re.fullmatch(r"[A-Z0-9_]{1,8}(\.[A-Z0-9_]{0,3};1)?", n) for n in names), names
    lba = run(["xorriso", "-indev", iso, "-find", "/", "-type", "f", "-exec", "report_lba",
               "--"], check=True).stdout
    starts = {m.group(2): int(m.group(1)) for m in
              re.finditer(r"File data lba:\s+\d+\s*,\s*(\d+)\s*,.*'(/[^']+)'", lba)}
    order = sorted(starts, key=starts.__getitem__)
    # DICOMDIR first; the PDI root files before any instance (a reader opens them first).
    assert order[0] == "/DICOMDIR"
    assert set(order[:3]) == {"/DICOMDIR", "/README.TXT", "/INDEX.HTM"}
    run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/DICOMDIR",
         tmp_path / "DICOMDIR"], check=True)
    ds = pydicom.dcmread(tmp_path / "DICOMDIR")
    in_records = ["/" + "/".join(r.ReferencedFileID) for r in ds.DirectoryRecordSequence
                  if "ReferencedFileID" in r]
    lbas = [starts[f] for f in in_records]
    assert len(lbas) == 12 and lbas == sorted(lbas)


def test_kernel_loop_mount_reads_the_same(oneshot: tuple[Path, dict], reference: Path,
                                          tmp_path: Path) -> None:
    iso, _ = oneshot
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = run(["mount", "-t", "iso9660", "-o", "loop,ro", iso, mnt])
    if proc.returncode != 0:
        pytest.skip(f"loop mount not allowed here: {proc.stderr.strip() or proc.returncode}")
    try:
        # Without Rock Ridge the kernel shows level 1 names lower-cased, without ';1'.
        seen = {k.upper(): v for k, v in tree_digest(mnt).items()}
    finally:
        run(["umount", mnt])
    ref = {k: v for k, v in tree_digest(reference).items() if k != "DICOMDIR"}
    assert {k: v for k, v in seen.items() if k != "DICOMDIR"} == ref


def test_a_file_system_without_direct_io_gets_the_same_image(reference: Path,
                                                            tmp_path: Path) -> None:
    """ramfs refuses O_DIRECT: the pycdlib writer then fills the extents by sendfile, and
    the image holds the same files (media/direct.py's fallback). write_image is called
    itself: ramfs tells statvfs it has no free space, which export's check would refuse."""
    ram = tmp_path / "ram"
    ram.mkdir()
    if run(["mount", "-t", "ramfs", "ramfs", ram]).returncode != 0:
        pytest.skip("mounting a ramfs is not allowed here")
    try:
        with pytest.raises(OSError) as refused:
            os.close(os.open(ram / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        assert refused.value.errno == errno.EINVAL
        iso = ram / "disc.iso"
        write_image(image_files(reference, {}), iso, "ONESHOT_1", writer="pycdlib")
        digest = _extract(iso, tmp_path / "x")
        assert digest == tree_digest(reference)
        assert len([k for k in digest if k.startswith("DICOM/")]) == 12
    finally:
        run(["umount", ram])


def _limited_fsize(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("writer", WRITERS)
def test_error_mid_write_leaves_no_image(writer: str, corpus: Path, tmp_path: Path) -> None:
    """Files may grow to 150 kB only (RLIMIT_FSIZE): the DICOMDIR and README fit, the image
    (12 instances of ~10 kB + the directory) breaks off half way. No OUT, no part, no temp."""
    out = tmp_path / "out"
    out.mkdir()
    iso = out / "disc.iso"
    proc = subprocess.run([sys.executable, "-m", "mediasvc", "export", str(corpus), "--to",
                           f"iso:{iso}", "--iso-writer", writer], capture_output=True,
                          text=True, preexec_fn=lambda: _limited_fsize(150_000), timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"ISO image {iso}.part" in proc.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_source_changed_before_the_write_fails_cleanly(writer: str, corpus: Path,
                                                       tmp_path: Path) -> None:
    """A source that disappears between the scan and the image: refused, nothing left."""
    work = tmp_path / "src"
    shutil.copytree(corpus, work)
    (work / "BROKEN.dcm").unlink()
    victim = sorted(work.glob("1.*.dcm"))[-1]
    out = tmp_path / "out"
    out.mkdir()

    def remove_one(_report: object) -> None:
        victim.unlink()

    with pytest.raises(BurnError, match=re.escape(victim.name)):
        export_iso([work], out / "disc.iso", media_profile("STD-GEN-CD"), writer=writer,
                   accept=remove_one)
    assert list(out.iterdir()) == []


def test_spanned_export_gives_one_image_per_volume(corpus: Path, tmp_path: Path) -> None:
    iso = tmp_path / "disc.iso"
    proc = mediasvc("export", corpus, "--to", f"iso:{iso}", "--fileset-id", "SPAN",
                    "--capacity", "320K", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    images = [Path(i["path"]) for i in report["images"]]
    assert len(images) >= 2
    assert [p.name for p in images] == [f"disc-VOL{n:03d}.iso" for n in
                                        range(1, len(images) + 1)]
    assert sorted(tmp_path.iterdir()) == sorted(images)
    sops: list[str] = []
    for n, image in enumerate(images, 1):
        dest = tmp_path / f"x{n}"
        digest = _extract(image, dest)
        assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= set(digest)
        assert f"volume {n} of {len(images)}" in (dest / "README.TXT").read_text().lower()
        ds = pydicom.dcmread(dest / "DICOMDIR")
        assert ds.FileSetID == f"SPANV{n:03d}"
        sops += [str(r.ReferencedSOPInstanceUIDInFile) for r in ds.DirectoryRecordSequence
                 if "ReferencedFileID" in r]
        assert image.stat().st_size <= 320 * 1024
    assert len(sops) == len(set(sops)) == 12


def test_to_and_out_are_exclusive_and_to_takes_iso_only(corpus: Path, tmp_path: Path) -> None:
    both = mediasvc("export", corpus, "--out", tmp_path / "a", "--to", f"iso:{tmp_path}/b.iso")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    drive = mediasvc("export", corpus, "--to", "drive:/dev/sr0")
    assert drive.returncode == 2 and "export writes iso:PATH" in drive.stderr
    missing = mediasvc("export", corpus, "--to", f"iso:{tmp_path}/nope/b.iso")
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_service_iso_job_is_made_in_one_pass(corpus: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "mediasvc.toml", workers=1)
    svc = Service(tmp_path / "root", cfg).start()
    try:
        files = sorted(corpus.glob("1.*.dcm"))
        drop_folder(files, svc.root / "drop" / "export" / "STD-GEN-CD" / "job1")
        where, report = svc.wait_result("job1")
    finally:
        assert svc.stop() == 0, svc.log()[-3000:]
        svc.close()
    assert where == "done", report
    assert report["result"]["fileset"]["one_pass"] == "pycdlib"
    assert "ISO image: job1.iso (one pass, pycdlib)" in report["result"]["summary"]
    digest = _extract(svc.root / "done" / "job1" / "job1.iso", tmp_path / "x")
    by_content = {v for k, v in digest.items() if k.startswith("DICOM/")}
    assert by_content == set(tree_digest(corpus).values()) - {
        tree_digest(corpus)["BROKEN.dcm"]}
    assert os.path.getsize(svc.root / "done" / "job1" / "job1.iso") > 0


@pytest.mark.parametrize("compress", [(), ("--compress", "j2k-lossless")],
                         ids=["mapped", "transcoded"])
def test_web_viewer_and_transcoded_files_as_out_writes_them(compress: tuple[str, ...],
                                                            corpus: Path,
                                                            tmp_path: Path) -> None:
    """--web renders from the mapped sources (or the transcoded files in the temp folder),
    --viewer is mapped: the image holds what --out writes, byte for byte."""
    viewer = tmp_path / "viewer"
    (viewer / "LIB").mkdir(parents=True)
    (viewer / "VIEW.EXE").write_bytes(b"MZ" + bytes(range(256)) * 8)
    (viewer / "LIB" / "CODEC.DLL").write_bytes(b"dll" * 1000)
    common = ("--profile", "STD-GEN-DVD-J2K", *compress, "--web",
              "--viewer", viewer, "--fileset-id", FSID, *SITE)
    ref = tmp_path / "ref"
    proc = mediasvc("export", corpus, "--out", ref, *common)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    iso = tmp_path / "disc.iso"
    proc = mediasvc("export", corpus, "--to", f"iso:{iso}", *common)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"transcoded {12 if compress else 0}" in proc.stdout
    digest = _extract(iso, tmp_path / "x")
    want = tree_digest(ref)
    assert any(k.startswith("IHE_PDI/") and k.endswith(".JPG") for k in digest)
    assert {"VIEWER/VIEW.EXE", "VIEWER/LIB/CODEC.DLL"} <= set(digest)
    assert {k: v for k, v in digest.items() if k != "DICOMDIR"} == \
        {k: v for k, v in want.items() if k != "DICOMDIR"}
    assert _dicomdir_content(tmp_path / "x" / "DICOMDIR") == _dicomdir_content(ref / "DICOMDIR")
