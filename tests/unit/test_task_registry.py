"""The tasks a function runs as are found by name in one registry: a new kind is one module
(here, this test's) and one line in ``TASKS``; ``function.py`` names no task."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.runtime import function as function_module
from pyhost.runtime.runs import COMPLETED, READY, RUNNING, transition
from pyhost.runtime.tasks import TASKS, get_task
from pyhost.runtime.tasks.base import OneShotTask
from pyhost.runtime.tasks.spec import TaskSpec, common_settings

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"


@dataclass
class EchoSpec(TaskSpec):
    word: str = ""

    def own_record(self):
        return {"word": self.word}


class EchoTask(OneShotTask[EchoSpec]):
    """A tiny kind: it checks one setting of its own and answers it back."""

    action = "echo"

    def check(self, function, runtime, *, word="", **settings):
        if not isinstance(word, str):
            raise ConfigurationError(f"word is a string, not {word!r}")
        return EchoSpec(**common_settings("echo", **settings), word=word)

    def execute(self, function, runtime, record, spec, execution):
        record = transition(runtime, record, RUNNING, READY)
        transition(runtime, record, COMPLETED, RUNNING, results={"echo": spec.word * 2})
        return None


@pytest.fixture
def fn(tmp_path):
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("demo")
    return project.new_function(name="fn", kind="python", handler="func1",
                                code_src=str(FUNCTIONS / "main.py"))


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setitem(TASKS, "echo", f"{__name__}:EchoTask")  # the one registry line


def test_a_new_kind_is_one_class_and_one_registry_line(fn, echo):
    run = fn.run(action="echo", word="hi", wait=True)
    assert run.status.state == COMPLETED and run.results() == {"echo": "hihi"}
    assert "/run/python+echo/" in run.key
    assert run.spec["word"] == "hi" and run.spec["action"] == "echo"
    assert run.spec["envs"] == [] and run.spec["launcher"] == "docker"  # the shared spec
    background = fn.run(action="echo", word="yo")  # the skeleton's thread
    assert background.wait(10).results() == {"echo": "yoyo"}


def test_the_new_kinds_settings_are_checked_before_anything_is_recorded(fn, echo):
    with pytest.raises(ConfigurationError, match="word is a string"):
        fn.run(action="echo", word=3)
    with pytest.raises(ConfigurationError, match=r"action='echo'\): unknown setting.*colour"):
        fn.run(action="echo", colour="red")
    assert dh.list_runs("demo") == []


def test_an_unknown_action_names_the_kinds_there_are(fn):
    with pytest.raises(ConfigurationError, match="runs as 'job', 'build', 'serve'"):
        fn.run(action="deploy")
    with pytest.raises(ConfigurationError, match="cannot load"):
        TASKS["broken"] = "pyhost.nowhere:Task"
        try:
            get_task("broken")
        finally:
            del TASKS["broken"]


def test_a_registry_line_that_names_no_task_is_refused(monkeypatch):
    monkeypatch.setitem(TASKS, "odd", "pyhost.runtime.function:Function")
    with pytest.raises(ConfigurationError, match="is not a Task class"):
        get_task("odd")


def test_function_imports_no_task_module():
    tree = ast.parse(Path(function_module.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)]
    assert "tasks" in imported  # the registry
    assert not [name for name in imported if name.startswith("tasks.")], imported
