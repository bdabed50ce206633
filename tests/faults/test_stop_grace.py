"""``run.stop()`` sends the job's container SIGTERM and kills it after a grace period
(``PYHOST_STOP_GRACE``): a handler that ignores SIGTERM is killed when the grace runs out,
one that does not is interrupted at once with its ``finally`` blocks run; either run ends
STOPPED with its container removed."""

from __future__ import annotations

import textwrap
import time

import docker.errors
import pytest

import pyhost.runtime as dh

pytestmark = pytest.mark.docker

GRACE = 3.0

IGNORES = textwrap.dedent("""
    import signal, time

    def main():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(600)
""")

CLEANS_UP = textwrap.dedent("""
    import time

    def main():
        try:
            print("working", flush=True)
            time.sleep(600)
        finally:
            print("cleaned up", flush=True)
""")


def _running(run: dh.Run, line: str) -> str:
    """Wait until the run printed ``line``; its container."""
    deadline = time.monotonic() + 120
    while line not in run.logs():
        assert time.monotonic() < deadline, run.refresh().status.to_dict()
        assert run.refresh().status.state in ("READY", "RUNNING"), run.status.to_dict()
        time.sleep(0.05)
    container = run.refresh().status.container
    assert container and run.status.state == "RUNNING", run.status.to_dict()
    return container


def _stopped_in(faults_home, code: str, line: str) -> tuple[dh.Run, float, str]:
    project = dh.get_or_create_project("stops")
    fn = project.new_function(name="handler", kind="python", code=code, handler="main")
    run = fn.run(action="job", launcher=faults_home.launcher)
    container = _running(run, line)
    began = time.monotonic()
    run.stop()
    return run, time.monotonic() - began, container


def _gone(faults_home, container: str) -> None:
    with pytest.raises(docker.errors.NotFound):
        faults_home.client.containers.get(container)
    seen = faults_home.gc()
    assert seen.returncode == 0 and seen.settled == [] and seen.socket_dirs == 0, seen
    assert container[:12] not in seen.removed, seen  # stop() removed it, not gc


def test_a_handler_ignoring_sigterm_is_killed_after_the_grace_period(faults_home,
                                                                      monkeypatch):
    monkeypatch.setenv("PYHOST_STOP_GRACE", str(GRACE))
    run, took, container = _stopped_in(faults_home, IGNORES, "ignoring SIGTERM")
    assert GRACE - 0.2 < took < GRACE + 10, took  # the grace, waited out, then the kill
    assert run.status.state == "STOPPED", run.status.to_dict()
    assert run.status.message == "stopped"
    assert "ignoring SIGTERM" in run.logs()
    _gone(faults_home, container)


def test_a_handler_that_does_not_ignore_sigterm_ends_at_once_cleaning_up(faults_home,
                                                                         monkeypatch):
    monkeypatch.setenv("PYHOST_STOP_GRACE", "30")
    run, took, container = _stopped_in(faults_home, CLEANS_UP, "working")
    assert took < 10, took  # not the 30 s of grace
    assert run.status.state == "STOPPED", run.status.to_dict()
    assert "cleaned up" in run.logs()  # its finally block ran before the container ended
    _gone(faults_home, container)


def test_a_detached_run_stopped_by_another_process_gets_the_same_grace(faults_home,
                                                                       monkeypatch, tmp_path):
    monkeypatch.setenv("PYHOST_STOP_GRACE", str(GRACE))  # the supervisor's, from its caller
    source = tmp_path / "ignores.py"
    source.write_text(IGNORES)
    started = faults_home.cli("run", f"{source}:main", "--detach")
    assert started.returncode == 0, started
    run_id = started.stdout.strip()
    dh.configure(faults_home.path)
    container = _running(dh.get_run(run_id), "ignoring SIGTERM")
    began = time.monotonic()
    stopped = faults_home.cli("stop", run_id)  # a third process: SIGTERM to the supervisor
    took = time.monotonic() - began
    assert stopped.returncode == 0 and "RUNNING -> STOPPED" in stopped.stderr, stopped
    assert GRACE - 0.2 < took < GRACE + 15, took
    assert dh.get_run(run_id).status.state == "STOPPED"
    _gone(faults_home, container)
