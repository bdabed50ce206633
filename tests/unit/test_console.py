"""The console's ASGI app with Starlette's test client, on a real SQLite catalog and store:
its pages, paging, escaping, the live log's events, Stop, the token and the downloads. Runs
are real (the hxpy server as a local process) or recorded directly in the catalog."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from starlette.testclient import TestClient

import pyhost.runtime as dh
from pyhost.console import Console, create_app
from pyhost.runtime import runs as runs_module

CODE = '''
import time

def echo(text, secret_name=None):
    print("echo:", text)
    return text

def fails():
    raise ValueError("it broke <b>here</b>")

def sleeper(seconds):
    print("asleep", flush=True)
    time.sleep(seconds)
'''


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("web")


@pytest.fixture
def client(runtime):
    with TestClient(create_app(Console(runtime)), base_url="http://127.0.0.1") as made:
        yield made


def _function(project, handler):
    return project.new_function(name=handler, kind="python", code=CODE, handler=handler)


def test_projects_and_a_project_show_functions_runs_and_entities(project, launcher, client):
    run = _function(project, "echo").run(parameters={"text": "hi"}, wait=True,
                                         launcher=launcher)
    project.log_dataitem(name="numbers", kind="table", data=pd.DataFrame({"x": [1, 2]}))
    home = client.get("/")
    assert home.status_code == 200
    assert 'href="http://127.0.0.1/projects/web"' in home.text and "COMPLETED" in home.text
    page = client.get("/projects/web")
    assert "echo" in page.text and run.id[:12] in page.text and "dataitems (1)" in page.text
    assert client.get("/projects/nobody").status_code == 404


def test_the_runs_page_filters_and_pages_newest_first(project, runtime, client):
    fn = _function(project, "echo")
    other = _function(project, "fails")
    made = []
    for index in range(120):
        record = runs_module.create_run(runtime, fn if index % 4 else other, "job",
                                        {"function": (fn if index % 4 else other).key,
                                         "parameters": {"n": index}})
        made.append(record.id)
    first = client.get("/projects/web/runs")
    assert first.status_code == 200
    assert first.text.count('class="mono" href="http://127.0.0.1/runs/') == 50
    assert made[-1][:12] in first.text and made[0][:12] not in first.text
    older = first.text.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older)
    assert made[69][:12] in second.text and made[-1][:12] not in second.text
    only_fails = client.get("/projects/web/runs", params={"function": "fails"})
    assert only_fails.text.count('class="mono" href="http://127.0.0.1/runs/') == 30
    assert client.get("/projects/web/runs", params={"state": "RUNNING"}).text.count(
        "/runs/") == 0
    assert client.get("/projects/web/runs", params={"state": "BOGUS"}).status_code == 400
    assert client.get("/projects/web/runs", params={"after": "x"}).status_code == 400


def test_a_run_page_escapes_what_users_gave_and_shows_secrets_by_name(project, launcher,
                                                                       client, monkeypatch):
    monkeypatch.setenv("WEB_TOKEN", "s3cr3t-value")
    run = _function(project, "echo").run(
        parameters={"text": "<script>alert(1)</script>"}, secrets=["WEB_TOKEN"], wait=True,
        launcher=launcher)
    page = client.get(f"/runs/{run.id}")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "WEB_TOKEN" in page.text and "s3cr3t-value" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    failed = _function(project, "fails").run(wait=True, launcher=launcher)
    shown = client.get(f"/runs/{failed.id}").text
    assert "ValueError" in shown and "it broke &lt;b&gt;here&lt;/b&gt;" in shown
    assert 'raise ValueError(' in shown  # the user's own traceback


def test_metrics_are_charts_drawn_on_the_server(project, runtime, client):
    record = runs_module.create_run(runtime, _function(project, "echo"), "job",
                                    {"function": "x"})
    run = dh.get_run(record.id)
    monkey_series = {"loss": [{"value": 1.0 / (step + 1), "step": step, "time": 0.0}
                              for step in range(20)]}
    run.metrics = lambda name=None: monkey_series  # type: ignore[method-assign]
    from pyhost.console.charts import line_chart

    chart = line_chart("loss <x>", monkey_series["loss"])
    assert chart.startswith("<svg") and "<polyline" in chart and "loss &lt;x&gt;" in chart
    assert "no numeric values" in line_chart("empty", [{"value": "nan?", "step": 0}])


def test_an_active_runs_log_is_followed_as_events_until_it_ends(project, runtime, client):
    record = runs_module.create_run(runtime, _function(project, "echo"), "job",
                                    {"function": "x"})
    record = runs_module.transition(runtime, record, runs_module.RUNNING,
                                    runs_module.ACTIVE)
    log = runs_module.run_log(runtime, record)
    log.write("first line\n")
    log.flush()
    page = client.get(f"/runs/{record.id}")
    assert "first line" in page.text and "data-follow=" in page.text
    follow = page.text.split('data-follow="')[1].split('"')[0].replace("&amp;", "&")

    def later() -> None:
        time.sleep(0.3)
        log.write("second <line>\n")
        log.flush()
        runs_module.transition(runtime, runtime.get("run", record.id), runs_module.COMPLETED,
                               runs_module.ACTIVE)

    import threading

    threading.Thread(target=later).start()
    events = _events(client.get(follow).text)
    texts = "".join(json.loads(data) for name, data in events if name == "log")
    assert texts == "second <line>\n"  # from where the page ended, once
    assert ("end", '"COMPLETED"') in events
    assert [json.loads(d) for n, d in events if n == "state"][-1] == "COMPLETED"


def test_stop_needs_the_pages_csrf_value_and_stops_the_run(project, launcher, runtime, client):
    run = _function(project, "sleeper").run(parameters={"seconds": 60}, launcher=launcher)
    deadline = time.monotonic() + 30
    while run.refresh().status.state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post(f"/runs/{run.id}/stop").status_code == 403
    assert client.post(f"/runs/{run.id}/stop", data={"csrf": "guess"}).status_code == 403
    csrf = client.app.state.console.csrf
    foreign = client.post(f"/runs/{run.id}/stop", data={"csrf": csrf},
                          headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert run.refresh().status.state == "RUNNING"
    answer = client.post(f"/runs/{run.id}/stop", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].endswith("notice=stopped")
    assert run.refresh().status.state == "STOPPED"
    again = client.post(f"/runs/{run.id}/stop", data={"csrf": csrf})
    assert "had already ended" in again.text


def test_a_dataitems_first_rows_and_its_files(project, client):
    frame = pd.DataFrame({"n": range(1000), "label": [f"<i>{i}</i>" for i in range(1000)]})
    item = project.log_dataitem(name="big", kind="table", data=frame)
    page = client.get(f"/entities/dataitem/{item.id}")
    assert page.status_code == 200
    assert "1000 rows; the first 100 shown" in page.text
    assert "&lt;i&gt;99&lt;/i&gt;" in page.text and "&lt;i&gt;100&lt;/i&gt;" not in page.text
    name = item.files[0]["path"]
    download = client.get(f"/entities/dataitem/{item.id}/files/{name}")
    assert download.status_code == 200 and download.content.startswith(b"PAR1")
    for escape in ("../../../../catalog.db", "..%2F..%2F..%2Fcatalog.db", "nope.parquet"):
        assert client.get(f"/entities/dataitem/{item.id}/files/{escape}").status_code == 404
    listing = client.get("/projects/web/dataitems")
    assert "big" in listing.text and "table" in listing.text


def test_off_loopback_every_page_needs_the_token(runtime):
    app = create_app(Console(runtime, token="t0ken"), host="0.0.0.0")
    with TestClient(app, base_url="http://192.0.2.1") as client:
        for path in ("/", "/projects/web/runs", "/static/console.js", "/runs/x/log/follow"):
            assert client.get(path).status_code == 401
        assert client.get("/", headers={"authorization": "token wrong"}).status_code == 401
        assert client.get("/", headers={"authorization": "token t0ken"}).status_code == 200
        first = client.get("/?token=t0ken", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/"
        assert "httponly" in first.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200  # the cookie now
    with pytest.raises(ValueError, match="needs a token"):
        create_app(Console(runtime), host="0.0.0.0")


def test_on_loopback_a_foreign_host_name_is_refused(runtime):
    with TestClient(create_app(Console(runtime)), base_url="http://evil.example") as client:
        assert client.get("/").status_code == 400
    with TestClient(create_app(Console(runtime)), base_url="http://localhost:8765") as client:
        assert client.get("/").status_code == 200


def test_a_functions_page_highlights_its_source(project, client):
    _function(project, "echo")
    page = client.get("/projects/web/functions/echo")
    assert page.status_code == 200 and 'class="highlight"' in page.text
    assert "sleeper" in page.text
    css = client.get("/highlight.css")
    assert css.status_code == 200 and ".highlight" in css.text


def _events(body: str) -> list[tuple[str, str]]:
    found = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        found.append((lines.get("event", ""), lines.get("data", "")))
    return found


def test_a_serve_runs_page_lists_its_replicas_and_urls(project, runtime, client):
    record = runs_module.create_run(runtime, _function(project, "echo"), "serve",
                                    {"function": "x", "replicas": 2})
    runs_module.transition(
        runtime, record, runs_module.RUNNING, runs_module.ACTIVE,
        service={"type": "http", "urls": ["http://127.0.0.1:40001", "http://127.0.0.1:40002"],
                 "port": 8080},
        replicas=[{"index": index, "state": "ready", "restarts": 0, "container": "c",
                   "url": f"http://127.0.0.1:4000{index + 1}", "error": None, "requests": 7,
                   "errors": 0, "rejected": 0} for index in range(2)])
    page = client.get(f"/runs/{record.id}")
    replicas = page.text.split('id="replicas"')[1].split("</table>")[0]
    assert replicas.count("<tr>") == 3 and "http://127.0.0.1:40002" in replicas
    assert "http://127.0.0.1:40001" in page.text.split('id="replicas"')[0]  # the URLs
