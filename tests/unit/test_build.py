"""The build task on the runtime's side, without an engine: what it checks before anything
is recorded, the run it records, the image it records on the function version (no new
version), and the image later jobs run on. The launcher is a stub that builds nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.errors import ImageBuildError
from pyhost.launchers.base import Launcher, LaunchSpec
from pyhost.launchers.images import BuiltImage, ImageRecipe
from pyhost.runtime.tasks.build import _base_image, _docker_component, image_tag
from pyhost.runtime.tasks.progress import BuildBar, build_progress
from pyhost.runtime.tasks.spec import run_image

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"


class StubBuilder(Launcher):
    """Builds nothing: records the recipes, prints two steps, answers an image (or fails)."""

    name = "stub"

    def __init__(self, fail: str = "") -> None:
        self.recipes: list[ImageRecipe] = []
        self.fail = fail

    def check_recipe(self, recipe: ImageRecipe) -> None:
        return None

    def python_version(self, image: str | None) -> str | None:
        return "3.9" if image == "old:py39" else None

    def build_image(self, recipe, progress=None):
        self.recipes.append(recipe)
        progress("Step 1/2 : FROM base")
        progress("Step 2/2 : RUN " + (recipe.instructions or ("true",))[0])
        if self.fail:
            raise ImageBuildError(self.fail)
        return BuiltImage("sha256:" + "e" * 64, recipe.tag, "hxpy:latest", "sha256:" + "a" * 64,
                          "3.11", "d" * 64, built=len(self.recipes) == 1,
                          packages=("pyhost_testpkg==1.0",), seconds=0.5)

    def start(self, spec: LaunchSpec):
        raise AssertionError("a build starts no session")


@pytest.fixture
def project(tmp_path):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("Demo")


def function(project, **fields):
    return project.new_function(name="Fn_1", kind="python", handler="func1",
                                code_src=str(FUNCTIONS / "main.py"), **fields)


def test_a_build_records_its_run_and_the_image_on_the_version(project):
    fn = function(project, requirements=["pyhost_testpkg==1.0"])
    builder = StubBuilder()
    run = fn.run(action="build", instructions=["echo built > /opt/marker"], wait=True,
                 launcher=builder, progress=False)
    assert run.status.state == "COMPLETED", run.status.error
    assert "/run/python+build/" in run.key
    assert run.spec["action"] == "build" and run.spec["function_id"] == fn.id
    assert run.spec["instructions"] == ["echo built > /opt/marker"]
    status = run.status
    assert status.image == image_tag(fn) and status.image_id == "sha256:" + "e" * 64
    assert status.built is True and status.packages == ["pyhost_testpkg==1.0"]
    assert "Step 2/2 : RUN echo built > /opt/marker" in run.logs()
    timings = status.timings
    assert timings["CREATED"] <= timings["READY"] <= timings["RUNNING"] <= timings["COMPLETED"]
    recipe = builder.recipes[0]
    assert recipe.requirements == ("pyhost_testpkg==1.0",) and recipe.python is None
    assert "main.py" in recipe.files and recipe.allow_network is False
    # Recorded on this version, which stays the same version; later jobs run on it.
    again = function(project, requirements=["pyhost_testpkg==1.0"])
    assert again.id == fn.id
    assert again.built_image()["tag"] == run_image(again, builder) == image_tag(fn)
    assert run_image(function(project), builder) is None  # another version: not built


def test_a_failed_build_is_an_error_with_the_launchers_message(project):
    fn = function(project)
    builder = StubBuilder(fail="instruction 1 of 1, 'false', exited with code 1")
    run = fn.run(action="build", instructions=["false"], wait=True, progress=False,
                 launcher=builder)
    assert run.status.state == "ERROR"
    assert run.status.error["type"] == "ImageBuildError"
    assert "'false', exited with code 1" in run.status.message
    assert "ERROR: instruction 1 of 1" in run.logs()
    assert fn.built_image() is None and run_image(fn, builder) is None


def test_a_background_build_can_be_waited_for(project):
    run = function(project).run(action="build", launcher=StubBuilder(), progress=False)
    assert run.wait(10).status.state == "COMPLETED"


def test_the_tag_is_lower_case_and_names_the_version(project):
    fn = function(project)
    assert image_tag(fn) == f"pyhost/demo/fn_1:{fn.id[:12]}"


@pytest.mark.parametrize("name, component", [("a-_b", "a-b"), ("a__b", "a__b"),
                                             ("a._b", "a-b"), ("A--B", "a--b"),
                                             ("a_", "a"), ("x.y", "x.y")])
def test_names_become_valid_repository_components(name, component):
    assert _docker_component(name) == component


def test_the_base_is_the_functions_base_image_then_image_then_the_default(project):
    launcher = StubBuilder()
    assert _base_image(function(project), launcher) is None
    assert _base_image(function(project, image="img:1"), launcher) == "img:1"
    assert _base_image(function(project, image="img:1", base_image="base:2"), launcher) == \
        "base:2"


@pytest.mark.parametrize("settings, message", [
    ({"instructions": "echo one"}, "instructions is a list"),
    ({"find_links": [3]}, "find_links is a list"),
    ({"offline": "yes"}, "offline is True or False"),
    ({"replicas": 2}, "unknown setting"),
    ({"progress": "fancy"}, "progress="),
])
def test_bad_settings_are_refused_before_anything_is_recorded(project, settings, message):
    fn = function(project)
    with pytest.raises(ConfigurationError, match=message):
        fn.run(action="build", launcher=StubBuilder(), **settings)
    assert project.list_runs() == []


def test_a_base_with_another_python_is_refused_before_anything_starts(project):
    fn = function(project, base_image="old:py39", python_version="PYTHON3_11")
    with pytest.raises(ConfigurationError, match="has Python 3.9"):
        fn.run(action="build", launcher=StubBuilder())
    assert project.list_runs() == []


def test_a_launcher_that_cannot_build_says_so(project, launcher):
    with pytest.raises(ConfigurationError, match="cannot build images"):
        function(project).run(action="build", launcher=launcher)
    assert project.list_runs() == []


def test_the_bar_follows_the_steps():
    stream = io.StringIO()
    bar = BuildBar("img", stream=stream)
    bar("resolving wheels")
    bar("Step 3/4 : RUN echo x")
    assert bar._bar.total == 4 and bar._bar.n == 2
    bar.close(True)
    assert bar._bar.n == 4 and "RUN echo x" in stream.getvalue()


def test_progress_outside_a_terminal_is_log_lines(caplog, capsys):
    report, close = build_progress(None, "img")  # pytest's stderr is no terminal
    with caplog.at_level("INFO", logger="pyhost.build"):
        report("Step 1/1 : FROM x")
    close(True)
    assert "img: Step 1/1 : FROM x" in caplog.text
    report, _ = build_progress("lines", "img")
    report("a line")
    assert "a line" in capsys.readouterr().err
