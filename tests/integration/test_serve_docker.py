"""The serve task in real containers: replicas answering on loopback, init_function, a 500
that leaks nothing, a killed replica restarted, stop() and the supervisor's death removing
every replica, and bad settings refused before any container starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.launchers.ownership import LABEL_PREFIX

SERVING = Path(__file__).resolve().parents[1] / "support" / "serving" / "main.py"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, client):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("serving")


def _serving(project, handler="handler", **fields):
    return project.new_function(name=f"srv-{handler}", kind="python", code_src=str(SERVING),
                                handler=handler, **fields)


def _containers(client, pid=None):
    return client.api.containers(
        all=True, filters={"label": [f"{LABEL_PREFIX}.owner.pid={pid or os.getpid()}"]})


def _gone(client, pid=None, within=15.0):
    deadline = time.monotonic() + within
    while _containers(client, pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_two_replicas_answer_on_loopback_and_share_the_traffic(project, client):
    fn = _serving(project, init_function="init_context")
    run = fn.run(action="serve", replicas=2, init_parameters={"greeting": "hi", "factor": 3})
    try:
        assert run.status.state == "RUNNING", run.status.error
        urls = run.status.service["urls"]
        assert len(urls) == 2 and all(url.startswith("http://127.0.0.1:") for url in urls)
        answers = [run.invoke(method="POST", path="/echo", json={"n": i}, params={"q": "1"})
                   for i in range(6)]
        assert {answer.status for answer in answers} == {200}
        bodies = [answer.json() for answer in answers]
        assert {body["replica"] for body in bodies} == {0, 1}
        assert len({body["hostname"] for body in bodies}) == 2  # two containers
        assert {body["greeting"] for body in bodies} == {"hi"}  # init_function's user_data
        assert bodies[0]["factor"] == 3
        assert bodies[0]["method"] == "POST" and bodies[0]["path"] == "/echo"
        assert bodies[0]["fields"] == {"q": "1"}
        assert bodies[0]["content_type"] == "application/json"
        assert bodies[0]["body"] == '{"n": 0}'
        containers = _containers(client)
        assert len(containers) == 2
        host = client.api.inspect_container(containers[0]["Id"])["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]  # the session sandbox
        assert host["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
        # What removes a replica whose supervisor died: the engine, once its server exits.
        assert host["AutoRemove"] is True
    finally:
        run.stop()
    assert run.status.state == "STOPPED"
    assert _gone(client), "stop() left containers behind"


def test_a_500_leaks_no_traceback_and_the_logs_have_it(project):
    run = _serving(project).run(action="serve", replicas=1)
    try:
        answer = run.invoke(path="/boom")
        assert answer.status == 500
        error_id = answer.json()["error_id"]
        assert "Traceback" not in answer.text and "on purpose" not in answer.text
        assert run.invoke(path="/json", body="{not json").status == 400
        deadline = time.monotonic() + 10
        while error_id not in run.logs():
            assert time.monotonic() < deadline, run.logs()
            time.sleep(0.1)
        logs = run.logs()
        assert 'raise ValueError("the handler broke on purpose")' in logs
        assert f"error {error_id}" in logs
    finally:
        run.stop()


def test_a_killed_replica_is_restarted_and_counted(project, client):
    run = _serving(project).run(action="serve", replicas=2)
    try:
        victim = run.status.replicas[0]["container"]
        client.api.kill(victim)
        deadline = time.monotonic() + 30
        while True:
            replicas = run.refresh().status.replicas
            first = replicas[0]
            if first["restarts"] == 1 and first["state"] == "ready":
                break
            assert time.monotonic() < deadline, replicas
            time.sleep(0.2)
        assert first["container"] != victim
        assert replicas[1]["restarts"] == 0
        answers = {run.invoke(path="/").json()["replica"] for _ in range(4)}
        assert answers == {0, 1}
        assert len(_containers(client)) == 2
    finally:
        run.stop()
    assert _gone(client)


def test_ending_the_supervising_process_removes_every_replica(tmp_path, client):
    script = textwrap.dedent(f"""
        import sys, time
        import pyhost.runtime as dh
        dh.configure({str(tmp_path / "home")!r})
        fn = dh.get_or_create_project("p").new_function(
            name="s", kind="python", code_src={str(SERVING)!r}, handler="handler")
        run = fn.run(action="serve", replicas=2)
        print(run.status.state, run.id, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'container'}"}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        line = child.stdout.readline().split()
        assert line and line[0] == "RUNNING", line
        assert len(_containers(client, child.pid)) == 2
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # Within moments: the servers exit when the connection drops, and the engine removes
        # their containers (auto_remove); nothing waits for a later gc.
        assert _gone(client, child.pid, within=3), "replicas outlived their supervisor"
        dh.configure(tmp_path / "home")  # the next runtime to open the catalog settles it
        assert dh.get_project("p").get_run(line[1]).status.state == "STOPPED"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for container in _containers(client, child.pid):
            client.api.remove_container(container["Id"], force=True)


@pytest.mark.parametrize("settings, message", [
    ({"replicas": 0}, "replicas must be an int >= 1"),
    ({"service_type": "LoadBalancer"}, "LoadBalancer needs a cluster launcher"),
    ({"service_type": "ClusterIP"}, "pass network="),
    ({"service_type": "Ingress"}, "service_type='Ingress'"),
    ({"init_parameters": {"greeting": "x"}}, "no init_function"),
    ({"init_function": "init_context", "init_parameters": {"colour": "x"}},
     "takes no argument 'colour'"),
    ({"init_function": "missing_init"}, "defines no function 'missing_init'"),
    ({"port": 70000}, "port must be an int"),
    ({"address": "localhost"}, "IPv4"),
    ({"workers": 0}, "workers must be"),
])
def test_bad_settings_fail_before_any_container_starts(project, client, settings, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        _serving(project).run(action="serve", **settings)
    assert not _containers(client)
    assert not project.list_runs()


def test_a_handler_that_does_not_take_event_and_context_is_refused(project, client):
    with pytest.raises(ConfigurationError, match="'extra' would have no value"):
        _serving(project, "needs_more").run(action="serve")
    assert not _containers(client)


def test_an_init_function_that_raises_ends_the_run_in_error(project, client):
    run = _serving(project, init_function="init_fails").run(action="serve", replicas=2)
    assert run.status.state == "ERROR"
    assert run.status.error["type"] == "RuntimeError"
    assert "init_function failed on purpose" in run.status.error["message"]
    assert _gone(client)
