"""The default session image, and each Python version's, holds exactly what
``container/constraints.txt`` pins: its python3, asked in a real session, reports the pinned
version of each package and nothing unpinned; its ``org.pyhost.versions`` label says the
same; ``pyhost doctor`` shows them; and a build whose image cannot hold the pins is refused
without taking the tag.

Set ``PYHOST_IMAGE`` (and ``PYHOST_BASE_REPOSITORY``) to test an image of your own.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from pyhost import py
from pyhost.errors import ImageBuildError
from pyhost.launchers.docker.doctor import diagnose
from pyhost.launchers.docker.image import DEFAULT_TAG, build_image, image_labels
from pyhost.launchers.docker.image_context import SourceTree, find_sources
from pyhost.launchers.docker.pins import (
    VERSIONS_LABEL,
    parse_versions,
    pin_problems,
    pins_for,
    read_constraints,
    unpinned,
)
from pyhost.launchers.docker.python_images import (
    DEBIAN_VERSIONS,
    build_python_image,
    python_route,
)

pytestmark = pytest.mark.docker

# Every distribution the session's python3 sees, and its "major.minor".
ASK = ("({d.metadata['Name']: d.version for d in __import__('importlib.metadata')"
       ".metadata.distributions() if d.metadata['Name']}, "
       "'%d.%d' % __import__('sys').version_info[:2])")


def _check_holds_the_pins(client: docker.DockerClient, image: str) -> str:
    """Ask the image's python3, in a session, for every distribution; compare with the pins
    and the label. Its Python."""
    installed, python = py(image=image, io=None).timeout(30).eval(ASK)
    wanted = pins_for(read_constraints(find_sources().constraints), python)
    assert pin_problems(installed, wanted) == []
    assert unpinned(installed, wanted) == {}, "the image holds packages no pin names"
    label = image_labels(client.api.inspect_image(image))[VERSIONS_LABEL]
    assert parse_versions(label) == wanted
    return str(python)


def test_the_default_images_versions_are_its_label_and_the_pins(client: docker.DockerClient
                                                                 ) -> None:
    _check_holds_the_pins(client, DEFAULT_TAG)


@pytest.mark.parametrize("version", DEBIAN_VERSIONS)
def test_each_versions_image_holds_its_own_pins(client: docker.DockerClient,
                                                version: str) -> None:
    """``make images`` builds them first; here the build is then a no-op."""
    build_python_image(version, client=client)
    assert _check_holds_the_pins(client, python_route(version).tag) == version


def test_doctor_shows_the_default_images_versions(client: docker.DockerClient) -> None:
    checks = [check for check in diagnose(tag=DEFAULT_TAG) if check.name == "versions"
              and check.detail.startswith(f"{DEFAULT_TAG} ")]
    assert len(checks) == 1 and checks[0].ok, checks
    python = client.api.inspect_image(DEFAULT_TAG)["Config"]["Labels"]["org.pyhost.python"]
    wanted = pins_for(read_constraints(find_sources().constraints), python)
    for name, version in wanted.items():
        assert f"{name} {version}" in checks[0].detail


def test_an_image_that_cannot_hold_the_pins_is_refused(client: docker.DockerClient,
                                                      tmp_path: Path) -> None:
    """Sources whose constraints pin a numpy the base cannot have: pip finds no such
    numpy, or (a base without pip) the check after the build finds another; either way the
    tag is never given, and the image built is not left behind."""
    real = find_sources()
    shutil.copy(real.dockerfile, tmp_path / "Dockerfile.hxpy")
    shutil.copytree(real.container, tmp_path / "container",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    constraints = tmp_path / "container" / "constraints.txt"
    kept = [line for line in constraints.read_text().splitlines()
            if not line.startswith("numpy==")]
    constraints.write_text("\n".join([*kept, "numpy==0.0.1"]) + "\n")
    tag = f"pyhost-test-pins:{uuid.uuid4().hex[:8]}"
    base = image_labels(client.api.inspect_image(DEFAULT_TAG))["org.pyhost.base"]
    before = {image["Id"] for image in client.api.images(all=True)}
    try:
        with pytest.raises(ImageBuildError, match=r"numpy.*0\.0\.1"):
            build_image(tag, base=base, client=client,
                        sources=SourceTree(tmp_path / "Dockerfile.hxpy", tmp_path / "container"))
        with pytest.raises(docker.errors.ImageNotFound):
            client.api.inspect_image(tag)
        left = [image for image in client.api.images(all=True) if image["Id"] not in before
                and (image.get("Labels") or {}).get("org.pyhost.base") == base]
        assert left == [], "the refused image was left behind"
    finally:
        try:
            client.api.remove_image(tag)
        except docker.errors.NotFound:
            pass
