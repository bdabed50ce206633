"""The serve task without Docker: the ASGI app and its response conversion in-process, and
whole serve runs on the process launcher (real uvicorn, real sessions, loopback ports)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from hxpy.runtime.asgi import BadRequest, Response, ServeApp, to_response
from hxpy.runtime.serve import LogBuffer
from pyhost import ConfigurationError, ServiceUnavailable

SERVING = Path(__file__).resolve().parents[1] / "support" / "serving" / "main.py"


# -- response conversion ---------------------------------------------------------------------

@pytest.mark.parametrize("value, status, content_type, body", [
    ("héllo", 200, b"text/plain; charset=utf-8", "héllo".encode()),
    (b"\x00\x01", 200, b"application/octet-stream", b"\x00\x01"),
    ({"a": [1, 2]}, 200, b"application/json", b'{"a": [1, 2]}'),
    ([1, "x"], 200, b"application/json", b'[1, "x"]'),
    (None, 200, None, b""),
    (("made", 201), 201, b"text/plain; charset=utf-8", b"made"),
    (({"k": 1}, 202, {"X-Id": "7"}), 202, b"application/json", b'{"k": 1}'),
    (Response("<p/>", content_type="text/html", status_code=203), 203, b"text/html", b"<p/>"),
])
def test_return_values_become_responses(value, status, content_type, body):
    got_status, headers, got_body = to_response(value)
    assert (got_status, got_body) == (status, body)
    assert dict(headers).get(b"content-type") == content_type


def test_headers_given_with_a_tuple_are_sent_and_override_the_content_type():
    _, headers, _ = to_response(("x", 200, {"Content-Type": "text/csv", "X-A": "b"}))
    assert dict(headers) == {b"content-type": b"text/csv", b"x-a": b"b"}


@pytest.mark.parametrize("value, message", [
    ({1, 2}, "returned a set"),
    (("a", 200, {}, 4), "tuple of 4"),
    (("a", "200"), "status must be an int"),
    (("a", 99), "status must be an int"),
    (("a", 200, ["h"]), "headers must be a dict"),
    ({"x": object()}, "not JSON"),
])
def test_what_cannot_be_a_response_is_a_type_error(value, message):
    with pytest.raises(TypeError, match=message):
        to_response(value)


# -- the ASGI app, driven without a server ---------------------------------------------------

def _request(app, method="GET", path="/", body=b"", headers=(), query=b"", chunks=None):
    return asyncio.run(_answer(app, method, path, body, headers, query, chunks))


async def _answer(app, method="GET", path="/", body=b"", headers=(), query=b"", chunks=None):
    sent = []
    parts = chunks if chunks is not None else [body]

    async def receive():
        chunk = parts.pop(0) if parts else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    await app(scope, receive, send)
    start, body_message = sent
    return start["status"], dict(start["headers"]), body_message["body"]


def _app(handler, **options):
    errors = []
    app = ServeApp(handler, lambda error_id, text: errors.append((error_id, text)), **options)
    return app, errors


def test_the_handler_gets_the_request_as_an_event_in_a_worker_thread():
    seen = {}

    def handler(event):
        seen.update(body=event.body, method=event.method, path=event.path,
                    fields=event.fields, content_type=event.content_type,
                    headers=event.headers, thread=threading.current_thread().name)
        return {"ok": True}

    app, _ = _app(handler)
    status, headers, body = _request(app, "POST", "/p", b'{"a":1}',
                                     [("Content-Type", "application/json")], b"x=1&y=2")
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert headers[b"content-length"] == str(len(body)).encode()
    assert seen["body"] == b'{"a":1}' and seen["method"] == "POST" and seen["path"] == "/p"
    assert seen["fields"] == {"x": "1", "y": "2"}
    assert seen["content_type"] == "application/json"
    assert seen["thread"].startswith("hxpy-serve")
    assert app.stats.snapshot() == {"requests": 1, "errors": 0, "rejected": 0}


def test_a_blocking_def_handler_holds_up_no_other_request():
    gate = threading.Event()

    def handler(event):
        if event.path == "/open":
            gate.set()
            return "opened"
        return "waited" if gate.wait(5) else "timed out"

    async def both(app):
        return await asyncio.gather(_answer(app, path="/wait"), _answer(app, path="/open"))

    app, _ = _app(handler, workers=2)
    waited, opened = asyncio.run(both(app))
    assert (waited[2], opened[2]) == (b"waited", b"opened")
    app.workers.shutdown()


def test_even_a_system_exit_in_a_def_handler_is_a_500_and_the_worker_serves_on():
    def handler(event):
        if event.path == "/exit":
            raise SystemExit(3)
        return "still here"

    app, errors = _app(handler, workers=1)
    assert _request(app, path="/exit")[0] == 500
    assert "SystemExit: 3" in errors[0][1]
    assert _request(app)[::2] == (200, b"still here")
    threads = list(app.workers._threads)
    app.workers.shutdown()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_a_handler_exception_is_a_500_with_an_id_and_the_traceback_goes_to_the_log():
    def handler(event):
        raise KeyError("secret detail")

    app, errors = _app(handler)
    status, _, body = _request(app)
    answer = json.loads(body)
    assert status == 500 and set(answer) == {"error", "error_id"}
    assert b"secret detail" not in body and b"Traceback" not in body
    [(error_id, text)] = errors
    assert error_id == answer["error_id"]
    assert "KeyError: 'secret detail'" in text and "raise KeyError" in text
    assert "asgi.py" not in text  # from the handler's frame on
    assert app.stats.snapshot()["errors"] == 1


def test_bad_requests_are_4xx_with_a_clear_message():
    def handler(event):
        if event.path == "/raise":
            raise BadRequest("field x is missing", 422)
        return event.json()

    app, errors = _app(handler, max_body=10)
    assert _request(app, "POST", body=b"{nope")[::2] == (
        400, b"the request body is not valid JSON: Expecting property name enclosed in "
             b"double quotes: line 1 column 2 (char 1)")
    assert _request(app, path="/raise")[::2] == (422, b"field x is missing")
    assert _request(app, "POST", body=b"x" * 11,
                    headers=[("Content-Length", "11")])[::2] == (413, b"the body is over 10 "
                                                                      b"bytes")
    assert _request(app, "POST", chunks=[b"x" * 6, b"y" * 6])[0] == 413  # no length given
    assert not errors and app.stats.snapshot()["rejected"] == 4


def test_the_log_buffer_keeps_a_cap_and_counts_what_it_dropped():
    buffer = LogBuffer(cap=5)
    buffer.write("abc")
    buffer.write("defgh")
    assert buffer.take() == "abcde\n[... 3 characters of logs dropped ...]\n"
    assert buffer.take() == ""


# -- whole runs on the process launcher ------------------------------------------------------

@pytest.fixture
def project(tmp_path):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("serving")


def test_a_serve_run_on_the_process_launcher(project):
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler", init_function="init_context")
    run = fn.run(action="serve", replicas=2, launcher="process",
                 init_parameters={"greeting": "hey"})
    try:
        assert run.status.state == "RUNNING", run.status.error
        replicas = {run.invoke(path="/", params={"n": str(i)}).json()["replica"]
                    for i in range(4)}
        assert replicas == {0, 1}
        assert run.invoke(path="/").json()["greeting"] == "hey"
        assert run.invoke(path="/project").json() == {"project": "serving"}  # a host call
        assert run.invoke(path="/print").text == "ok"
        deadline = time.monotonic() + 10
        while "logged by the handler" not in run.logs():
            assert time.monotonic() < deadline, run.logs()
            time.sleep(0.05)
        assert "printed by the handler" in run.logs()
        assert "replica 0 initialised" in run.logs()
    finally:
        run.stop()
    assert run.status.state == "STOPPED"
    assert run.status.metrics == {"served": 1}
    assert run.status.service["urls"] == []
    with pytest.raises(ServiceUnavailable):
        run.invoke(path="/")


def test_an_unknown_serve_setting_is_refused(project):
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler")
    with pytest.raises(ConfigurationError, match="unknown setting"):
        fn.run(action="serve", launcher="process", replica=2)
    with pytest.raises(ConfigurationError, match="network="):
        fn.run(action="serve", launcher="process", service_type="ClusterIP", network="n")
    assert not project.list_runs()


def test_pyhost_serve_runs_in_the_foreground_until_sigint(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYHOST_HOME": str(tmp_path / "home"),
           "PYTHONPATH": f"{root}:{root / 'container'}"}
    child = subprocess.Popen(
        [sys.executable, "-m", "pyhost", "serve", f"{SERVING}:handler", "--replicas", "2",
         "--launcher", "process", "--init-function", "init_context",
         "--init-param", "greeting=cli"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert "serving (2 replica(s))" in child.stdout.readline()
        urls = [child.stdout.readline().strip() for _ in range(2)]
        with urllib.request.urlopen(urls[1] + "/") as answer:
            assert json.loads(answer.read())["greeting"] == "cli"
        child.send_signal(signal.SIGINT)
        assert child.wait(30) == 0
        assert child.stdout.read().strip().endswith("STOPPED")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_async_handler_is_awaited_on_the_event_loop():
    seen = {}

    async def handler(event):
        seen["thread"] = threading.current_thread().name
        if event.path == "/boom":
            raise ValueError("broke")
        await asyncio.sleep(0)
        return {"path": event.path}

    app, errors = _app(handler, awaitable=True)
    assert _request(app, path="/a")[::2] == (200, b'{"path": "/a"}')
    assert not seen["thread"].startswith("hxpy-serve")  # no worker thread
    status, _, body = _request(app, path="/boom")
    assert status == 500 and b"broke" not in body and "ValueError: broke" in errors[0][1]


def test_an_async_handler_serves_on_the_process_launcher(project):
    fn = project.new_function(name="asrv", kind="python", code_src=str(SERVING),
                              handler="async_handler")
    run = fn.run(action="serve", launcher="process")
    try:
        assert run.status.state == "RUNNING", run.status.error
        answer = run.invoke(path="/").json()
        assert answer["replica"] == 0 and not answer["thread"].startswith("hxpy-serve")
    finally:
        run.stop()
