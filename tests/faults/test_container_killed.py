"""A container killed under pyhost (``docker kill``, as the engine's OOM killer or an
operator would): a persistent session's (moved here from ``tests/integration/
test_workers.py``) and a job's, mid-run."""

from __future__ import annotations

import textwrap
import threading
import time

import pandas as pd
import pytest

import pyhost
import pyhost.runtime as dh
from pyhost import SessionDied, py

pytestmark = pytest.mark.docker


def test_docker_kill_mid_eval_on_a_persistent_session_restarts_with_init(faults_home):
    client = faults_home.client
    runs = []
    s = py(persist="killed", io=None, launcher=faults_home.launcher).init(
        lambda s: runs.append(1) or s.exec("import time; base = 40"))
    try:
        assert s.eval("base + 2") == 42
        first = s.container_id
        threading.Timer(0.5, lambda: client.api.kill(first)).start()
        started = time.monotonic()
        with pytest.raises(SessionDied) as info:
            s.eval("time.sleep(30)")
        assert time.monotonic() - started < 1.5
        assert "exit code 137" in str(info.value)
        assert s.eval("base + 2") == 42  # a fresh container, init re-run
        assert s.container_id != first
        assert runs == [1, 1]
        assert s.stats.restarts == 1
        assert not client.api.containers(all=True, filters={"id": first})  # removed
    finally:
        pyhost.close_all()
    seen = faults_home.gc()
    assert seen.returncode == 0 and first[:12] not in seen.removed, seen
    assert seen.socket_dirs == 0, seen


LOGS_THEN_SLEEPS = textwrap.dedent("""
    import time

    def main(project, seconds):
        project.log_dataitem(name="before", kind="table", data=project.get_dataitem(
            "numbers").as_df())
        print("logged", flush=True)
        time.sleep(seconds)
        return "never"
""")


def test_a_job_whose_container_is_killed_mid_run_ends_error_keeping_what_it_made(faults_home):
    project = dh.get_or_create_project("killed")
    numbers = project.log_dataitem(name="numbers", kind="table",
                                   data=pd.DataFrame({"x": [1, 2, 3]}))
    fn = project.new_function(name="sleeper", kind="python", code=LOGS_THEN_SLEEPS,
                              handler="main")
    run = fn.run(action="job", parameters={"seconds": 600}, launcher=faults_home.launcher)
    deadline = time.monotonic() + 120
    while "logged" not in run.logs() and time.monotonic() < deadline:
        assert run.refresh().status.state in ("READY", "RUNNING"), run.status.to_dict()
        time.sleep(0.1)
    container = run.refresh().status.container
    assert container and run.status.state == "RUNNING", run.status.to_dict()
    faults_home.client.api.kill(container)
    killed = time.monotonic()
    run.wait(60)
    assert time.monotonic() - killed < 10  # told at once, not left RUNNING
    status = run.status
    assert status.state == "ERROR", status.to_dict()
    assert "SessionDied" in status.message and "exit code 137" in status.message, status
    assert status.error["type"] == "SessionDied"
    assert run.logs().startswith("logged")  # what it printed before it died is kept
    (made,) = status.produced  # what it logged before it died is recorded, and reads back
    assert project.get_dataitem("before").key == made
    assert project.get_dataitem("before").as_df().equals(numbers.as_df())
    seen = faults_home.gc()
    assert seen.returncode == 0, seen
    assert seen.settled == [] and container[:12] not in seen.removed, seen
    assert seen.socket_dirs == 0, seen
