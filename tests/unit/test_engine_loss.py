"""What a session and a job make of a server that went with its engine, without Docker: a
process launcher whose first server "loses its engine" (it is killed, and its exit status
says the engine restarted, as the Docker launcher's does). The real restart of a real
engine is ``tests/faults/test_engine_restart.py``."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

import pyhost.runtime as dh
from pyhost import py
from pyhost.errors import SessionDied
from pyhost.launchers.base import ExitStatus, LaunchSpec
from pyhost.launchers.process import ProcessInstance, ProcessLauncher

ENGINE = "the test engine restarted (it went away at 01:02:03 and answers again)"

HOLD = '''\
import time


def hold(until):
    while time.time() < until:
        time.sleep(0.05)
    return "held"
'''


class _LostInstance(ProcessInstance):
    """A server whose end is explained by its engine going away."""

    def wait(self, timeout: float) -> ExitStatus | None:
        status = super().wait(timeout)
        return replace(status, engine=ENGINE) if status is not None else None


class EngineLossLauncher(ProcessLauncher):
    """Its first server is lost with its engine; it counts the waits for the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_waits = 0

    def start(self, spec: LaunchSpec) -> ProcessInstance:
        instance = super().start(spec)
        if len(self.started) == 1:
            instance = self.started[0] = _LostInstance(instance.proc, instance.endpoint,
                                                       instance.tmp)
        return instance

    def wait_until_ready(self, timeout: float) -> bool:
        self.ready_waits += 1
        return True


@pytest.fixture
def lossy():
    launcher = EngineLossLauncher()
    yield launcher
    for instance in launcher.started:
        instance.cleanup()


def test_exit_status_names_the_engine_first():
    status = ExitStatus(137, engine="the Docker engine restarted")
    assert status.describe() == "the Docker engine restarted; exit code 137, signal 9"


def test_a_session_whose_server_went_with_its_engine_raises_session_died_naming_it(lossy):
    with py(launcher=lossy, io=None) as session:
        assert session.eval("1 + 1") == 2
        lossy.started[0].kill()
        with pytest.raises(SessionDied) as died:
            session.eval("2")
        assert died.value.engine_lost and died.value.exit_code == 137
        assert f"the container is gone with the engine that ran it: {ENGINE}" in str(died.value)
        assert session.eval("3") == 3  # the next eval starts a new server
        assert session.stats.restarts == 1


def _start_job(tmp_path, launcher, backoff_limit):
    dh.configure(tmp_path / "home")
    (tmp_path / "hold.py").write_text(HOLD)
    fn = dh.get_or_create_project("demo").new_function(
        name="hold", kind="python", code_src=str(tmp_path / "hold.py"), handler="hold")
    run = fn.run(action="job", launcher=launcher, backoff_limit=backoff_limit,
                 parameters={"until": time.time() + 3})
    deadline = time.monotonic() + 30
    while not run.refresh().status.container:
        assert time.monotonic() < deadline, "the job's server did not start"
        time.sleep(0.02)
    launcher.started[0].kill()
    return run.wait(60)


def test_a_job_whose_server_went_with_its_engine_waits_for_it_then_completes(tmp_path,
                                                                             lossy):
    run = _start_job(tmp_path, lossy, backoff_limit=1)
    assert run.status.state == "COMPLETED", run.status.error
    first, second = run.status.attempts
    assert first["error"]["type"] == "SessionDied" and ENGINE in first["error"]["message"]
    assert second["state"] == "COMPLETED"
    assert lossy.ready_waits == 1
    assert "[pyhost] the engine went away; waiting up to 120 s" in run.logs()


def test_a_job_with_no_attempt_left_ends_error_naming_the_engine(tmp_path, lossy):
    run = _start_job(tmp_path, lossy, backoff_limit=0)
    assert run.status.state == "ERROR"
    assert run.status.error["type"] == "SessionDied"
    assert ENGINE in run.status.error["message"] and ENGINE in run.status.message
    assert lossy.ready_waits == 0
