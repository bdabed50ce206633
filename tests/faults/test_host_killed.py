"""The host process SIGKILLed: the caller of a run right after ``fn.run(wait=False)``, the
supervisor executing the run, the owner of a live session. Nothing the run made is lost,
the run does not stay RUNNING, and ``pyhost gc`` removes what the dead process left (moved
here from ``tests/integration/test_detached_runs.py`` and ``test_workers.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time

import docker.errors
import pytest

import pyhost.runtime as dh
from tests.support.detached import gone, left_running, start_caller

pytestmark = pytest.mark.docker


def test_a_run_outlives_a_caller_killed_right_after_starting_it(faults_home):
    started = time.monotonic()
    caller, run_id = start_caller(faults_home.path, seconds=2, linger=60, env=faults_home.env)
    faults_home.pids.add(caller.pid)
    os.kill(caller.pid, signal.SIGKILL)  # at once: the run is the supervisor's
    caller.wait()
    dh.configure(faults_home.path)  # settles the runs of dead owners: not this one
    run = dh.get_run(run_id).wait(120)
    assert run.status.state == "COMPLETED", run.status.to_dict()
    assert run.results() == {"output_0": 42}
    assert run.logs().splitlines()[:3] == ["line 0", "line 1", "line 2"]
    owner = run.metadata["owner"]
    assert int(owner["org.pyhost.owner.pid"]) not in (caller.pid, os.getpid())
    assert time.monotonic() - started < 60
    seen = faults_home.gc()
    assert seen.returncode == 0, seen
    assert seen.settled == [] and "settled 0 run(s)" in seen.runs  # nothing was orphaned
    assert seen.socket_dirs == 0


def test_a_killed_supervisor_leaves_its_run_settled_and_its_container_collected(faults_home):
    run_id, run, container = left_running(faults_home.path, env=faults_home.env)
    supervisor = int(run.metadata["owner"]["org.pyhost.owner.pid"])
    deadline = time.monotonic() + 30  # what the handler printed has reached its log
    while len(run.logs().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(supervisor, signal.SIGKILL)  # the host of the run, mid-run
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not gone(supervisor):
        time.sleep(0.05)
    seen = faults_home.gc()  # the next process to open the catalog settles it
    assert seen.returncode == 0, seen
    assert seen.settled == [run_id[:12]], seen
    settled = dh.get_run(run_id)
    assert settled.status.state == "ERROR"
    assert f"pid {supervisor}" in settled.status.message
    assert settled.logs().splitlines()[:3] == ["line 0", "line 1", "line 2"]  # kept
    with pytest.raises(docker.errors.NotFound):
        faults_home.client.containers.get(container)
    assert container[:12] in seen.removed, seen  # the exited container: gc's to remove
    assert seen.socket_dirs == 1, seen  # its socket dir too, young as it is
    assert faults_home.gc().settled == []  # a second gc finds nothing more


def test_a_sigkilled_host_leaves_nothing_gc_cannot_clean(faults_home):
    client = faults_home.client
    script = textwrap.dedent("""
        import time
        from pyhost import py
        s = py(persist="orphan", io=None)
        s.eval("None")
        print(s.container_id, flush=True)
        time.sleep(600)
    """)
    child = faults_home.python(script, stdout=subprocess.PIPE)
    assert child.stdout is not None
    container = child.stdout.readline().strip()
    try:
        assert client.api.inspect_container(container)["State"]["Running"]
        assert len(list(faults_home.runtime_dir.iterdir())) == 1  # its socket dir
        child.send_signal(signal.SIGKILL)
        child.wait()
        # the server notices its host is gone and exits at once
        deadline = time.monotonic() + 10
        while client.api.inspect_container(container)["State"]["Running"]:
            assert time.monotonic() < deadline, "the server outlived its host"
            time.sleep(0.1)
        seen = faults_home.gc()
        assert seen.returncode == 0, seen
        assert container[:12] in seen.removed, seen
        assert seen.socket_dirs == 1, seen  # its own, young as it is: its session is dead
        assert not client.api.containers(all=True, filters={"id": container})
    finally:
        child.kill()
        child.wait()
        if client.api.containers(all=True, filters={"id": container}):
            client.api.remove_container(container, force=True)
