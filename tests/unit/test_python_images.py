"""Which image a Python version runs in, and where its base comes from. No engine: a stub
answers the few engine calls (inspect an image, pull) the routing makes."""

from __future__ import annotations

import sys
from typing import Any

import docker.errors
import pytest

from pyhost.errors import ConfigurationError, ImageBuildError, ImageNotFound
from pyhost.launchers.docker import python_images
from pyhost.launchers.docker.client import inspect_image
from pyhost.launchers.docker.debian_base import base_packages, base_recipe
from pyhost.launchers.docker.image import image_python
from pyhost.launchers.docker.python_images import (
    DEBIAN_VERSIONS,
    image_for_python,
    python_route,
)
from pyhost.launchers.process import ProcessLauncher


class _Api:
    def __init__(self, images: dict[str, dict[str, str]]) -> None:
        self.images = images  # reference -> labels

    def inspect_image(self, reference: str) -> dict[str, Any]:
        if reference not in self.images:
            raise docker.errors.ImageNotFound(reference)
        return {"Id": f"sha256:{abs(hash(reference)):064x}"[:71], "RepoTags": [reference],
                "Config": {"Labels": self.images[reference]}}

    def images(self, filters: Any = None) -> list[dict[str, Any]]:
        return []


class _Client:
    def __init__(self, images: dict[str, dict[str, str]]) -> None:
        self.api = _Api(images)


def _client(images: dict[str, dict[str, str]]) -> Any:
    return _Client(images)


def _default_image(client: Any) -> tuple[str, Any]:
    """What find_image answers when hxpy:latest is the default (None: not present)."""
    return "hxpy:latest", inspect_image(client, "hxpy:latest")


@pytest.mark.parametrize(("version", "suite"), [("3.9", "bullseye"), ("3.11", "bookworm"),
                                                ("3.13", "trixie"), ("3.10", None),
                                                ("3.12", None)])
def test_each_version_maps_to_its_tag_registry_base_and_debian_suite(version, suite):
    route = python_route(version)
    assert route.suite == suite
    assert route.tag == f"hxpy:py{version}"
    assert route.registry_base == f"python:{version}-slim"
    assert route.debian_base == (f"pyhost-base:{suite}" if suite else None)


def test_all_means_the_versions_a_debian_suite_provides():
    assert DEBIAN_VERSIONS == ("3.9", "3.11", "3.13")


@pytest.mark.parametrize("version", ["2.7", "3.8", "3.14", "3", ""])
def test_an_unsupported_version_is_a_configuration_error(version):
    with pytest.raises(ConfigurationError, match="3.9, 3.10, 3.11, 3.12, 3.13"):
        python_route(version)


def test_bullseye_takes_numpy_and_pandas_as_wheels_and_bookworm_is_made_again():
    bullseye = base_recipe("bullseye")
    assert bullseye.packages == ("python3",)
    assert {wheel.split("==")[0] for wheel in bullseye.wheels} >= {"numpy", "pandas",
                                                                   "msgpack", "uvicorn"}
    assert all("==" in wheel for wheel in bullseye.wheels)  # pinned: the label says it all
    # A base made from Debian's python3-numpy, ... carries this label: it is out of date, so
    # it is made again with the pinned wheels.
    assert base_packages("bookworm") != ("python3,python3-numpy,python3-pandas,"
                                         "python3-msgpack,python3-uvicorn")
    assert "wheel:numpy==" in base_packages("bullseye")


def test_image_python_reads_the_label_first_then_the_base():
    assert image_python({"Config": {"Labels": {"org.pyhost.python": "3.9",
                                               "org.pyhost.base": "python:3.12-slim"}}}) == "3.9"
    assert image_python({"Config": {"Labels": {"org.pyhost.base": "python:3.12-slim"}}}) == "3.12"
    assert image_python({"Config": {"Labels": {"org.pyhost.base": "pyhost-base:trixie"}}}) \
        == "3.13"
    assert image_python({"Config": {}}) is None


def test_the_versions_own_tag_is_taken_when_present(monkeypatch):
    client = _client({"hxpy:py3.9": {}, "hxpy:latest": {"org.pyhost.python": "3.11"}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    assert image_for_python(client, "3.9") == "hxpy:py3.9"


def test_the_default_image_comes_first_for_its_own_python(monkeypatch):
    client = _client({"hxpy:py3.11": {}, "hxpy:latest": {"org.pyhost.python": "3.11"}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    assert image_for_python(client, "3.11") is None


def test_the_default_image_serves_its_own_python(monkeypatch):
    client = _client({"hxpy:latest": {"org.pyhost.base": "pyhost-base:bookworm"}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    assert image_for_python(client, "3.11") is None


def test_a_buildable_version_without_its_image_names_the_command(monkeypatch):
    client = _client({"hxpy:latest": {"org.pyhost.python": "3.11"}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    with pytest.raises(ImageNotFound, match=r"pyhost image build --python 3\.13"):
        image_for_python(client, "3.13")


@pytest.mark.parametrize("version", ["3.10", "3.12"])
def test_a_version_no_route_provides_says_what_to_pass(monkeypatch, version):
    client = _client({"hxpy:latest": {"org.pyhost.python": "3.11"}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    with pytest.raises(ConfigurationError) as caught:
        image_for_python(client, version)
    assert f"Python {version}" in str(caught.value)
    assert "image=" in str(caught.value) and "base_image=" in str(caught.value)


def test_a_present_registry_image_makes_the_version_buildable(monkeypatch):
    client = _client({"python:3.12-slim": {}})
    monkeypatch.setattr(python_images, "find_image", _default_image)
    with pytest.raises(ImageNotFound, match=r"--python 3\.12"):
        image_for_python(client, "3.12")


def test_route_base_order_present_images_first_then_pull_then_debootstrap(monkeypatch):
    pulls: list[str] = []
    made: list[str] = []
    monkeypatch.setattr(python_images, "try_pull",
                        lambda client, ref, progress: pulls.append(ref) or False)
    monkeypatch.setattr(python_images, "build_debian_base",
                        lambda client, suite, progress: made.append(suite) or "id")
    route = python_route("3.9")
    current = {"org.pyhost.packages": base_packages("bullseye")}
    # A registry image present wins, with no pull.
    assert python_images._route_base(_client({"python:3.9-slim": {}}), route, None) \
        == "python:3.9-slim"
    # A current Debian base is taken as is: an unchanged build asks no registry.
    assert python_images._route_base(_client({"pyhost-base:bullseye": current}), route,
                                     None) == "pyhost-base:bullseye"
    assert pulls == [] and made == []
    # A base made with another package list is made again, after a failed pull.
    stale = {"org.pyhost.packages": "python3,python3-numpy"}
    assert python_images._route_base(_client({"pyhost-base:bullseye": stale}), route,
                                     None) == "pyhost-base:bullseye"
    assert pulls == ["python:3.9-slim"] and made == ["bullseye"]


def test_no_base_for_a_version_without_a_suite_or_registry(monkeypatch):
    monkeypatch.setattr(python_images, "try_pull", lambda client, ref, progress: False)
    with pytest.raises(ImageBuildError, match=r"image=.*base_image="):
        python_images._route_base(_client({}), python_route("3.10"), None)


def test_the_process_launcher_runs_only_its_own_python():
    launcher = ProcessLauncher()
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert launcher.image_for_python(mine) is None
    other = "3.9" if mine != "3.9" else "3.10"
    with pytest.raises(ConfigurationError, match=rf"Python {other}.*process launcher"):
        launcher.image_for_python(other)
