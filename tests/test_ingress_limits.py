"""Ingress security and limits, each against a real `mediasvc serve`: size caps and the
free-space check (0xA700 Out of Resources), DICOM TLS with a certificate made by openssl, and
configuration errors that name file, key and value."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mediasvc, run
from dicom_factory import make_image
from ingress_support import CD_ROUTE, free_port, ingress_config, wait_listening
from pydicom import dcmread
from pynetdicom import AE
from test_service_support import Service, write_config

CT = "1.2.840.10008.5.1.4.1.1.2"


def _service(base: Path, extra_ingress: str = "", port: int | None = None,
             tls: str = "") -> Service:
    port = port or free_port()
    cfg = write_config(base / "mediasvc.toml", extra=ingress_config(
        port, routes=CD_ROUTE + tls, mcm=False, quiet=3600, extra=extra_ingress))
    s = Service(base / "root", cfg).start()
    s.port = port  # type: ignore[attr-defined]
    wait_listening(s.root)
    return s


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Service]:
    s = _service(tmp_path, 'max_instance_size = "20k"\nmin_free = "1M"')
    yield s
    s.stop()
    s.close()


def _send(port: int, files: list[Path], ssl_ctx: ssl.SSLContext | None = None,
          ) -> list[int]:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CT)
    tls = (ssl_ctx, "127.0.0.1") if ssl_ctx is not None else None
    assoc = ae.associate("127.0.0.1", port, ae_title="BURN_CD", tls_args=tls)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dcmread(f)).Status) for f in files]
    finally:
        assoc.release()


def test_instance_over_the_cap_is_refused_with_a700(capped: Service, tmp_path: Path) -> None:
    small = tmp_path / "small.dcm"
    big = tmp_path / "big.dcm"
    make_image(small, rows=64, cols=64)            # 8 KB of pixels
    make_image(big, rows=128, cols=128, seed=1)    # 32 KB of pixels
    assert _send(capped.port, [small, big]) == [0x0000, 0xA700]  # type: ignore[attr-defined]
    stored = list((capped.root / "ingress" / "studies").rglob("*.dcm"))
    assert [p.stem for p in stored] == [str(dcmread(small).SOPInstanceUID)]
    assert not any((capped.root / "ingress" / "tmp").rglob("*.part"))


def test_full_disk_is_refused_with_a700_not_filled(tmp_path: Path) -> None:
    s = _service(tmp_path, 'min_free = "1000T"')
    try:
        f = tmp_path / "one.dcm"
        make_image(f)
        assert _send(s.port, [f]) == [0xA700]  # type: ignore[attr-defined]
        assert not list((s.root / "ingress" / "studies").rglob("*.dcm"))
        assert "out of disk space" in s.log() or "spool disk" in s.log()
    finally:
        s.stop()
        s.close()


def test_dicom_tls_listener(tmp_path: Path) -> None:
    key, crt = tmp_path / "scp.key", tmp_path / "scp.crt"
    r = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", crt, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1"])
    assert r.returncode == 0, r.stderr
    tls_port = free_port()
    s = _service(tmp_path, tls=f"""
[ingress.tls]
certificate = "{crt}"
private_key = "{key}"
port = {tls_port}
""")
    try:
        f = tmp_path / "one.dcm"
        make_image(f)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(crt))
        assert _send(tls_port, [f], ctx) == [0x0000]
        assert [p.stem for p in (s.root / "ingress" / "studies").rglob("*.dcm")] == [
            str(dcmread(f).SOPInstanceUID)]
        # Plain DICOM to the TLS port gets no association.
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CT)
        ae.acse_timeout = ae.network_timeout = 5
        assoc = ae.associate("127.0.0.1", tls_port, ae_title="BURN_CD")
        assert not assoc.is_established
    finally:
        s.stop()
        s.close()


@pytest.mark.parametrize(("route", "key", "words"), [
    ('name = "x"\naction = "export"\nprofile = "NOPE"', "ingress.route[0].profile",
     "not one of [export] profiles"),
    ('name = "x"\naction = "burn"', "ingress.route[0].action", "must be one of"),
    ('name = "x"\naction = "import"\nprofile = "STD-GEN-CD"', "ingress.route[0].profile",
     "does not apply"),
    ('name = "x"\naction = "print"\nprinter = "none"', "ingress.route[0].printer",
     "no [printers.NAME]"),
])
def test_bad_route_fails_serve_naming_file_key_value(tmp_path: Path, route: str, key: str,
                                                     words: str) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(f"[ingress]\nport = {free_port()}\n[[ingress.route]]\n{route}\n")
    proc = mediasvc("serve", "--config", cfg, "--root", tmp_path / "root", timeout=60)
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and key in proc.stderr and words in proc.stderr
