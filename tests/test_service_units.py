"""Service parts on their own: sd_notify on a real socket, settling, job.toml, config."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from mediasvc.errors import ConfigError
from mediasvc.jobqueue import Priority
from mediasvc.service.config import load_service_config, parse_job_toml
from mediasvc.service.sdnotify import Notifier, watchdog_interval
from mediasvc.service.watcher import candidate_of, discover, signature


def test_sd_notify_over_a_real_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.settimeout(2)
        n = Notifier(str(path))
        assert n.ready("0 queued")
        assert s.recv(4096).decode().split("\n") == ["READY=1", "STATUS=0 queued",
                                                     f"MAINPID={os.getpid()}"]
        assert n.watchdog()
        assert s.recv(4096) == b"WATCHDOG=1"
        assert n.stopping("bye")
        assert s.recv(4096) == b"STOPPING=1\nSTATUS=bye"


def test_sd_notify_abstract_socket_and_no_socket() -> None:
    name = f"mediasvc-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        assert Notifier("@" + name).status("hello")
        assert s.recv(4096) == b"STATUS=hello"
    off = Notifier("")
    assert not off.enabled and not off.ready("x")


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None  # meant for another process


def test_signature_sees_growth_and_not_symlink_targets(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "a.dcm").write_bytes(b"x" * 10)
    s1 = signature(job)
    assert s1 == signature(job)
    with (job / "a.dcm").open("ab") as fh:
        fh.write(b"y")
    s2 = signature(job)
    assert s1 is not None and s2 is not None
    assert s2 != s1 and s2[1] == s1[1] + 1
    outside = tmp_path / "big"
    outside.write_bytes(b"z" * 1000)
    os.symlink(outside, job / "link")
    s3 = signature(job)
    assert s3 is not None and s3[1] < s2[1] + 1000  # the link, not its target, is measured
    assert signature(tmp_path / "gone") is None


def test_candidates_from_event_paths_and_listing(tmp_path: Path) -> None:
    cfg = load_service_config(None, tmp_path)
    d = cfg.drop
    c = candidate_of(cfg, str(d / "export" / "STD-GEN-CD" / "job1" / "sub" / "x.dcm"))
    assert c is not None and (c.kind, c.group, c.path) == ("export", "STD-GEN-CD",
                                                           d / "export" / "STD-GEN-CD" / "job1")
    c = candidate_of(cfg, str(d / "import" / "disc.iso.ready"))
    assert c is not None and c.path == d / "import" / "disc.iso"
    assert candidate_of(cfg, str(d / "export" / "STD-GEN-CD" / ".job1.tmp" / "x")) is None
    assert candidate_of(cfg, str(tmp_path / "elsewhere")) is None
    (d / "print" / "laser" / "f1").mkdir(parents=True)
    (d / "import").mkdir(parents=True)
    (d / "import" / "a.iso").write_bytes(b"")
    (d / "import" / "a.iso.ready").write_bytes(b"")
    (d / "import" / ".hidden").write_bytes(b"")
    found = {(c.kind, c.group, c.name) for c in discover(cfg)}
    assert found == {("print", "laser", "f1"), ("import", None, "a.iso")}


def test_job_toml_known_and_unknown_keys(tmp_path: Path) -> None:
    p = tmp_path / "job.toml"
    p.write_text('label = "Knee"\ncopies = 2\nweb = true\npriority = "HIGH"\n')
    opts = parse_job_toml(p, "export")
    assert opts.priority is Priority.HIGH and opts.values["copies"] == 2
    p.write_text('label = "Knee"\ncopiez = 2\n')
    with pytest.raises(ConfigError, match=r"job\.toml: copiez = 2: unknown key"):
        parse_job_toml(p, "export")
    p.write_text('copies = 0\n')
    with pytest.raises(ConfigError, match="copies = 0: must be >= 1"):
        parse_job_toml(p, "export")
    p.write_text('layout = "ct-4x5"\n')
    with pytest.raises(ConfigError, match="layout"):
        parse_job_toml(p, "export")          # a print key in an export job
    assert parse_job_toml(p, "print").values == {"layout": "ct-4x5"}


def test_config_paths_and_errors(tmp_path: Path) -> None:
    cfg_file = tmp_path / "svc.toml"
    cfg_file.write_text('root = "data"\n[paths]\nstore = "/srv/store"\n[export]\n'
                        'profiles = ["STD-GEN-CD"]\n')
    cfg = load_service_config(cfg_file)
    assert cfg.root == tmp_path / "data" and cfg.store == Path("/srv/store")
    assert cfg.export_profiles == ("STD-GEN-CD",)
    assert load_service_config(cfg_file, tmp_path / "other").drop == tmp_path / "other" / "drop"
    cfg_file.write_text('[export]\nprofiles = ["STD-NOPE"]\n')
    with pytest.raises(ConfigError, match=r"export\.profiles.*unknown media profile 'STD-NOPE'"):
        load_service_config(cfg_file)
    cfg_file.write_text('[burners.d]\ntarget = "floppy:/dev/fd0"\n')
    with pytest.raises(ConfigError, match=r"burners\.d\.target = 'floppy:/dev/fd0'"):
        load_service_config(cfg_file)
    cfg_file.write_text('[printers.p]\nae_title = "P"\nhost = "h"\nport = 70000\n')
    with pytest.raises(ConfigError, match=r"printers\.p\.port = 70000"):
        load_service_config(cfg_file)


def test_settle_time_is_honoured(tmp_path: Path) -> None:
    """The watcher calls back only after settle_seconds without change."""
    from mediasvc.service.spool import Candidate
    from mediasvc.service.watcher import Watcher

    cfg_file = tmp_path / "svc.toml"
    cfg_file.write_text("[watch]\nsettle_seconds = 0.6\ntick_seconds = 0.05\n"
                        'observer = "polling"\n')
    cfg = load_service_config(cfg_file, tmp_path / "root")
    for d in cfg.dirs():
        d.mkdir(parents=True, exist_ok=True)
    job = cfg.drop / "export" / "STD-GEN-CD" / "j"
    job.mkdir(parents=True)
    seen: list[tuple[Candidate, float, float]] = []
    w = Watcher(cfg, lambda c, at: seen.append((c, at, time.time())))
    w.start()
    try:
        t0 = time.time()
        last_write = 0.0
        for i in range(8):  # keeps changing for ~0.8 s: longer than the settle time
            (job / f"{i}.dcm").write_bytes(b"x" * 100)
            last_write = time.time()
            time.sleep(0.1)
        deadline = time.time() + 5
        while not seen and time.time() < deadline:
            time.sleep(0.02)
    finally:
        w.stop()
    assert len(seen) == 1, seen
    cand, settled_at, called = seen[0]
    assert cand.path == job
    assert called - last_write >= 0.6 - 0.01   # not before it settled (clock granularity)
    assert settled_at >= t0 + 0.6 and settled_at <= called
