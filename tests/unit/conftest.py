"""Fixtures of the unit suite: the real hxpy server as a local process (no Docker); a
runtime home, handlers and a table for the tests of the ``pyhost`` command."""

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import Session, py
from pyhost.launchers.process import ProcessLauncher
from tests.support.cli import HANDLERS


@pytest.fixture
def launcher():
    """A process launcher whose servers are all removed after the test."""
    launcher = ProcessLauncher()
    yield launcher
    for instance in launcher.started:
        instance.cleanup()


def session(launcher: ProcessLauncher, **options: object) -> Session:
    """``py()`` on ``launcher`` with no io directory."""
    return py(launcher=launcher, io=None, **options)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A runtime home for this test, seen by this process and by the ones it starts."""
    path = tmp_path / "home"
    monkeypatch.setenv("PYHOST_HOME", str(path))
    dh.configure(path)
    return path


@pytest.fixture
def handlers(tmp_path):
    """The handlers of `tests/support/cli.py`, as a source file of this test."""
    path = tmp_path / "jobs.py"
    path.write_text(HANDLERS)
    return path


@pytest.fixture
def table(home):
    project = dh.get_or_create_project("demo")
    return project.log_dataitem(name="numbers", kind="table",
                                data=pd.DataFrame({"x": [1, 2, 3]}))


@pytest.fixture
def runtime(tmp_path):
    """This process's runtime on a fresh catalog and store in a temporary home."""
    return dh.configure(tmp_path / "home")
