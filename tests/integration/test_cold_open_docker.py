"""A cold open asks the engine only what it must (issue #23): the image is not inspected
before the create, and the key goes over stdin once the container runs. What that must not
change, against the real engine:

* a tag moved to another image between two sessions of one launcher is followed: the second
  session runs in the image the tag names now, never one remembered from before;
* an image that is not there (or a reference that is not one) is ImageNotFound naming it and
  what to build, and nothing is left behind;
* a server that ends before it takes its key is a SessionDied with its exit code and output;
  and if handing over the key fails because the container ended, it says so too.
"""

from __future__ import annotations

import io
import os
import uuid

import pytest

from pyhost import ImageNotFound, SessionDied, py
from pyhost.launchers.docker import launcher as launcher_module
from pyhost.launchers.docker.image import resolve_image
from pyhost.launchers.docker.launcher import DockerLauncher

pytestmark = pytest.mark.docker


def _derived(client, images, base: str, instruction: str) -> str:
    """Build ``FROM base`` + ``instruction`` under a fresh test tag; its image id."""
    tag = f"pyhost-test-coldopen-{uuid.uuid4().hex[:10]}:t"
    images.append(tag)
    dockerfile = f"FROM {base}\n{instruction}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    return str(image.id)


def _image_of(client, session) -> str:
    return str(client.api.inspect_container(f"pyhost-{session.id}")["Image"])


def test_a_moved_tag_is_followed_by_the_next_session(client, images):
    base = resolve_image(client)
    first = _derived(client, images, base, "LABEL org.pyhost.test.moved=first")
    second = _derived(client, images, base, "LABEL org.pyhost.test.moved=second")
    assert first != second
    repository, tag = f"pyhost-test-coldopen-moved-{uuid.uuid4().hex[:8]}", "t"
    images.append(f"{repository}:{tag}")
    client.api.tag(first, repository, tag)
    launcher = DockerLauncher()  # one launcher for both: nothing it keeps may go stale
    with py(io=None, launcher=launcher, image=f"{repository}:{tag}") as session:
        assert session.eval("6 * 7") == 42
        assert _image_of(client, session) == first
    client.api.tag(second, repository, tag, force=True)  # the tag now names the other image
    with py(io=None, launcher=launcher, image=f"{repository}:{tag}") as session:
        assert session.eval("6 * 7") == 42
        assert _image_of(client, session) == second


@pytest.mark.parametrize("reference", [f"pyhost-absent-{uuid.uuid4().hex[:8]}:none",
                                       "Not A Reference!"])
def test_an_absent_image_is_named_and_nothing_is_left(client, runtime_dir, our_containers,
                                                      reference):
    session = py(io=None, launcher=DockerLauncher(runtime_dir=runtime_dir), image=reference)
    with pytest.raises(ImageNotFound, match=r"is not present on this engine.*"
                                            r"`pyhost image build`") as caught:
        session.eval("1")
    assert repr(reference) in str(caught.value)
    assert os.listdir(runtime_dir) == []  # the socket directory made for it is gone
    assert our_containers() == []


def test_a_server_that_ends_at_once_is_reported_with_its_exit_and_output(
        client, images, runtime_dir, our_containers):
    image = _derived(client, images, resolve_image(client),
                     'ENTRYPOINT ["sh", "-c", "echo ended at once >&2; exit 7"]')
    session = py(io=None, launcher=DockerLauncher(runtime_dir=runtime_dir), image=image)
    with pytest.raises(SessionDied, match="exit code 7") as caught:
        session.eval("1")
    assert caught.value.exit_code == 7
    assert "ended at once" in str(caught.value)
    assert os.listdir(runtime_dir) == []
    assert our_containers() == []


def test_a_key_that_cannot_be_handed_over_to_an_ended_container_says_it_ended(
        client, images, runtime_dir, our_containers, monkeypatch):
    # The engine lets a client attach to a container that has just ended, so the attach
    # failing is forced here: the launcher must then ask how the container is and say so.
    image = _derived(client, images, resolve_image(client),
                     'ENTRYPOINT ["sh", "-c", "echo ended at once >&2; exit 7"]')

    def no_key(stdin, line):
        raise launcher_module.EngineUnavailable("could not hand the session key over (test)")

    monkeypatch.setattr(launcher_module, "_send_key", no_key)
    launcher = DockerLauncher(runtime_dir=runtime_dir)
    real_start = launcher.client.api.start

    def start_and_wait(container, *args, **kwargs):
        real_start(container, *args, **kwargs)
        launcher.client.api.wait(container, timeout=30)  # it has ended before the key goes

    monkeypatch.setattr(launcher.client.api, "start", start_and_wait)
    session = py(io=None, launcher=launcher, image=image)
    with pytest.raises(SessionDied, match="ended before it took its key: exit code 7"):
        session.eval("1")
    assert our_containers() == []


def test_user_code_sees_what_python_m_hxpy_gives_it_without_runpy(client):
    # The image starts the server with -c (SERVER_ENTRYPOINT): no runpy at start, and yet
    # the __main__ and sys.argv that -m gives (multiprocessing and pandas look at them).
    with py(io=None) as session:
        session.exec("import sys, __main__")
        assert session.eval("sys.argv") == ["/opt/hxpy/hxpy/__main__.py"]
        assert session.eval("(__main__.__name__, __main__.__spec__.name, __main__.__file__)") \
            == ["__main__", "hxpy.__main__", "/opt/hxpy/hxpy/__main__.py"]
        assert session.eval("'runpy' in sys.modules") is False
