"""The console's REST API over real HTTP: `python -m mediasvc.web` on a free port, against a
real queue (SQLite) with jobs made by the service's own functions and a real store filled by
`mediasvc import`. Every endpoint: statuses, validation (400 naming the field), 401/403, 404,
CSRF, and import paths that try to leave the allowed folders.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import mediasvc
from ingress_support import CD_ROUTE, ingress_config
from PIL import Image
from test_service_support import write_config
from web_support import USERS, ConsoleProcess, make_users, web_table

from mediasvc.jobqueue import JobQueue, State
from mediasvc.service import spool
from mediasvc.service.config import ServiceConfig, load_service_config
from mediasvc.service.daemon import open_queue

OWNER = "test:1:1"
MISSING_DEVICE = "/dev/mediasvc-test-no-such-sr9"

# Every endpoint of /api/v1 (method, path): the OpenAPI description must list exactly these.
ENDPOINTS = {
    ("get", "/api/v1/status"), ("get", "/api/v1/jobs"), ("get", "/api/v1/jobs/{job_id}"),
    ("post", "/api/v1/jobs/{job_id}/cancel"), ("post", "/api/v1/jobs/{job_id}/retry"),
    ("post", "/api/v1/import"), ("get", "/api/v1/import/sources"), ("post", "/api/v1/print"),
    ("get", "/api/v1/drops"), ("get", "/api/v1/ingress"), ("get", "/api/v1/burners"),
    ("get", "/api/v1/printers"), ("get", "/api/v1/layouts"),
    ("get", "/api/v1/store/patients"), ("get", "/api/v1/store/studies"),
    ("post", "/api/v1/store/search"), ("get", "/api/v1/store/studies/{key}"),
    ("get", "/api/v1/store/studies/{key}/mds"), ("get", "/api/v1/store/series/{key}/thumbnail"),
}


@dataclass
class Site:
    url: str
    cfg: ServiceConfig
    q: JobQueue
    jobs: dict[str, int]
    media: Path
    outside: Path
    console: ConsoleProcess

    def client(self, user: str | None = "oper1") -> httpx.Client:
        auth = (user, USERS[user][1]) if user else None
        return httpx.Client(base_url=self.url, auth=auth, timeout=60)


def _export_job(cfg: ServiceConfig, q: JobQueue, name: str) -> int:
    def fill(d: Path) -> None:
        (d / "a.dcm").write_bytes(b"not really DICOM")

    return spool.enqueue(cfg, q, "export", "STD-GEN-CD", name, fill).id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("webapi")
    root = base / "root"
    media = base / "media"
    shutil.copytree(small_corpus, media / "disc1")
    outside = base / "outside"
    outside.mkdir()
    (media / "escape").symlink_to(outside)  # a link inside the allowed folder, pointing out
    hot = base / "hot"
    hot.mkdir()
    extra = f"""
