"""The console in a real browser: headless Chromium (Debian's, through its chromedriver and
selenium) against `mediasvc serve` on a temp root, used as a person would: sign in, drop an
export and watch the queue page show it running then done, open its report, read a rejected
file's reason, cancel and retry a job with the keyboard, import a medium from the devices
page, search the store and open the study with its thumbnails and MDS.

Every step waits for what the page shows (explicit waits, generous timeouts); a failed step
saves a screenshot and the page's HTML under the test's tmp folder and names them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_corpus
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_service_support import Service, drop_folder, write_config
from web_support import USERS, console_url, make_users, web_table

from mediasvc.service.config import load_service_config
from mediasvc.service.daemon import open_queue

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Flags this machine needs: without the background-networking ones Chromium's own connections
# are refused by the closed network and slow everything down.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,800"]
WAIT = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail("chromium and chromium-driver are not installed (scripts/setup.sh)")
    profile = tempfile.mkdtemp(prefix="mediasvc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Steps:
    """Named steps; a failing one leaves a screenshot and the HTML of the page."""

    def __init__(self, driver: webdriver.Chrome, folder: Path) -> None:
        self.d = driver
        self.folder = folder

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            self.folder.mkdir(parents=True, exist_ok=True)
            shot = self.folder / f"{name}.png"
            with contextlib.suppress(WebDriverException):
                self.d.save_screenshot(str(shot))
                (self.folder / f"{name}.html").write_text(self.d.page_source)
            raise AssertionError(f"step {name!r} failed ({exc!r}); screenshot: {shot}") from exc

    def until(self, what: Callable[[webdriver.Chrome], Any], timeout: float = WAIT) -> Any:
        """Wait for ``what`` to give something true; the live refresh replaces elements, so a
        stale or missing one only means: look again."""
        return WebDriverWait(self.d, timeout, poll_frequency=0.2, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(what)


def _row(d: webdriver.Chrome, table: str, name: str) -> Any:
    return d.find_element(By.XPATH, f"//table[@id='{table}']//tr[td[@class='name' and "
                                     f"normalize-space()='{name}']]")


def _state_in(table: str, name: str, state: str) -> Callable[[webdriver.Chrome], Any]:
    def check(d: webdriver.Chrome) -> Any:
        row = _row(d, table, name)
        return row if row.get_attribute("data-state") == state else False
    return check


def _press(s: Steps, locate: Callable[[webdriver.Chrome], Any]) -> None:
    """Focus a button and press Enter, as a keyboard user does (again if it was replaced)."""
    def press(d: webdriver.Chrome) -> bool:
        locate(d).send_keys(Keys.ENTER)
        return True
    s.until(press)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    base = tmp_path_factory.mktemp("browser-corpora")
    out = {}
    for name, seed in (("export", "7"), ("import", "11")):
        make_corpus(base / name, "--patients", "1", "--studies", "1", "--series", "2",
                    "--images", "3", "--rows", "64", "--cols", "64", "--seed", seed)
        out[name] = sorted(p for p in (base / name).rglob("*") if p.is_file())
    return out


def test_a_user_runs_the_burner_host_from_the_browser(
        tmp_path: Path, browser: webdriver.Chrome, corpora: dict[str, list[Path]]) -> None:
    d, s = browser, Steps(browser, tmp_path / "screenshots")
    hot = tmp_path / "ptburn"
    hot.mkdir()
    media = tmp_path / "media"
    (media / "disc-of-today").mkdir(parents=True)
    for f in corpora["import"]:
        shutil.copy(f, media / "disc-of-today" / f.name)
    root = tmp_path / "root"
    cfg = write_config(tmp_path / "svc.toml", workers=2, settle=0.3, extra=f"""
