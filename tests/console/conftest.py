"""The console driven in a real headless Chromium (selenium), against a console served by
uvicorn in a thread of this process on a free loopback port (``BackgroundConsole``), on a
real catalog whose runs are real container jobs.

No browser is a FAILURE, never a skip: `make test` installs Debian's chromium and
chromium-driver first (`make browser`). A failing test leaves a screenshot in
``test-artifacts/console/`` (not committed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost.console import BackgroundConsole, Console
from tests.integration.conftest import client  # noqa: F401 - the engine, as there

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    binary = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("the console's tests need Debian's chromium and chromium-driver: run "
                    "`make browser` (make test does)", pytrace=False)
    return binary, driver


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PYHOST_HOME", str(home))
    return dh.configure(home)


@pytest.fixture
def served(runtime):
    made = BackgroundConsole(Console(runtime))
    yield made
    made.stop()


@pytest.fixture
def browser(chromium, request):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    report = getattr(request.node, "outcome", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))
    driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.outcome = report  # the browser fixture's teardown looks at it
    return report
