"""The host resolves an image's requirements as wheels (pip download for the image's
interpreter and platform, then pip install --target): from a local wheel file, from a local
directory of wheels, and never from an index when offline."""

from __future__ import annotations

import pytest

from pyhost.errors import ImageBuildError
from pyhost.launchers.docker.wheels import install_wheels, platform_tags, wheelhouse_dir
from tests.support.wheels import make_wheel


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A wheelhouse of this test's own, so nothing is found from an earlier one."""
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_local_wheel_file_is_installed_into_the_target(tmp_path, cache):
    wheel = make_wheel(tmp_path / "dist")
    target = tmp_path / "site"
    installed = install_wheels([str(wheel)], "3.9", target, offline=True)
    assert installed == ["pyhost_testpkg==1.0"]
    assert (target / "pyhost_testpkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert not (target / "bin").exists()
    # Kept in the wheelhouse of that interpreter, for the next build with no index at all.
    assert (wheelhouse_dir("3.9", (2, 31)) / wheel.name).is_file()
    assert str(wheelhouse_dir("3.9", (2, 31))).startswith(str(cache))


def test_a_name_is_found_in_a_local_directory_of_wheels(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, version="1.0", source="VALUE = 1\n")
    make_wheel(links, version="2.0", source="VALUE = 2\n")
    target = tmp_path / "site"
    lines: list[str] = []
    installed = install_wheels(["pyhost_testpkg<2"], "3.11", target, glibc=(2, 36),
                               find_links=[str(links)], offline=True, progress=lines.append)
    assert installed == ["pyhost_testpkg==1.0"]
    assert (target / "pyhost_testpkg" / "__init__.py").read_text() == "VALUE = 1\n"
    assert any("resolving wheels for Python 3.11" in line for line in lines)


def test_a_second_install_replaces_the_target(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links)
    target = tmp_path / "site"
    (target / "stale").mkdir(parents=True)
    install_wheels(["pyhost_testpkg"], "3.11", target, find_links=[str(links)], offline=True)
    assert not (target / "stale").exists()


def test_a_requirement_with_no_wheel_is_a_clear_error(tmp_path):
    with pytest.raises(ImageBuildError) as caught:
        install_wheels(["pyhost-no-such-package==9"], "3.11", tmp_path / "site", offline=True)
    message = str(caught.value)
    assert "pyhost-no-such-package==9" in message and "Python 3.11" in message
    assert not (tmp_path / "site").exists()


def test_no_requirements_install_nothing(tmp_path):
    assert install_wheels([], "3.11", tmp_path / "site") == []
    assert not (tmp_path / "site").exists()


def test_platform_tags_go_from_the_images_glibc_down():
    tags = platform_tags((2, 36))
    assert tags[0].startswith("manylinux_2_36_") and tags[-1].startswith("manylinux2014_")
    assert any(tag.startswith("manylinux_2_17_") for tag in tags)
    assert not any(tag.startswith("manylinux_2_37_") for tag in tags)
    with pytest.raises(ImageBuildError):
        platform_tags((2, 5))


def test_what_the_image_has_pins_the_resolution_and_is_left_out(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, name="basedep", version="1.0", source="V = 1\n")
    make_wheel(links, name="basedep", version="2.0", source="V = 2\n")
    make_wheel(links, name="app", version="1.0", requires=("basedep",))
    make_wheel(links, name="needs_new", version="1.0", requires=("basedep>=2",))
    target = tmp_path / "site"
    # The image has basedep 1.0 (a Debian-style local version label): app takes it, and
    # the directory does not carry a second copy of it.
    installed = install_wheels(["app"], "3.11", target, glibc=(2, 36),
                               find_links=[str(links)], offline=True,
                               provided={"basedep": "1.0+dfsg1", "unrelated": "3.2"})
    assert installed == ["app==1.0"]
    assert (target / "app" / "__init__.py").is_file() and not (target / "basedep").exists()
    # A requirement that needs another version than the image's fails, naming it.
    with pytest.raises(ImageBuildError, match="basedep"):
        install_wheels(["needs_new"], "3.11", tmp_path / "other", glibc=(2, 36),
                       find_links=[str(links)], offline=True, provided={"basedep": "1.0"})
    # Without the pin, the newest is taken, into the directory.
    assert install_wheels(["app"], "3.11", tmp_path / "free", glibc=(2, 36),
                          find_links=[str(links)], offline=True) == ["app==1.0",
                                                                     "basedep==2.0"]
