"""The libraries every session image gives user code (hxPy's set), as the recipes and the
Dockerfile name them, and how ``pyhost doctor`` reads an image's answer. No engine: a stub
answers the one inspect call, and the probe is replaced by a counter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pyhost.launchers.docker import libraries
from pyhost.launchers.docker.debian_base import SUITE_PYTHON, _slim_rootfs, base_recipe
from pyhost.launchers.docker.libraries import USER_LIBRARIES, ImageLibraries, image_libraries
from pyhost.launchers.docker.probe import PythonFacts

HXPY_SET = {"numpy", "pandas", "scipy", "scikit-learn", "python-dateutil", "pytz", "tzdata",
            "numexpr"}


def test_the_set_is_hxpys():
    assert set(USER_LIBRARIES) == HXPY_SET


@pytest.mark.parametrize("suite", sorted(SUITE_PYTHON))
def test_each_suites_recipe_brings_every_library(suite):
    recipe = base_recipe(suite)
    brought = {re.split(r"[=<>]", wheel)[0] for wheel in recipe.wheels}
    assert set(USER_LIBRARIES) <= brought, f"{suite} lacks {set(USER_LIBRARIES) - brought}"


def test_bullseye_takes_the_scientific_stack_as_wheels_for_its_numpy():
    # Debian bullseye's scipy 1.6 and scikit-learn 0.23 were built for its numpy 1.19, not
    # for the numpy 2.0 wheel the base carries: all of them come as cp39 wheels.
    wheels = dict(wheel.split("==") for wheel in base_recipe("bullseye").wheels)
    assert wheels["numpy"].startswith("2.0.")
    assert {"scipy", "scikit-learn", "numexpr", "joblib", "threadpoolctl"} <= set(wheels)
    assert base_recipe("bullseye").packages == ("python3",)


def test_what_an_image_has_and_lacks_is_matched_by_normalized_name():
    found = ImageLibraries("hxpy:x", "sha256:ab", {"numpy": "1.24.2", "Scikit_Learn": "1.2.1",
                                                   "pandas": "1.5.3", "msgpack": "1.0"})
    assert found.versions == {"numpy": "1.24.2", "pandas": "1.5.3", "scikit-learn": "1.2.1"}
    assert found.missing == ("scipy", "python-dateutil", "pytz", "tzdata", "numexpr")
    assert str(found) == ("hxpy:x: numpy 1.24.2, pandas 1.5.3, scikit-learn 1.2.1; lacks "
                          "scipy, python-dateutil, pytz, tzdata, numexpr")


class _Client:
    class api:  # noqa: N801 - docker's attribute name
        @staticmethod
        def inspect_image(reference: str) -> dict[str, Any]:
            if reference != "hxpy:x":
                raise docker.errors.ImageNotFound(reference)
            return {"Id": "sha256:" + "ab" * 32, "RepoTags": [reference]}


def test_an_image_is_probed_once_then_read_from_the_cache(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path))
    probes = []

    def probe(client: Any, image: str) -> PythonFacts:
        probes.append(image)
        return PythonFacts("3.11", (2, 36), (), {name: "1.0" for name in USER_LIBRARIES})

    monkeypatch.setattr(libraries, "probe_python", probe)
    first = image_libraries(_Client(), "hxpy:x")  # type: ignore[arg-type]
    second = image_libraries(_Client(), "hxpy:x")  # type: ignore[arg-type]
    assert probes == ["sha256:" + "ab" * 32]
    assert first is not None and second is not None
    assert first.versions == second.versions and not second.missing
    assert image_libraries(_Client(), "hxpy:absent") is None  # type: ignore[arg-type]
    # A cache file that is not what we write is asked again, not trusted.
    cached = next((tmp_path / "image-probes").iterdir())
    cached.write_text('{"numpy": 2}')
    image_libraries(_Client(), "hxpy:x")  # type: ignore[arg-type]
    assert len(probes) == 2


def test_slimming_keeps_the_test_module_numpy_testing_imports(tmp_path: Path):
    numpy = tmp_path / "usr/lib/python3/dist-packages/numpy"
    scipy = tmp_path / "usr/lib/python3/dist-packages/scipy"
    for path in (numpy / "_core/tests/_natype.py", numpy / "_core/tests/test_big.py",
                 numpy / "_core/tests/data/x.csv", numpy / "linalg/tests/test_linalg.py",
                 scipy / "linalg/tests/test_basic.py", scipy / "linalg/_solve.py"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    _slim_rootfs(tmp_path)
    assert sorted(p.name for p in (numpy / "_core/tests").iterdir()) == ["_natype.py"]
    assert not (numpy / "linalg/tests").exists() and not (scipy / "linalg/tests").exists()
    assert (scipy / "linalg/_solve.py").exists()