[burners.robot]
target = "ptburn:{hot}"
[printers.laser]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = 9
"""
    cfg_path = write_config(base / "svc.toml", extra=extra, web=web_table(
        root, import_folders=[media], import_devices=[MISSING_DEVICE]))
    make_users(root)
    r = mediasvc("import", small_corpus, "--store", root / "store")
    assert r.returncode == 0, r.stderr
    cfg = load_service_config(cfg_path, root)
    for d in cfg.dirs():
        d.mkdir(parents=True, exist_ok=True)
    q = open_queue(cfg)
    jobs: dict[str, int] = {}
    # Jobs in every state, made and moved by the service's own functions.
    jobs["failed"] = _export_job(cfg, q, "broken")
    assert q.claim(OWNER) is not None
    spool.finalize(cfg, q, q.fail(jobs["failed"], OWNER, "2 of 2 files rejected", result={
        "problems": ["x/a.dcm: not a DICOM file", "x/b.dcm: truncated pixel data"]}))
    jobs["done"] = _export_job(cfg, q, "finished")
    assert q.claim(OWNER) is not None
    spool.finalize(cfg, q, q.complete(jobs["done"], OWNER, {"summary": ["ISO image: x.iso"]}))
    jobs["queued"] = _export_job(cfg, q, "waiting")
    jobs["to_cancel"] = _export_job(cfg, q, "waiting-too")
    q.set_device("printer:laser", "WARNING", "FILM LOW",
                 events=["printer status WARNING: FILM LOW"], job_id=jobs["done"])
    q.set_device(cfg.burners["robot"].resource, "error", "the publisher refused the disc")
    console = ConsoleProcess(cfg_path, root)
    url = console.start()
    yield Site(url, cfg, q, jobs, media, outside, console)
    console.stop()


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert body["error"]
    return body


# -- description, authentication, roles ------------------------------------------------------

def test_openapi_describes_every_endpoint(site: Site) -> None:
    spec = httpx.get(site.url + "api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    described = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert described == ENDPOINTS
    body = spec["paths"]["/api/v1/import"]["post"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][ref]["required"] == ["source"]
    params = {p["name"] for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert params == {"state", "kind", "before", "limit"}


@pytest.mark.parametrize("method,path", sorted(ENDPOINTS))
def test_every_endpoint_needs_a_user(site: Site, method: str, path: str) -> None:
    url = path.replace("{job_id}", str(site.jobs["done"])).replace("{key}", "1")
    with site.client(None) as c:
        r = c.request(method, url, json={})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Basic")
    with httpx.Client(base_url=site.url, auth=("oper1", "wrong-password")) as c:
        assert c.request(method, url, json={}).status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/jobs/{queued}/cancel", "/api/v1/jobs/{failed}/retry",
                                  "/api/v1/import", "/api/v1/print"])
def test_actions_need_an_operator(site: Site, path: str) -> None:
    url = path.format(**site.jobs)
    with site.client("viewer1") as c:
        body = _error(c.post(url, json={}), 403)
    assert "operator" in body["error"]
    assert site.q.get(site.jobs["queued"]).state is State.QUEUED


def test_a_viewer_reads(site: Site) -> None:
    with site.client("viewer1") as c:
        r = c.get("/api/v1/status")
    assert r.status_code == 200
    assert r.json()["counts"]["failed"] >= 1


# -- jobs ---------------------------------------------------------------------------------------

def test_jobs_list_filters_and_pages(site: Site) -> None:
    with site.client("viewer1") as c:
        everything = c.get("/api/v1/jobs").json()
        failed = c.get("/api/v1/jobs", params={"state": "failed"}).json()
        both = c.get("/api/v1/jobs", params=[("state", "failed"), ("state", "done")]).json()
        first = c.get("/api/v1/jobs", params={"limit": 1}).json()
        second = c.get("/api/v1/jobs", params={"limit": 1, "before": first["next_before"]})
        imports = c.get("/api/v1/jobs", params={"kind": "import"}).json()
        assert _error(c.get("/api/v1/jobs", params={"limit": 0}), 400)["field"] == "limit"
        assert _error(c.get("/api/v1/jobs", params={"state": "lost"}), 400)["field"] == "state.0"
        assert _error(c.get("/api/v1/jobs", params={"kind": "burn"}), 400)["field"] == "kind"
    ids = [j["id"] for j in everything["jobs"]]
    assert ids == sorted(ids, reverse=True) and set(site.jobs.values()) <= set(ids)
    assert [j["state"] for j in failed["jobs"]] == ["failed"] * len(failed["jobs"])
    assert site.jobs["failed"] in [j["id"] for j in failed["jobs"]]
    assert {j["state"] for j in both["jobs"]} == {"failed", "done"}
    assert len(first["jobs"]) == 1 and first["jobs"][0]["id"] == ids[0]
    assert second.json()["jobs"][0]["id"] == ids[1]
    assert all(j["kind"] == "import" for j in imports["jobs"])
    assert any(j["id"] == site.jobs["queued"] for j in everything["active"])


def test_job_with_its_report(site: Site) -> None:
    with site.client("viewer1") as c:
        d = c.get(f"/api/v1/jobs/{site.jobs['failed']}").json()
        assert _error(c.get("/api/v1/jobs/999999"), 404)["error"] == "job 999999 does not exist"
        assert _error(c.get("/api/v1/jobs/abc"), 400)["field"] == "job_id"
    assert d["job"]["state"] == "failed" and d["job"]["error"] == "2 of 2 files rejected"
    # the published report (failed/broken/report.json) with every problem file and its reason
    assert d["report"]["output"] == str(site.cfg.failed / "broken")
    assert d["problems"] == [{"file": "x/a.dcm", "reason": "not a DICOM file"},
                             {"file": "x/b.dcm", "reason": "truncated pixel data"}]
    assert [h["state"] for h in d["report"]["history"]] == ["queued", "running", "failed"]
    assert d["can_retry"] and not d["can_cancel"]


def test_cancel_and_retry(site: Site) -> None:
    job = site.jobs["to_cancel"]
    with site.client() as c:
        r = c.post(f"/api/v1/jobs/{job}/cancel", json={})
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        # like `mediasvc jobs cancel`: the input is kept under failed/ for a retry
        assert (site.cfg.failed / "waiting-too" / "input" / "a.dcm").is_file()
        assert _error(c.post(f"/api/v1/jobs/{job}/cancel", json={}), 409)["error"].endswith(
            "nothing to cancel")
        r = c.post(f"/api/v1/jobs/{job}/retry", json={})
        assert r.status_code == 200 and r.json()["state"] == "queued"
        uid = site.q.get(job).uid
        assert (site.cfg.spool / uid / "input" / "a.dcm").is_file()
        assert not (site.cfg.failed / "waiting-too").exists()
        assert _error(c.post(f"/api/v1/jobs/{site.jobs['done']}/retry", json={}), 409)
        assert _error(c.post("/api/v1/jobs/999999/cancel", json={}), 404)
        assert _error(c.post("/api/v1/jobs/999999/retry", json={}), 404)
    assert [e.message for e in site.q.history(job)][-2:] == ["cancelled", "retry requested"]


def test_csrf(site: Site) -> None:
    job = site.jobs["queued"]
    with site.client() as c:  # Basic: only JSON (a cross-site form cannot send it)
        r = c.post(f"/api/v1/jobs/{job}/cancel", data={"x": "1"})
        assert "JSON" in _error(r, 403)["error"]
        r = c.post(f"/api/v1/jobs/{job}/cancel", json={},
                   headers={"Origin": "http://evil.example"})
        assert "cross-site" in _error(r, 403)["error"]
    with httpx.Client(base_url=site.url, timeout=60) as c:  # a browser's session
        page = c.get("/login").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/login", data={"username": "oper1", "password": USERS["oper1"][1],
                                   "csrf": token, "next": "/"})
        assert r.status_code == 303
        assert "CSRF" in _error(c.post(f"/api/v1/jobs/{job}/cancel", json={}), 403)["error"]
        assert "CSRF" in _error(c.post(f"/api/v1/jobs/{job}/cancel", json={},
                                       headers={"X-CSRF-Token": "forged"}), 403)["error"]
        session_token = c.get("/").text.split('name="csrf" value="')[1].split('"')[0]
        r = c.post(f"/api/v1/jobs/{job}/cancel", json={},
                   headers={"X-CSRF-Token": session_token})
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        r = c.post("/login", data={"username": "oper1", "password": USERS["oper1"][1],
                                   "next": "/"})
        assert r.status_code == 403  # the login form has its token too
    assert site.q.get(job).state is State.CANCELLED


# -- import and print ---------------------------------------------------------------------------

def test_import_of_an_allowed_medium_is_queued(site: Site) -> None:
    with site.client() as c:
        r = c.post("/api/v1/import", json={"source": str(site.media / "disc1"),
                                           "label": "CD of today", "priority": "HIGH"})
    assert r.status_code == 202, r.text
    job = site.q.get(r.json()["id"])
    assert job.kind == "import" and job.state is State.QUEUED and job.resource == "store"
    assert job.payload["source"] == str((site.media / "disc1").resolve())
    assert job.priority.name == "HIGH"
    toml = (site.cfg.spool / job.uid / "input" / "job.toml").read_text()
    assert 'label = "CD of today"' in toml
    json.loads((site.cfg.spool / job.uid / "claim.json").read_text())  # as a drop's claim


@pytest.mark.parametrize("source,reason", [
    ("{media}/../outside", "not a configured medium nor under an allowed folder"),
    ("{media}/escape", "not a configured medium nor under an allowed folder"),
    ("{media}/disc1/../../outside", "not a configured medium nor under an allowed folder"),
    ("/etc/passwd", "not a configured medium nor under an allowed folder"),
    ("{media}/none.iso", "no such ISO image or folder"),
    ("relative/disc.iso", "must be an absolute path"),
    (MISSING_DEVICE, "no such device"),
])
def test_import_paths_outside_the_allowed_ones_are_refused(site: Site, source: str,
                                                           reason: str) -> None:
    before = site.q.counts()["queued"]
    with site.client() as c:
        r = c.post("/api/v1/import", json={"source": source.format(media=site.media)})
    body = _error(r, 400)
    assert body["field"] == "source" and reason in body["error"]
    assert site.q.counts()["queued"] == before


@pytest.mark.parametrize("payload,field", [
    ({}, "source"), ({"source": ""}, "source"), ({"source": "/x", "priority": "URGENT"},
                                                 "priority"),
    ({"source": "/x", "label": "a\nb"}, "label"), ({"source": "/x", "color": True}, "color"),
])
def test_import_validation_names_the_field(site: Site, payload: dict[str, Any],
                                           field: str) -> None:
    with site.client() as c:
        assert _error(c.post("/api/v1/import", json=payload), 400)["field"] == field


def _study_keys(site: Site) -> list[int]:
    with site.client("viewer1") as c:
        return [s["key"] for s in c.get("/api/v1/store/studies").json()["studies"]]


def test_print_of_a_stored_study_is_queued_with_its_files(site: Site) -> None:
    key = _study_keys(site)[0]
    with site.client() as c:
        study = c.get(f"/api/v1/store/studies/{key}").json()
        first = study["series"][0]["key"]
        r = c.post("/api/v1/print", json={"study": key, "printer": "laser",
                                          "layout": "ct-4x5", "series": [first], "copies": 2})
    assert r.status_code == 202, r.text
    job = site.q.get(r.json()["id"])
    assert job.kind == "print" and job.payload["group"] == "laser"
    assert job.resource == "printer:laser"
    inp = site.cfg.spool / job.uid / "input"
    files = sorted(inp.glob("*.dcm"))
    assert len(files) == study["series"][0]["n_instances"]
    store_inodes = {p.stat().st_ino for p in (site.cfg.store / "objects").rglob("*")
                    if p.is_file()}
    assert {f.stat().st_ino for f in files} <= store_inodes  # hard links, no copies
    toml = (inp / "job.toml").read_text()
    assert 'layout = "ct-4x5"' in toml and "copies = 2" in toml


@pytest.mark.parametrize("change,status,field", [
    ({"printer": "nosuch"}, 400, "printer"), ({"layout": "../../etc/x"}, 400, "layout"),
    ({"copies": 0}, 400, "copies"), ({"study": 0}, 400, "study"),
    ({"study": 999999}, 404, None), ({"series": [999999]}, 404, None),
])
def test_print_validation(site: Site, change: dict[str, Any], status: int,
                          field: str | None) -> None:
    payload = {"study": _study_keys(site)[0], "printer": "laser", "layout": "ct-4x5", **change}
    with site.client() as c:
        body = _error(c.post("/api/v1/print", json=payload), status)
    assert body.get("field") == field


# -- folders and devices --------------------------------------------------------------------

def test_drops_ingress_burners_printers_layouts_sources(site: Site) -> None:
    (site.cfg.drop / "import" / "disc.iso").write_bytes(b"")
    with site.client("viewer1") as c:
        drops = c.get("/api/v1/drops").json()
        ingress = c.get("/api/v1/ingress").json()
        burners = c.get("/api/v1/burners").json()
        printers = c.get("/api/v1/printers").json()
        layouts = c.get("/api/v1/layouts").json()
        sources = c.get("/api/v1/import/sources").json()
    (site.cfg.drop / "import" / "disc.iso").unlink()
    kinds = {(d["kind"], d["group"]): d for d in drops}
    assert ("export", "STD-GEN-CD") in kinds and ("print", "laser") in kinds
    assert kinds[("import", None)]["waiting"] == 1
    assert ingress["enabled"] is False and ingress["routes"] == []
    assert burners[0]["name"] == "robot" and burners[0]["kind"] == "publisher"
    assert burners[0]["last"]["state"] == "error" and not burners[0]["busy"]
    assert printers[0]["name"] == "laser" and printers[0]["last"]["state"] == "WARNING"
    assert printers[0]["last"]["events"] == ["printer status WARNING: FILM LOW"]
    assert {"ct-4x5", "mr-2x2"} <= {lay["name"] for lay in layouts}
    assert sources["devices"] == [MISSING_DEVICE]
    assert str(site.media / "disc1") in sources["folders"][0]["entries"]


def test_ingress_routes_waiting_studies_and_mcm_requests(tmp_path: Path) -> None:
    """With [ingress], /api/v1/ingress and the devices page show what the ingress process
    left: its routes, a study in its quiet period, a media creation request (Annex S)."""
    from mediasvc.ingress.state import mcm_put

    root = tmp_path / "root"
    cfg_path = write_config(tmp_path / "svc.toml", extra=ingress_config(0, routes=CD_ROUTE),
                            web=web_table(root))
    make_users(root)
    cfg = load_service_config(cfg_path, root)
    study = cfg.ingress_dir / "studies" / "cd" / "1.2.826.0.1.3680043.2.1125.1"
    study.mkdir(parents=True)
    for n in range(3):
        (study / f"1.2.826.0.1.3680043.2.1125.1.{n}.dcm").write_bytes(b"")
    open_queue(cfg)
    mcm_put(cfg.db, "1.2.826.0.1.3680043.2.1125.9", "MODALITY1",
            {"referenced": [["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"]]})
    console = ConsoleProcess(cfg_path, root)
    url = console.start()
    try:
        with httpx.Client(base_url=url, auth=("viewer1", USERS["viewer1"][1]),
                          timeout=60) as c:
            ing = c.get("/api/v1/ingress").json()
            page = c.get("/devices").text
    finally:
        console.stop()
    assert ing["enabled"] is True
    assert [(r["name"], r["called_ae"], r["action"]) for r in ing["routes"]] == [
        ("cd", "BURN_CD", "export")]
    assert [(w["route"], w["instances"]) for w in ing["waiting"]] == [("cd", 3)]
    assert [(m["calling_ae"], m["status"], m["instances"]) for m in ing["mcm_requests"]] == [
        ("MODALITY1", "IDLE", 1)]
    tables = dict(re.findall(r'<table id="(ingress-[a-z]+)">(.*?)</table>', page, re.S))
    assert sorted(tables) == ["ingress-mcm", "ingress-routes", "ingress-waiting"]
    cells = {k: re.findall(r"<td[^>]*>(.*?)</td>", v) for k, v in tables.items()}
    assert cells["ingress-routes"][:3] == ["cd", "BURN_CD", "export"]
    assert cells["ingress-waiting"] == ["cd", "3"]
    assert cells["ingress-mcm"][:4] == ["MODALITY1", "1", "IDLE", "NORMAL"]


# -- the store ------------------------------------------------------------------------------

def test_store_lists_page_and_search(site: Site) -> None:
    with site.client("viewer1") as c:
        patients = c.get("/api/v1/store/patients").json()
        page = c.get("/api/v1/store/studies", params={"limit": 1, "offset": 1}).json()

        def search(**body: Any) -> list[str]:
            r = c.post("/api/v1/store/search", json=body)
            assert r.status_code == 200, r.text
            return [s["patient_id"] for s in r.json()["studies"]]

        assert search(name="doe patient001") == ["PID00001"]
        assert search(name="PATIENT00") == ["PID00001", "PID00000"]
        assert search(name="100%") == []  # a literal, not a LIKE wildcard
        assert search(patient_id="PID0000") == ["PID00001", "PID00000"]
        assert search(patient_id="PID00000") == ["PID00000"]
        assert search(accession="ACC000100") == ["PID00001"]
        assert search(date_from="2026-01-15", date_to="2026-01-15") == ["PID00001", "PID00000"]
        assert search(date_to="2025-12-31") == []
        for body, field in (({"date_from": "15.01.2026"}, "date_from"),
                            ({"limit": 500}, "limit"), ({"name": "x" * 65}, "name"),
                            ({"patient": "PID00000"}, "patient")):
            assert _error(c.post("/api/v1/store/search", json=body), 400)["field"] == field
    assert patients["total"] == 2 and {p["n_studies"] for p in patients["patients"]} == {1}
    assert page["total"] == 2 and len(page["studies"]) == 1
    assert page["totals"] == {"patients": 2, "studies": 2, "series": 4, "instances": 12}


def test_study_mds_and_thumbnails(site: Site) -> None:
    key = _study_keys(site)[0]
    with site.client("viewer1") as c:
        study = c.get(f"/api/v1/store/studies/{key}").json()
        mds = c.get(f"/api/v1/store/studies/{key}/mds").json()
        r = c.get(f"/api/v1/store/studies/{key}/mds", params={"format": "csv"})
        png = c.get(f"/api/v1/store/series/{study['series'][0]['key']}/thumbnail")
        assert _error(c.get("/api/v1/store/studies/999999"), 404)
        assert _error(c.get("/api/v1/store/studies/999999/mds"), 404)
        assert _error(c.get("/api/v1/store/series/999999/thumbnail"), 404)
        assert _error(c.get(f"/api/v1/store/studies/{key}/mds", params={"format": "xml"}),
                      400)["field"] == "format"
        assert _error(c.get(f"/api/v1/store/studies/{key}/mds", params={"lang": "xx"}),
                      400)["field"] == "lang"
    assert study["study"]["n_series"] == 2 and len(study["series"]) == 2
    assert sum(s["n_instances"] for s in study["series"]) == study["study"]["n_instances"] == 6
    assert mds[0]["study_uid"] == study["study"]["study_uid"]
    items = {e["key"]: e for e in mds[0]["items"]}
    assert any(e["status"] == "present" for e in items.values())
    assert r.headers["content-disposition"] == f'attachment; filename="mds-study-{key}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and {row["study_uid"] for row in rows} == {study["study"]["study_uid"]}
    assert {"study", "series", "image"} == {row["entity"] for row in rows}
    img = Image.open(io.BytesIO(png.content))
    assert png.headers["content-type"] == "image/png" and img.mode == "L"
    assert max(img.size) <= 128 and len(set(img.tobytes())) > 1  # a picture, not a blank


def test_no_patient_identifier_reaches_the_log(site: Site) -> None:
    """Searches and study pages named patients; the console's INFO log names none."""
    with site.client("viewer1") as c:
        c.post("/api/v1/store/search", json={"name": "DOE", "patient_id": "PID00000",
                                             "accession": "ACC000000"})
        key = _study_keys(site)[0]
        c.get(f"/api/v1/store/studies/{key}/mds")
        c.get("/api/v1/store/studies/DOE^PATIENT000")  # an identifier typed into a URL
    text = site.console.text()
    assert "POST /api/v1/store/search 200" in text
    assert "GET /api/v1/store/studies/{key}/mds 200" in text
    for word in ("DOE", "PATIENT0", "PID0000", "ACC0000"):
        assert word not in text, word
    assert os.stat(site.cfg.web.users).st_mode & 0o077 == 0  # hashes: owner only
