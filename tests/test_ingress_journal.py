"""The ingress write-ahead journals (mediasvc/ingress/receive.py) on real files: what a crash
leaves in a journal comes back under its final name at the next start, a record cut by the
crash does not, and a journal half is reused only once its instances are durable elsewhere.

A "crash" here is a Spooler dropped without close(), after the final files were removed or
emptied, as a power loss may leave files that were renamed but never flushed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mediasvc.ingress import receive
from mediasvc.ingress.receive import Journal, Layout, Spooler, Target

STUDY = "1.2.3.4"


def _spooler(base: Path) -> Spooler:
    layout = Layout(base)
    layout.prepare()
    sp = Spooler(layout)
    sp.recover()
    return sp


def _send(sp: Spooler, n: int, size: int = 20_000, first: int = 0) -> dict[Path, bytes]:
    j = sp.acquire()
    tmp = sp.temp_dir("a1")
    out = {}
    for i in range(first, first + n):
        sop = f"1.2.3.4.5.{i}"
        data = [b"\x00" * 128 + b"DICM", os.urandom(size)]
        assert sp.store(j, tmp, i, Target("cd", STUDY, sop), data)
        out[sp.layout.study_dir("cd", STUDY) / f"{sop}.dcm"] = b"".join(data)
    sp.release(j)
    return out


def test_acknowledged_instances_lost_from_their_folder_come_back(tmp_path: Path) -> None:
    sp = _spooler(tmp_path / "ingress")
    sent = _send(sp, 12)
    held = Target("", "", "1.2.9.9")
    j = sp.acquire()
    assert sp.store(j, sp.temp_dir("a2"), 1, held, [b"held bytes"])
    for i, p in enumerate(sent):          # the crash: files unflushed, so lost or empty
        if i % 2:
            p.unlink()
        else:
            p.write_bytes(b"")
    (sp.layout.held / held.name).unlink()
    # no sp.close(): killed
    again = Spooler(Layout(tmp_path / "ingress"))
    Layout(tmp_path / "ingress").prepare()
    assert again.recover() == 13
    for p, data in sent.items():
        assert p.read_bytes() == data
    assert (again.layout.held / held.name).read_bytes() == b"held bytes"
    assert not any(again.layout.tmp.rglob("*.part"))
    again.close()
    # A clean stop leaves nothing to write again.
    assert Spooler(Layout(tmp_path / "ingress")).recover() == 0


def test_a_record_cut_by_the_crash_is_not_written(tmp_path: Path) -> None:
    sp = _spooler(tmp_path / "ingress")
    sent = _send(sp, 3)
    for p in sent:
        p.unlink()
    # Overwrite the tail of the newest record, as a write the crash interrupted.
    used = [p for p in sorted(sp.layout.journal.glob("*.jnl")) if _records(p)]
    assert len(used) == 1
    last_end = _records(used[0])[-1]
    with open(used[0], "r+b") as f:
        f.seek(last_end - 100)
        f.write(b"\xff" * 50)
    again = Spooler(Layout(tmp_path / "ingress"))
    assert again.recover() == 2
    back = sorted(p.name for p in sent if p.exists())
    assert back == sorted(p.name for p in list(sent)[:2])
    again.close()


def test_a_half_is_reused_only_after_its_instances_are_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receive, "HALF_BYTES", 64 * 1024)
    sp = _spooler(tmp_path / "ingress")
    flushed: list[int] = []
    real = receive.syncfs

    def counting(path: Path) -> bool:
        flushed.append(1)
        return real(path)

    monkeypatch.setattr(receive, "syncfs", counting)
    # ~400 KB through halves of 64 KB (5 records each): 7 switches, each waiting for the
    # syncfs that covers the half it reuses.
    sent = _send(sp, 40, size=10_000)
    assert len(flushed) >= 6
    for p in sent:
        p.unlink()
    again = Spooler(Layout(tmp_path / "ingress"))
    n = again.recover()
    # Live are the records of the two halves last written (the older ones were overwritten
    # under a new generation): at most 10, the newest among them, each byte for byte.
    assert 5 < n <= 10
    back = [p for p in sent if p.exists()]
    assert len(back) == n and list(sent)[-n:] == back
    assert all(p.read_bytes() == sent[p] for p in back)
    again.close()


def _records(path: Path) -> list[int]:
    """End offsets of the live records of a journal file."""
    j = Journal.open(path)
    assert j is not None
    ends = []
    for h in sorted((0, 1), key=lambda x: j.gens[x]):
        pos = receive._BLOCK
        while True:
            raw = os.pread(j.fd, receive._REC.size, h * j.half + pos)
            magic, gen, mlen, dlen, _crc = receive._REC.unpack(raw)
            if magic != receive._REC_MAGIC or gen != j.gens[h]:
                break
            pos += receive._REC.size + mlen + dlen
            ends.append(h * j.half + pos)
    j.close()
    return ends


def test_a_study_written_back_after_its_job_is_not_burned_again(tmp_path: Path) -> None:
    """SIGKILL after a received study became a job: the next start writes the study's journal
    records back into a study folder; its claim finds every instance already in a job and
    drops them: no second job, no folder left."""
    from conftest import make_corpus
    from ingress_support import CD_ROUTE, free_port, ingress_config, storescu, wait_listening
    from test_service_support import Service, write_config

    make_corpus(tmp_path / "c", "--patients", "1", "--studies", "1", "--series", "1",
                "--images", "3", "--rows", "32", "--cols", "32", "--seed", "21")
    files = sorted((tmp_path / "c").rglob("*.dcm"))
    port = free_port()
    cfg = write_config(tmp_path / "mediasvc.toml",
                       extra=ingress_config(port, quiet=0.5, routes=CD_ROUTE, mcm=False))
    svc = Service(tmp_path / "root", cfg).start()
    try:
        wait_listening(svc.root)
        assert storescu(port, files).returncode == 0
        done = svc.root / "done"
        svc.wait_for(lambda: any(done.glob("*/report.json")), 90, "the study's job")
        svc.kill()
        svc.start()
        wait_listening(svc.root)
        log = svc.log_path.read_text()
        assert "3 acknowledged instance(s) written again from the journals" in log
        studies = svc.root / "ingress" / "studies"
        svc.wait_for(lambda: not any(studies.rglob("*.dcm")), 30, "the written-back study "
                     "to be dropped")
        time.sleep(2)
        assert len(list(done.glob("*/report.json"))) == 1
        assert not any((svc.root / "spool").iterdir())
    finally:
        svc.close()
