"""Integration tests run against a real Docker engine and the real hxpy image.

No engine is a FAILURE, never a skip: `make test` brings the engine up and builds the image
first, so a missing engine here means the set-up is broken.
"""

import os
import shutil
import tempfile
import time

import pytest

from pyhost.launchers.ownership import LABEL_PREFIX
from tests.support.engine import engine_with_image


@pytest.fixture(scope="session")
def client():
    return engine_with_image("integration tests")


def _ours(client):
    return client.api.containers(
        all=True, filters={"label": [f"{LABEL_PREFIX}.owner.pid={os.getpid()}"]})


@pytest.fixture(autouse=True)
def no_leftover_containers(client):
    """Every test must leave no container of ours behind; any it leaves is removed and the
    test fails."""
    before = {c["Id"] for c in _ours(client)}
    yield
    left = [c for c in _ours(client) if c["Id"] not in before]
    for container in left:
        client.api.remove_container(container["Id"], force=True)
    assert not left, f"the test left {len(left)} container(s) behind"


@pytest.fixture
def our_containers(client):
    """A function listing the containers of this process (for "nothing was started")."""
    return lambda: _ours(client)


@pytest.fixture
def jobs_settle(client):
    """A finished job's container is removed in the background just after its run is
    recorded: a test of jobs waits for that (seconds at most) before its leftovers are
    counted by :func:`no_leftover_containers`."""
    yield
    deadline = time.monotonic() + 10
    while _ours(client) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def io_dir(tmp_path):
    path = tmp_path / "io"
    return str(path)


@pytest.fixture
def runtime_dir():
    """A fresh directory for a ``DockerLauncher(runtime_dir=...)``'s socket dirs, so a test
    looks for leftovers where they really are. Short (a socket path must fit in 107 bytes),
    and not named ``pyhost-*-*``, which gc would take for a socket dir of its own."""
    path = tempfile.mkdtemp(prefix="hxrt-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def images(client):
    """Tags to remove after the test (with the images under them)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            client.api.remove_image(tag, force=True)
        except Exception:  # not built: nothing to remove
            pass
