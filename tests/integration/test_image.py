"""The session image on a real engine: built once, a no-op after, and usable as promised.

The ``client`` fixture (tests/integration/conftest.py) brings up the engine and builds the
image. Every container made here carries ``org.pyhost.test=1`` and is force-removed by the
``run_in_image`` fixture; the one extra image a test builds is removed by that test.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import pytest

from pyhost.errors import ImageNotFound
from pyhost.launchers.docker.image import (
    DEFAULT_TAG,
    HASH_LABEL,
    SERVER_ENTRYPOINT,
    build_image,
    image_status,
    resolve_image,
)
from pyhost.launchers.docker.image_context import SourceTree, find_sources, source_hash
from tests.support.user_libraries import check_user_libraries

pytestmark = pytest.mark.docker

TEST_LABELS = {"org.pyhost.test": "1"}
RunInImage = Callable[..., "tuple[int, str]"]


@pytest.fixture
def run_in_image(client: docker.DockerClient) -> Iterator[RunInImage]:
    """Run a command in the image (entrypoint replaced) and return (exit code, output)."""
    created: list[str] = []

    def run(argv: list[str], image: str = DEFAULT_TAG, **options: object) -> tuple[int, str]:
        options = {"read_only": True, "network_disabled": True, **options}
        container = client.containers.create(image, entrypoint=argv, labels=TEST_LABELS,
                                             **options)
        created.append(container.id)
        container.start()
        status = container.wait(timeout=120)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return int(status["StatusCode"]), output

    yield run
    for container_id in created:
        try:
            client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass


def test_a_second_build_is_a_noop(client: docker.DockerClient) -> None:
    first = build_image(client=client)
    said: list[str] = []
    started = time.monotonic()
    second = build_image(client=client, progress=said.append)
    elapsed = time.monotonic() - started
    assert second == first
    assert elapsed < 5, f"an unchanged build took {elapsed:.1f} s"
    assert any("up to date" in line for line in said)
    assert not any(line.startswith("Step ") for line in said)


def test_the_image_is_labelled_with_the_current_source_hash(client: docker.DockerClient) -> None:
    status = image_status(client=client)
    assert status.present and status.up_to_date
    assert status.built_hash == source_hash()
    assert status.base  # python:3.12-slim or pyhost-base:<suite>
    labels = client.api.inspect_image(DEFAULT_TAG)["Config"]["Labels"]
    assert labels[HASH_LABEL] == status.built_hash


def test_the_image_is_configured_for_sessions(client: docker.DockerClient) -> None:
    config = client.api.inspect_image(DEFAULT_TAG)["Config"]
    assert config["Entrypoint"] == list(SERVER_ENTRYPOINT)
    assert config["User"] == "61000"  # SANDBOX_UID: no account on a host
    assert config["WorkingDir"] == "/io"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_it_runs_as_the_sandbox_uid_not_root(run_in_image: RunInImage) -> None:
    code, output = run_in_image(
        ["python3", "-c", "import os, pwd; print(os.getuid(), os.getgid(), "
                          "pwd.getpwuid(os.getuid()).pw_name, os.getcwd())"])
    assert code == 0, output
    assert output.split() == ["61000", "61000", "hxpy", "/io"]


def test_numpy_pandas_msgpack_and_hxpy_import_on_a_read_only_root(
        run_in_image: RunInImage) -> None:
    script = (
        "import importlib.util, os, hxpy, numpy, pandas, msgpack\n"
        "frame = pandas.DataFrame({'a': numpy.arange(3)})\n"
        "assert msgpack.unpackb(msgpack.packb([1, 'x'])) == [1, 'x']\n"
        "assert int(frame['a'].sum()) == 3\n"
        "pyc = importlib.util.cache_from_source(hxpy.__file__)\n"
        "print(hxpy.__file__, os.path.exists(pyc), os.access(os.path.dirname(hxpy.__file__), "
        "os.W_OK), numpy.__version__, pandas.__version__)\n"
    )
    code, output = run_in_image(["python3", "-c", script])
    assert code == 0, output
    where, compiled, writable, *_versions = output.split()
    assert where == "/opt/hxpy/hxpy/__init__.py"
    assert compiled == "True", "hxpy's bytecode must be compiled at build time"
    assert writable == "False", "the session user must not be able to change the server"


def test_the_libraries_for_user_code_in_a_session_of_the_default_image(
        client: docker.DockerClient) -> None:
    """scipy, scikit-learn, numexpr, tzdata (and dateutil, pytz) import and compute, and the
    server had loaded none of them."""
    check_user_libraries(DEFAULT_TAG)


def test_resolve_image_prefers_the_built_image(client: docker.DockerClient) -> None:
    assert resolve_image(client) == DEFAULT_TAG
    assert resolve_image(client, DEFAULT_TAG) == DEFAULT_TAG
    with pytest.raises(ImageNotFound, match="pyhost image build"):
        resolve_image(client, f"pyhost-absent-{uuid.uuid4().hex[:8]}:none")


@pytest.fixture
def scratch_tag(client: docker.DockerClient) -> Iterator[str]:
    """A fresh tag for a test's own image, removed afterwards (after its containers)."""
    tag = f"pyhost-test-image:{uuid.uuid4().hex[:8]}"
    yield tag
    try:
        client.api.remove_image(tag)
    except docker.errors.NotFound:
        pass


def test_changed_sources_are_rebuilt(client: docker.DockerClient, tmp_path: Path,
                                     scratch_tag: str, run_in_image: RunInImage) -> None:
    """A copy of the sources with one extra file gets a new hash and a new image."""
    real = find_sources()
    shutil.copy(real.dockerfile, tmp_path / "Dockerfile.hxpy")
    shutil.copytree(real.container, tmp_path / "container",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tmp_path / "container" / "hxpy" / "_marker.py").write_text("MARK = 'changed'\n")
    changed = SourceTree(tmp_path / "Dockerfile.hxpy", tmp_path / "container")
    tag = scratch_tag
    base = client.api.inspect_image(DEFAULT_TAG)["Config"]["Labels"]["org.pyhost.base"]
    said: list[str] = []
    image_id = build_image(tag, base=base, client=client, sources=changed, progress=said.append)
    assert image_id != client.api.inspect_image(DEFAULT_TAG)["Id"]
    assert any(line.startswith("Step ") for line in said)
    labels = client.api.inspect_image(tag)["Config"]["Labels"]
    assert labels[HASH_LABEL] == source_hash(changed) != source_hash(real)
    code, output = run_in_image(["python3", "-c", "import hxpy._marker as m; print(m.MARK)"],
                                image=tag)
    assert (code, output.strip()) == (0, "changed")
    assert build_image(tag, base=base, client=client, sources=changed) == image_id
