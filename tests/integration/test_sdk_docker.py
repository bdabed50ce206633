"""DigitalHub's names and behaviours in real containers (issue #19, parts 3-5): a function
made without ``python_version`` runs on a default image of another Python; serve runs
waited for (and a start that is not up in time failed, naming its replica, leaving no
container); a job's ``output_0`` and ``resources`` with the SDK's names."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.launchers.ownership import LABEL_PREFIX

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "tests" / "support" / "functions"
SERVING = ROOT / "tests" / "support" / "serving" / "main.py"
OTHER_PYTHON = "hxpy:py3.13"  # made by `make images`; a default image that is not 3.11
OTHER_TAG = "hxpy-sdk-otherpy:latest"  # this test's own tag of it, removed after


@pytest.fixture(scope="session")
def client():
    """The engine, and the shared session image as it is: these tests never rebuild it
    (the integration conftest's ``client`` would, were its sources changed elsewhere)."""
    from pyhost.launchers.docker.client import docker_client

    engine = docker_client()
    engine.images.get("hxpy:latest")
    return engine


@pytest.fixture
def project(tmp_path, client):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("sdk")


def _ours(client):
    return client.api.containers(
        all=True, filters={"label": [f"{LABEL_PREFIX}.owner.pid={os.getpid()}"]})


def _gone(client, within=15.0):
    deadline = time.monotonic() + within
    while _ours(client):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- part 3: python_version None --------------------------------------------------------------

README_EXAMPLE = textwrap.dedent("""
    import sys
    import pandas as pd
    import pyhost.runtime as dh

    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    # README.md, "The python runtime", without python_version
    project = dh.get_or_create_project("demo")
    fn = project.new_function(name="python-function", kind="python",
                              code_src=sys.argv[1], handler="func5")
    di = project.log_dataitem(name="d", kind="table", data=df)
    run = fn.run(action="job", inputs={"di": di.key}, parameters={"param1": "some value"},
                 outputs={"result": "named_result"}, wait=True)
    print("state", run.status.state, run.status.error or "")
    print("labels", list(run.output("named_result").as_df()["label"]))
    version = project.new_function(
        name="version", kind="python", handler="v",
        code="import sys\\n\\ndef v():\\n    return '%d.%d' % sys.version_info[:2]\\n")
    print("python", version.run(wait=True).result("result"))
""")


def test_the_readme_example_without_python_version_runs_on_a_default_image_of_another_python(
        tmp_path, client):
    for _attempt in range(20):  # another engineer may be rebuilding it just now
        try:
            image = client.images.get(OTHER_PYTHON)
            break
        except Exception:
            time.sleep(15)
    else:
        pytest.fail(f"{OTHER_PYTHON} is missing; make images builds it")
    image.tag(OTHER_TAG)
    try:
        script = tmp_path / "example.py"
        script.write_text(README_EXAMPLE)
        env = {**os.environ, "PYHOST_IMAGE": OTHER_TAG, "PYHOST_HOME": str(tmp_path / "h"),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'container'}"}
        done = subprocess.run([sys.executable, str(script), str(FUNCTIONS / "main.py")],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        client.images.remove(OTHER_TAG, noprune=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["state"].strip() == "COMPLETED", done.stdout
    assert lines["labels"] == "['some value', 'some value', 'some value']"
    assert lines["python"] == "3.13"  # the default image ran it, not hxpy:py3.11


# -- part 4: serve runs waited for ------------------------------------------------------------

SLOW_INIT = textwrap.dedent("""
    import time

    def init_slow(context, seconds=600):
        print("warming up the model")
        time.sleep(seconds)

    def handler(context, event):
        return "ok"
""").lstrip()


def test_serve_waited_for_answers_at_once_and_not_waited_for_comes_up(project, client):
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler")
    run = fn.run(action="serve", replicas=2, wait=True, log_info=True)
    try:
        assert run.status.state == "RUNNING", run.status.error
        assert [r["state"] for r in run.status.replicas] == ["ready", "ready"]
        assert {run.invoke(path="/x").status for _ in range(4)} == {200}
    finally:
        run.stop()
    later = fn.run(action="serve", wait=False)
    try:
        assert later.status.state in ("READY", "RUNNING")
        assert later.wait(timeout=120).status.state == "RUNNING", later.status.error
        assert later.invoke(path="/x").status == 200
    finally:
        later.stop()
    assert _gone(client)


def test_a_replica_not_up_in_time_is_named_with_its_last_logs_and_removed(project, client):
    fn = project.new_function(name="slow", kind="python", code=SLOW_INIT,
                              handler="handler", init_function="init_slow")
    run = fn.run(action="serve", replicas=2, ready_timeout=10)
    assert run.status.state == "ERROR"
    message = run.status.error["message"]
    assert "2 of 2 replica(s) did not answer within 10 s" in message
    assert "replica 0 (container " in message and "replica 1 (container " in message
    assert message.count("warming up the model") == 2
    assert _gone(client)
    # Not waited for: its supervisor process fails the start past ready_timeout.
    waited = fn.run(action="serve", wait=False, ready_timeout=8)
    assert waited.wait(timeout=60).status.state == "ERROR"
    assert "1 of 1 replica(s) did not answer within 8 s" in waited.status.error["message"]
    container = waited.status.replicas[0]["container"]
    assert container and not client.api.containers(all=True, filters={"id": container})


# -- part 5: a job's names ---------------------------------------------------------------------

def test_a_job_in_a_container_names_its_value_output_0_and_takes_cpu_and_mem(
        project, client, jobs_settle):
    fn = project.new_function(name="f", kind="python",
                              code="def f(x):\n    return x * 2\n", handler="f")
    run = fn.run(parameters={"x": 21}, resources={"cpu": "500m", "mem": "128Mi"}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.results() == {"output_0": 42} and run.result("result") == 42
    with pytest.raises(ConfigurationError, match="no GPU"):
        fn.run(parameters={"x": 1}, resources={"gpu": 1})
    assert len(project.list_runs()) == 1
