"""The session image's pins (``container/constraints.txt``): the file parses, pins every
package both build routes install for every Python version an image can have, and is part
of the build context and its hash; the routes take their packages from it and nowhere
else. No engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyhost.errors import ImageBuildError
from pyhost.launchers.docker import image_context
from pyhost.launchers.docker.debian_base import SUITE_PYTHON, base_packages, base_recipe
from pyhost.launchers.docker.image_context import (
    CONSTRAINTS_NAME,
    SourceTree,
    find_sources,
    snapshot_constraints,
    snapshot_sources,
    source_hash,
)
from pyhost.launchers.docker.libraries import USER_LIBRARIES
from pyhost.launchers.docker.pins import (
    format_versions,
    parse_constraints,
    parse_versions,
    pin_problems,
    pins_for,
    read_constraints,
    unpinned,
)
from pyhost.launchers.docker.python_images import SUPPORTED_VERSIONS

# What the hxpy server imports (msgpack, numpy, pandas) and the serve task runs (uvicorn).
SERVER = {"msgpack", "numpy", "pandas", "uvicorn"}
IMPORT_NAMES = {"scikit-learn": "sklearn", "python-dateutil": "dateutil"}


@pytest.fixture(scope="module")
def pins():
    return read_constraints(find_sources().constraints)


@pytest.mark.parametrize("python", SUPPORTED_VERSIONS)
def test_every_package_is_pinned_once_for_each_python(pins, python):
    chosen = pins_for(pins, python)  # raises on a name pinned twice for this Python
    wanted = SERVER | set(USER_LIBRARIES)
    assert wanted <= set(chosen), f"Python {python}: {wanted - set(chosen)} not pinned"
    assert all(re.fullmatch(r"\d+(\.\d+)+", version) for version in chosen.values())


def test_uvicorns_typing_extensions_is_pinned_where_it_needs_it(pins):
    # pip on the host judges uvicorn's `python_version < "3.11"` by its own interpreter, so
    # the file must name it for the older ones.
    assert "typing-extensions" in pins_for(pins, "3.9")
    assert "typing-extensions" in pins_for(pins, "3.10")
    assert "typing-extensions" not in pins_for(pins, "3.13")


def test_every_line_names_a_version_some_image_uses(pins):
    used = {(pin.name, pin.version) for python in SUPPORTED_VERSIONS
            for pin in pins if pin.applies(python)}
    assert used == {(pin.name, pin.version) for pin in pins}


@pytest.mark.parametrize("suite", sorted(SUITE_PYTHON))
def test_a_debian_base_is_python3_and_exactly_the_pins(pins, suite):
    # No python3-numpy & co: an apt mirror holds only a suite's current version of each.
    recipe = base_recipe(suite)
    assert recipe.packages == ("python3",)
    assert dict(wheel.split("==") for wheel in recipe.wheels) == \
        pins_for(pins, SUITE_PYTHON[suite])
    assert base_packages(suite) == recipe.label()
    # the layout is in the label: a base without the site dir on its PYTHONPATH is remade
    assert recipe.label().endswith(",site:/opt/pyhost/site")


def test_the_dockerfile_installs_the_constraints_and_nothing_else():
    text = find_sources().dockerfile.read_text()
    step = text[text.index("COPY container/constraints.txt"):text.index("# The sandbox user")]
    assert step.startswith("COPY container/constraints.txt /opt/pyhost/constraints.txt\n")
    install = step[step.index("pip install"):step.index("else")]
    assert "--requirement /opt/pyhost/constraints.txt" in install
    # Every other word of the install is an option: no package named outside the file.
    words = install.replace("\\", " ").replace(";", " ").split()[2:]
    assert all(word.startswith("-") or word == "/opt/pyhost/constraints.txt"
               for word in words), words
    imports = step[step.index("python3 -c 'import"):].split("'")[1].split(";")[0]
    for name in SERVER | set(USER_LIBRARIES):
        assert re.search(rf"\b{IMPORT_NAMES.get(name, name)}\b", imports), f"{name} not checked"


def test_the_constraints_are_in_the_context_and_the_hash(tmp_path: Path):
    (tmp_path / "container" / "hxpy").mkdir(parents=True)
    (tmp_path / "Dockerfile.hxpy").write_text("FROM scratch\n")
    (tmp_path / "container" / "hxpy" / "__init__.py").write_text("")
    constraints = tmp_path / "container" / "constraints.txt"
    constraints.write_text("numpy==2.0.2\n")
    tree = SourceTree(tmp_path / "Dockerfile.hxpy", tmp_path / "container")
    assert tree.constraints == constraints
    snapshot = snapshot_sources(tree)
    assert CONSTRAINTS_NAME in [name for name, _, _ in snapshot]
    assert pins_for(snapshot_constraints(snapshot), "3.11") == {"numpy": "2.0.2"}
    before = source_hash(tree)
    constraints.write_text("numpy==2.0.1\n")
    assert source_hash(tree) != before


def test_a_wheels_tree_ships_the_constraints_beside_the_dockerfile(tmp_path: Path):
    shipped = tmp_path / "pyhost"
    (tmp_path / "site" / "hxpy").mkdir(parents=True)
    shipped.mkdir()
    (shipped / "Dockerfile.hxpy").write_text("FROM scratch\n")
    (shipped / "constraints.txt").write_text("numpy==2.0.2\n")
    (tmp_path / "site" / "hxpy" / "__init__.py").write_text("")
    (tmp_path / "site" / "requests").mkdir()  # a neighbour in site-packages: not taken
    (tmp_path / "site" / "requests" / "__init__.py").write_text("")
    tree = image_context._WheelSourceTree(shipped / "Dockerfile.hxpy", tmp_path / "site")
    assert [name for name, _ in tree.files()] == [
        "Dockerfile.hxpy", CONSTRAINTS_NAME, "container/hxpy/__init__.py"]


def test_a_snapshot_without_constraints_is_refused():
    with pytest.raises(ImageBuildError, match="container/constraints.txt"):
        snapshot_constraints([("Dockerfile.hxpy", b"FROM scratch\n", False)])


@pytest.mark.parametrize(("line", "message"), [
    ("numpy>=2", "not name==version"),
    ("numpy", "not name==version"),
    ("numpy[extra]==2.0", "not name==version"),
    ("numpy==2.0; sys_platform == 'linux'", "python_version only, not sys_platform"),
    ("numpy==2.0; python_version >>> '3.9'", "line 2"),
])
def test_a_line_that_pins_nothing_exact_is_refused_with_its_number(line, message):
    with pytest.raises(ImageBuildError, match=re.escape(message)):
        parse_constraints(f"# pins\n{line}\n", "c.txt")


def test_markers_choose_the_pin_per_python_and_a_double_pin_is_refused():
    pins = parse_constraints('Numpy==2.0.2; python_version == "3.9"\n'
                             'numpy==2.3.5; python_version >= "3.10"  # newer\n'
                             "Typing_Extensions==4.16.0\n")
    assert pins_for(pins, "3.9") == {"numpy": "2.0.2", "typing-extensions": "4.16.0"}
    assert pins_for(pins, "3.13")["numpy"] == "2.3.5"
    twice = parse_constraints("numpy==2.0.2\nnumpy==2.3.5; python_version >= '3.11'\n")
    with pytest.raises(ImageBuildError, match=r"numpy twice for Python 3\.11 \(lines 1 and 2\)"):
        pins_for(twice, "3.11")
    assert pins_for(twice, "3.9") == {"numpy": "2.0.2"}


def test_what_an_image_holds_is_compared_by_normalized_name():
    wanted = {"numpy": "2.3.5", "scikit-learn": "1.9.1", "typing-extensions": "4.16.0"}
    installed = {"numpy": "2.3.4", "Scikit_Learn": "1.9.1", "pip": "25.0", "requests": "2.32"}
    assert pin_problems(installed, wanted) == ["numpy is 2.3.4, pinned 2.3.5",
                                               "typing-extensions is missing (pinned 4.16.0)"]
    assert unpinned(installed, wanted) == {"requests": "2.32"}  # pip is tooling
    assert pin_problems({"numpy": "2.3.5", "scikit-learn": "1.9.1",
                         "typing_extensions": "4.16.0"}, wanted) == []


def test_the_versions_label_round_trips():
    versions = {"pandas": "2.3.3", "numpy": "2.3.5"}
    assert format_versions(versions) == "numpy==2.3.5,pandas==2.3.3"
    assert parse_versions(format_versions(versions)) == versions
    assert parse_versions("") == {}


def test_doctor_shows_the_label_and_fails_an_image_whose_pins_moved(pins):
    from pyhost.launchers.docker.doctor import _check_versions

    wanted = pins_for(pins, "3.11")

    def attrs(labels):
        return {"Config": {"Labels": {"org.pyhost.python": "3.11", **labels}}}
    current = _check_versions("hxpy:x", attrs({"org.pyhost.versions": format_versions(wanted)}),
                              pins, "`pyhost image build`")
    assert current.ok and "numpy " + wanted["numpy"] in current.detail
    moved = _check_versions("hxpy:x", attrs({"org.pyhost.versions": format_versions(
        {**wanted, "numpy": "1.0"})}), pins, "`pyhost image build`")
    assert not moved.ok and f"numpy is 1.0, pinned {wanted['numpy']}" in moved.detail
    assert "pyhost image build" in moved.detail
    old = _check_versions("hxpy:x", attrs({}), pins, "`pyhost image build`")
    assert not old.ok and "records no pinned versions" in old.detail
