"""The console in a real Chromium: the runs of real container jobs with their states; an
active run's log growing in the page while the handler prints (no reload); Stop; a
dataitem's first rows; a parameter holding a script tag shown as text, never run; and, bound
off loopback, no page without the token."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import pyhost.runtime as dh
from pyhost.console import BackgroundConsole, Console

CODE = '''
import time

def echo(text):
    return text

def fails():
    raise RuntimeError("broken on purpose")

def ticker(count, pause):
    for i in range(count):
        print(f"tick {i}", flush=True)
        time.sleep(pause)
    return count
'''


def _function(handler):
    return dh.get_or_create_project("web").new_function(name=handler, kind="python",
                                                         code=CODE, handler=handler)


def _state_badge(browser, state, timeout=30):
    WebDriverWait(browser, timeout).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, f'#run-state [data-state="{state}"]')))


def test_the_runs_page_shows_the_states_of_real_runs(client, served, browser):
    done = _function("echo").run(parameters={"text": "hi"}, wait=True)
    failed = _function("fails").run(wait=True)
    assert (done.status.state, failed.status.state) == ("COMPLETED", "ERROR")
    browser.get(f"{served.url}/projects/web/runs")
    rows = {row.find_element(By.CSS_SELECTOR, "td a").text:
            row.find_element(By.CSS_SELECTOR, ".state").text
            for row in browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")}
    assert rows == {done.id[:12]: "COMPLETED", failed.id[:12]: "ERROR"}
    browser.find_element(By.LINK_TEXT, failed.id[:12]).click()
    assert "broken on purpose" in browser.find_element(By.CSS_SELECTOR, "pre.traceback").text


def test_an_active_runs_log_grows_in_the_page_and_stop_stops_it(client, served, browser):
    run = _function("ticker").run(parameters={"count": 600, "pause": 0.2})  # a supervisor's
    deadline = time.monotonic() + 60
    while "tick 0" not in run.logs():
        assert time.monotonic() < deadline, run.refresh().status
        time.sleep(0.1)
    browser.get(f"{served.url}/runs/{run.id}")
    browser.execute_script("window.notReloaded = true;")
    log = browser.find_element(By.ID, "log")
    shown = log.text
    last = int(shown.strip().splitlines()[-1].split()[-1])
    WebDriverWait(browser, 30).until(lambda _: f"tick {last + 5}" in log.text)
    assert browser.execute_script("return window.notReloaded === true;")
    browser.find_element(By.ID, "stop").click()
    _state_badge(browser, "STOPPED", timeout=60)
    assert "Stopped." in browser.find_element(By.ID, "notice").text
    assert dh.get_run(run.id).status.state == "STOPPED"


def test_a_dataitems_first_rows_are_read_in_the_page(served, browser):
    frame = pd.DataFrame({"n": range(500), "word": [f"w{i}" for i in range(500)]})
    item = dh.get_or_create_project("web").log_dataitem(name="words", kind="table", data=frame)
    browser.get(f"{served.url}/projects/web/dataitems")
    browser.find_element(By.LINK_TEXT, "words").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#preview tbody tr")
    assert len(rows) == 100
    assert [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")] == ["0", "w0"]
    assert "500 rows" in browser.page_source and item.id in browser.current_url


def test_a_script_in_a_parameter_is_text_and_never_runs(client, served, browser):
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    run = _function("echo").run(parameters={"text": payload}, wait=True)
    browser.get(f"{served.url}/runs/{run.id}")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no alert is open
    assert payload in browser.find_element(By.ID, "parameters").text
    assert payload in browser.find_element(By.ID, "results").text


def test_off_loopback_the_pages_need_the_token(runtime, chromium, browser):
    served = BackgroundConsole(Console(runtime, token="secret-token"), host="0.0.0.0")
    try:
        browser.get(f"http://127.0.0.1:{served.port}/projects/web/runs")
        assert "401" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(f"http://127.0.0.1:{served.port}/?token=secret-token")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Projects"
        assert "token" not in browser.current_url  # kept in a cookie, out of the URL
    finally:
        served.stop()