[burners.robot]
target = "ptburn:{hot}"
verify = false
[printers.down]
ae_title = "PRINTRIG"
host = "127.0.0.1"
port = {_free_port()}
timeout = 2
""", web=web_table(root, import_folders=[media]))
    make_users(root)
    svc = Service(root, cfg).start()
    emulator: subprocess.Popen[bytes] | None = None
    try:
        url = console_url(root)
        with s("sign-in"):
            d.get(url)
            s.until(lambda d: d.find_element(By.ID, "username"))
            d.find_element(By.ID, "username").send_keys("oper1")
            d.find_element(By.ID, "password").send_keys(USERS["oper1"][1] + Keys.ENTER)
            s.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Queue")
            # keyboard: the first Tab lands on the skip link; the page fits 1280 px
            d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
            assert d.switch_to.active_element.text == "Skip to content"
            assert d.execute_script("return document.documentElement.scrollWidth") <= 1280

        export = root / "drop" / "export" / "STD-GEN-CD"
        with s("export-running"):
            for name in ("burn-a", "burn-b"):  # one publisher: b waits for a
                drop_folder(corpora["export"], export / name)
                (export / name / "job.toml").write_text('target = "robot"\n')
                (export / name / ".ready").touch()
            row = s.until(_state_in("active-jobs", "burn-a", "running"))
            assert row.find_elements(By.TAG_NAME, "progress"), row.get_attribute("innerHTML")
            s.until(_state_in("active-jobs", "burn-b", "queued"))

        with s("cancel-from-queue"):
            _press(s, lambda d: _row(d, "active-jobs", "burn-b").find_element(
                By.XPATH, ".//button[normalize-space()='Cancel']"))
            s.until(lambda d: d.find_element(By.ID, "job-state").get_attribute("data-state")
                    == "cancelled")
            assert "burn-b" in d.find_element(By.TAG_NAME, "h1").text

        with s("retry-from-job-page"):
            _press(s, lambda d: d.find_element(By.XPATH, "//button[normalize-space()='Retry']"))
            s.until(lambda d: d.find_element(By.ID, "job-state").get_attribute("data-state")
                    in ("queued", "running"))

        with s("export-done"):
            emulator = subprocess.Popen([sys.executable, str(Path(__file__).parent /
                                                              "publisher_emulator.py"),
                                         "--kind", "ptburn", str(hot), "--step", "0.1"])
            d.get(url)
            s.until(_state_in("all-jobs", "burn-a", "done"))
            s.until(_state_in("all-jobs", "burn-b", "done"))
            assert not d.find_elements(By.XPATH, "//table[@id='active-jobs']//tr[td[text()="
                                                 "'burn-a']]")

        with s("job-report"):
            _row(d, "all-jobs", "burn-a").find_element(By.TAG_NAME, "a").click()
            s.until(lambda d: d.find_element(By.ID, "job-state").get_attribute("data-state")
                    == "done")
            assert "burned to ptburn:" in d.find_element(By.TAG_NAME, "main").text

        with s("rejected-file-reason"):
            bad = export / "with-a-note"
            drop_folder(corpora["export"][:2], bad)
            (bad / "notes.txt").write_text("call the patient back\n")
            (bad / ".ready").touch()
            d.get(url)
            s.until(_state_in("all-jobs", "with-a-note", "failed"))
            _row(d, "all-jobs", "with-a-note").find_element(By.TAG_NAME, "a").click()
            cells = s.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#problems tbody tr"))
            rows = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in cells]
            assert any(f == "notes.txt" and reason for f, reason in rows), rows

        with s("import-from-devices-page"):
            d.get(url + "devices")
            Select(s.until(lambda d: d.find_element(By.ID, "i-source"))).select_by_value(
                str(media / "disc-of-today"))
            d.find_element(By.ID, "i-label").send_keys("disc of today" + Keys.ENTER)
            s.until(lambda d: d.find_element(By.ID, "job-state").get_attribute("data-state")
                    == "done")
            assert "6 imported" in d.find_element(By.TAG_NAME, "main").text

        with s("search-the-store"):
            d.get(url + "store")
            d.find_element(By.ID, "s-name").send_keys("doe patient" + Keys.ENTER)
            link = s.until(lambda d: d.find_element(By.CSS_SELECTOR, "#studies tbody a"))
            assert "matching stud" in d.find_element(By.ID, "h-results").text
            name = link.text
            link.click()

        with s("study-page"):
            s.until(lambda d: name in d.find_element(By.TAG_NAME, "h1").text)
            images = d.find_elements(By.CSS_SELECTOR, "ul.series img")
            assert len(images) == 2
            s.until(lambda d: all(d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in d.find_elements(By.CSS_SELECTOR, "ul.series img")))
            statuses = [td.text for td in d.find_elements(By.CSS_SELECTOR,
                                                          "#mds tbody tr td:nth-child(4)")]
            assert statuses and "present" in statuses
            assert d.execute_script("return document.documentElement.scrollWidth") <= 1280
            d.save_screenshot(str(tmp_path / "study.png"))

        with s("print-from-study-page"):
            Select(d.find_element(By.ID, "p-layout")).select_by_value("mr-2x2")
            boxes = d.find_elements(By.NAME, "series")
            boxes[1].send_keys(Keys.SPACE)  # untick the second series
            assert [b.is_selected() for b in boxes] == [True, False]
            _press(s, lambda d: d.find_element(By.XPATH, "//button[normalize-space()='Print']"))
            s.until(lambda d: "printer down" in d.find_element(By.ID, "job-reason").text)
            job_id = int(d.current_url.rstrip("/").rsplit("/", 1)[1])
            job = open_queue(load_service_config(cfg, root)).get(job_id)
            assert job.kind == "print" and job.payload["group"] == "down"
            assert len(list((root / "spool" / job.uid / "input").glob("*.dcm"))) == 3
            d.get(url + "devices")
            cell = s.until(lambda d: d.find_element(By.CSS_SELECTOR, "#printers tbody tr"))
            assert "error" in cell.text and "no association" in cell.text, cell.text
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait()
        code = svc.stop()
        svc.close()
    assert code == 0, svc.log()[-3000:]
