"""The console as part of `mediasvc serve`: started at start-up with its URL in the log,
restarted when it dies, gone with the service; a print asked for through the API runs in the
service like a dropped one, against DCMTK's dcmprscp, and the printer's status the job saw is
what the console then shows (and a printer that is down is shown as such).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SHARED, mediasvc, run, stop_pid
from test_service_support import Service, write_config
from web_support import USERS, console_url, make_users, web_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def printer_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("dcmprscp") is None:
        pytest.fail("dcmprscp (dcmtk) is not installed")
    port = _free_port()
    work = tmp_path_factory.mktemp("dcmprscp")
    out = subprocess.run(["sh", str(SHARED / "print-peer" / "start_dcmprscp.sh"), str(work),
                          str(port)], capture_output=True, text=True, check=True)
    pid = int(out.stdout.strip().splitlines()[-1])
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port
    stop_pid(pid)


@pytest.fixture()
def svc(tmp_path: Path, printer_port: int, small_corpus: Path) -> Iterator[Service]:
    root = tmp_path / "root"
    r = mediasvc("import", small_corpus, "--store", root / "store")
    assert r.returncode == 0, r.stderr
    cfg = write_config(tmp_path / "svc.toml", retry_base=30, extra=f"""
[printers.laser]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {printer_port}
film_sizes = ["14INX17IN", "8INX10IN"]
dpi = 50
[printers.down]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {_free_port()}
timeout = 2
""", web=web_table(root))
    make_users(root)
    s = Service(root, cfg).start()
    yield s
    code = s.stop()
    s.close()
    assert code == 0, s.log()[-3000:]


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, auth=("oper1", USERS["oper1"][1]), timeout=60)


def _wait_job(c: httpx.Client, job: int, states: set[str],
              timeout: float = 90) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        d = c.get(f"/api/v1/jobs/{job}").json()
        if d["job"]["state"] in states:
            return d
        time.sleep(0.2)
    raise AssertionError(f"job {job} not {states} within {timeout} s: {d['job']}")


def test_print_from_the_store_and_the_printer_status_it_saw(svc: Service) -> None:
    url = console_url(svc.root)
    assert f"web console at {url}" in svc.log()
    with _client(url) as c:
        study = c.get("/api/v1/store/studies").json()["studies"][0]
        assert c.get("/api/v1/printers").json()[0]["last"] is None  # never contacted
        r = c.post("/api/v1/print", json={"study": study["key"], "printer": "laser",
                                          "layout": "mr-2x2"})
        assert r.status_code == 202, r.text
        d = _wait_job(c, r.json()["id"], {"done", "failed"})
        assert d["job"]["state"] == "done", d
        assert d["summary"] == ["printed 2 film(s) on laser"]  # 6 images, 2x2
        r = c.post("/api/v1/print", json={"study": study["key"], "printer": "down",
                                          "layout": "mr-2x2"})
        down = _wait_job(c, r.json()["id"], {"retrying", "failed"})
        printers = {p["name"]: p for p in c.get("/api/v1/printers").json()}
    # written by the print job (N-GET Printer of dcmprscp), read by the console
    assert printers["laser"]["last"]["state"] == "NORMAL"
    assert printers["laser"]["last"]["job"] == d["job"]["id"]
    assert printers["down"]["last"]["state"] == "error"
    assert "printer down" in printers["down"]["last"]["detail"]
    assert down["job"]["state"] == "retrying" and printers["down"]["waiting"] == 1
    # the print went to done/ like a dropped one, with its report
    report = json.loads((svc.root / "done" / d["job"]["name"] / "report.json").read_text())
    assert report["kind"] == "print" and report["group"] == "laser"


def test_console_is_restarted_and_dies_with_the_service(svc: Service) -> None:
    console_url(svc.root)
    first = json.loads((svc.root / "run" / "console.json").read_text())["pid"]
    os.kill(first, signal.SIGKILL)
    t0 = time.time()
    url = console_url(svc.root, after=t0)
    second = json.loads((svc.root / "run" / "console.json").read_text())["pid"]
    assert second != first
    assert "web console exited" in svc.log()
    with _client(url) as c:
        assert c.get("/api/v1/status").json()["service"]["running"] is True
    svc.kill()  # SIGKILL: no clean-up by the daemon; PR_SET_PDEATHSIG takes the console
    end = time.monotonic() + 20
    while time.monotonic() < end and run(["kill", "-0", str(second)]).returncode == 0:
        time.sleep(0.1)
    assert run(["kill", "-0", str(second)]).returncode != 0, "the console outlived the service"
    svc.start()  # for the fixture's orderly stop


def test_embedded_default_console_is_on_loopback_port_8104(tmp_path: Path) -> None:
    """README's command (`mediasvc serve --root ./var`, no config): the console on
    http://127.0.0.1:8104/ (checked without serving: tests never take fixed ports)."""
    code = ("from mediasvc.service.config import load_service_config as l; w = l().web; "
            "print(w.enabled, w.bind, w.port, w.url(), w.users)")
    r = run([sys.executable, "-c", code], cwd=tmp_path)
    assert r.stdout.split() == ["True", "127.0.0.1", "8104", "http://127.0.0.1:8104/",
                                str(tmp_path.resolve() / "var" / "web-users.toml")]


def test_tls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    from web_support import ConsoleProcess, tls

    cert, key = tmp_path / "console.pem", tmp_path / "console.key"
    r = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", key, "-out", cert])
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    cfg = write_config(tmp_path / "svc.toml", web=web_table(root) + (
        f'tls_cert = "{cert}"\ntls_key = "{key}"\n'))
    make_users(root)
    console = ConsoleProcess(cfg, root)
    url = console.start(verify=str(cert))
    try:
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=tls(str(cert)), auth=("viewer1", USERS["viewer1"][1])) as c:
            assert c.get(url + "api/v1/status").status_code == 200
            page = c.get(url + "login")
        assert "secure" in page.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port
            httpx.get(url.replace("https://", "http://") + "api/v1/status", timeout=5)
    finally:
        console.stop()


@pytest.mark.parametrize("table,message", [
    ('bind = "all"', "web.bind = 'all': must be an IP address"),
    ('tls_cert = "/x.pem"', "web.tls_key: tls_cert and tls_key go together"),
    ("port = 70000", "web.port = 70000: must be <= 65535"),
    ('import_devices = ["/etc/passwd"]', "is not a device under /dev/"),
    ("listen = 1", "web.listen = 1: unknown key"),
])
def test_web_config_errors_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    cfg = tmp_path / "svc.toml"
    cfg.write_text(f"[web]\n{table}\n")
    r = mediasvc("serve", "--config", cfg, "--root", tmp_path / "r")
    assert r.returncode == 2 and message in r.stderr, r.stderr
