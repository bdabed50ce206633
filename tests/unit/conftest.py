"""Fixtures of the unit suite: the real hxpy server as a local process (no Docker)."""

import pytest

from pyhost import Session, py
from pyhost.launchers.process import ProcessLauncher


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
