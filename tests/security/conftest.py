"""Attacks on the host, each against real containers and a real catalog: the integration
suite's engine fixtures (no engine is a failure, never a skip), plus the probes every attack
test asserts its bound with (this process's RSS, open file descriptors, a directory's size)."""

import os

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    client,
    io_dir,
    jobs_settle,
    no_leftover_containers,
    our_containers,
    runtime_dir,
)


def rss_bytes() -> int:
    """This process's resident set now (``VmRSS`` of ``/proc/self/status``)."""
    return _status_kib("VmRSS") << 10


def peak_rss_bytes() -> int:
    """The most this process has held resident so far (``VmHWM``)."""
    return _status_kib("VmHWM") << 10


def reset_peak_rss() -> int:
    """Start the peak (``VmHWM``) afresh at the current RSS, and return that RSS, so a test's
    bound is measured from here and not hidden under an earlier test's peak."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return rss_bytes()


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def tree_bytes(path: str | os.PathLike[str]) -> int:
    """The bytes of every file under ``path`` (links not followed)."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


@pytest.fixture
def home(tmp_path, client):  # noqa: F811  (the fixture, not the import)
    """A fresh runtime home (a real SQLite catalog and a store) for one attack."""
    import pyhost.runtime as dh

    dh.configure(tmp_path / "home")
    return tmp_path / "home"
