"""The Docker engine restarted (stopped, then started) under a persistent session and under
running jobs.

The engine restarted is a PRIVATE one (:mod:`tests.support.private_engine`): a second
dockerd of this test process, its own data-root, exec-root, socket, no bridge and no
firewall rules, holding a copy of the session image. The engine others use is never
stopped. pyhost is pointed at the private engine with a launcher on its client; ``pyhost
gc`` runs with ``DOCKER_HOST`` set to it.

Each test then checks that nothing is lost (the session is usable again, every run has its
end and attempts recorded) and nothing is left: no container, volume or network on the
engine, no socket dir, and ``pyhost gc`` finds nothing to remove.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import pyhost.runtime as dh
from pyhost import py
from pyhost.errors import PyHostError, PythonError, SessionDied
from pyhost.launchers.docker.client import inspect_image
from pyhost.launchers.docker.image import DEFAULT_TAG
from pyhost.launchers.docker.launcher import DockerLauncher
from tests.support.cli import pyhost_command
from tests.support.private_engine import PrivateEngine, load_image

pytestmark = pytest.mark.docker

HOLD = '''\
import time


def hold(until):
    while time.time() < until:
        time.sleep(0.1)
    return "held"
'''


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateEngine]:
    """The private engine, with the session image loaded from the shared one."""
    from pyhost.launchers.docker.dockerd import ensure_engine

    try:
        shared = ensure_engine(install=False)
    except PyHostError as exc:
        pytest.fail(f"the engine restart tests need a Docker engine: {exc}", pytrace=False)
    try:
        if inspect_image(shared, DEFAULT_TAG) is None:
            pytest.fail(f"the session image {DEFAULT_TAG} is missing: run `pyhost image build`",
                        pytrace=False)
        bridge_before = _has_docker0()
        with PrivateEngine() as private:
            load_image(shared, private.start(), DEFAULT_TAG)
            yield private
        assert not private.root.exists(), f"the private engine left {private.root}"
        # It runs in a network namespace of its own: the shared engine's default bridge is
        # still there (a dockerd with --bridge=none deletes docker0 where it runs).
        assert _has_docker0() == bridge_before, "the private engine deleted docker0"
    finally:
        shared.close()


def _has_docker0() -> bool:
    return "docker0" in {name for _index, name in socket.if_nameindex()}


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """Where the launcher makes its socket dirs (short: socket paths have 107 bytes; not
    named like a socket dir, which gc would take for one)."""
    path = tempfile.mkdtemp(prefix="hxrt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launcher(engine: PrivateEngine, runtime_dir: str) -> Iterator[DockerLauncher]:
    """A Docker launcher on the private engine. Its client outlives the engine's restarts
    (it reconnects), as a user's process does."""
    client = docker.DockerClient(base_url=engine.host)
    launcher = DockerLauncher(client=client, runtime_dir=runtime_dir)
    yield launcher
    launcher.close()
    client.close()


def restart(engine: PrivateEngine) -> None:
    engine.stop()  # SIGTERM: dockerd stops its containers, then exits
    engine.start()


def assert_nothing_left(engine: PrivateEngine, runtime_dir: str, home: Path) -> None:
    """No container, volume or network of the test on the engine, no socket dir; and
    ``pyhost gc`` (on the private engine, in the test's home) has nothing to remove."""
    api = engine.client.api if engine.client is not None else None
    assert api is not None
    deadline = time.monotonic() + 30  # a removal the engine deferred is done once it is back
    while api.containers(all=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.containers(all=True) == []
    assert (api.volumes().get("Volumes") or []) == []
    assert sorted(net["Name"] for net in api.networks()) == ["host", "none"]
    assert list(Path(runtime_dir).iterdir()) == []
    gc = pyhost_command("gc", DOCKER_HOST=engine.host, PYHOST_RUNTIME_DIR=runtime_dir,
                        PYHOST_HOME=str(home))
    assert gc.returncode == 0, gc.stderr
    assert "runs: settled 0 run(s) left active by dead processes" in gc.stdout \
        or "runs: no catalog at" in gc.stdout
    assert "containers: removed 0 orphaned container(s) and 0 socket dir(s)" in gc.stdout
    assert "swarm: not a swarm manager: no services to look at" in gc.stdout


def test_a_persistent_session_raises_session_died_naming_the_restart_then_works_again(
        engine, launcher, runtime_dir, tmp_path):
    inits: list[str] = []

    def init(session):
        inits.append(session.container_id)
        session.define("initialised", len(inits))

    session = py(persist="restart-worker", launcher=launcher).init(init)
    try:
        assert session.exec("x = 41").eval("x + 1") == 42
        first = session.container_id
        assert inits == [first]

        restart(engine)

        with pytest.raises(SessionDied) as died:
            py(persist="restart-worker", launcher=launcher).init(init).eval("x")
        assert died.value.engine_lost
        assert "the Docker engine restarted" in str(died.value)
        assert len(inits) == 1  # nothing started for the failed eval
        assert engine.client.api.containers(all=True) == []  # the dead one is removed

        again = py(persist="restart-worker", launcher=launcher).init(init)
        assert again is session
        assert again.eval("initialised") == 2  # init ran again, in a new container
        assert inits == [first, again.container_id] and again.container_id != first
        assert session.stats.restarts == 1
        with pytest.raises(PythonError, match="NameError"):  # a new namespace
            again.eval("x")
    finally:
        session.close()
    assert_nothing_left(engine, runtime_dir, tmp_path / "home")


def test_an_eval_while_the_engine_is_stopped_raises_session_died_then_works_once_it_is_back(
        engine, launcher, runtime_dir, tmp_path):
    with py(launcher=launcher) as session:
        assert session.eval("1 + 1") == 2
        first = session.container_id
        engine.stop()
        try:
            with pytest.raises(SessionDied) as died:
                session.eval("2 + 2")
            assert died.value.engine_lost
            # Which of the two depends on whether the watch saw its stream break yet.
            assert re.search(r"the Docker engine (stopped at \S+ and does not answer|is "
                             r"stopping or down)", str(died.value)), died.value
        finally:
            engine.start()
        assert session.eval("3 + 3") == 6 and session.container_id != first
    # The first container, which the engine could not remove while it was stopped, was
    # removed once it answered again.
    assert_nothing_left(engine, runtime_dir, tmp_path / "home")


def test_running_jobs_end_error_or_complete_on_a_new_attempt_when_the_engine_restarts(
        engine, launcher, runtime_dir, tmp_path):
    home = tmp_path / "home"
    dh.configure(home)
    project = dh.get_or_create_project("restart")
    (tmp_path / "hold.py").write_text(HOLD)
    fn = project.new_function(name="hold", kind="python", code_src=str(tmp_path / "hold.py"),
                              handler="hold")
    started = time.time()
    # No attempt left: ends ERROR. One more attempt: it waits for the engine, and (its
    # handler holding only until `until`, past by then) completes.
    doomed = fn.run(action="job", launcher=launcher, backoff_limit=0,
                    parameters={"until": started + 3600})
    retried = fn.run(action="job", launcher=launcher, backoff_limit=1,
                     parameters={"until": started + 45})
    deadline = time.monotonic() + 60
    while not (doomed.refresh().status.container and retried.refresh().status.container):
        assert time.monotonic() < deadline, "the jobs' containers did not start"
        assert {doomed.status.state, retried.status.state} <= {"CREATED", "READY", "RUNNING"}
        time.sleep(0.1)
    assert doomed.status.state == retried.status.state == "RUNNING"

    engine.stop()
    # With the engine down, the run with no attempt left has ended; the other waits for it.
    doomed.wait(60)
    assert doomed.status.state == "ERROR"
    assert doomed.status.error["type"] == "SessionDied"
    assert "the Docker engine" in doomed.status.error["message"]
    assert "the container is gone with the engine" in doomed.status.error["message"]
    assert retried.refresh().status.state == "RUNNING"
    assert time.time() < started + 45, "the engine stopped too late for the test to tell"

    engine.start()
    retried.wait(120)
    assert retried.status.state == "COMPLETED", retried.status.error
    assert retried.result("output_0") == "held"
    first, second = retried.status.attempts
    assert first["state"] == "ERROR" and first["error"]["type"] == "SessionDied"
    assert "the Docker engine" in first["error"]["message"]
    assert second["state"] == "COMPLETED"
    assert "the engine went away; waiting up to" in retried.logs()

    runs = {run.id: run.status.state for run in project.list_runs()}
    assert runs == {doomed.id: "ERROR", retried.id: "COMPLETED"}  # none stays RUNNING
    assert_nothing_left(engine, runtime_dir, home)
