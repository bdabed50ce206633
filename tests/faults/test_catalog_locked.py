"""The catalog held by another process's write transaction for longer than the busy timeout
(``PYHOST_CATALOG_BUSY_TIMEOUT``, 1.5 s here): a write fails with ``CatalogUnavailable``
after that wait and writes nothing, reads go on meanwhile, and a run that ends while the
lock is held is recorded once it is released: nothing written twice, nothing lost."""

from __future__ import annotations

import subprocess
import textwrap
import time

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost.errors import CatalogUnavailable, NotInCatalog
from pyhost.runtime.catalog.sqlite import SqliteCatalog

pytestmark = pytest.mark.docker

BUSY = 1.5

# Another process's write in flight: its own row written, not yet committed, the lock held
# until the test says, then committed (its write must not be lost either).
HOLDER = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO meta (key, value) VALUES ('held-by', 'another process')")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("released", flush=True)
""")


class _Holder:
    """The other process, holding the catalog's write lock from start to :meth:`release`."""

    def __init__(self, home) -> None:
        self.process = home.python(HOLDER, str(home.path / "catalog.db"),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            assert self.process.stdout.readline() == "released\n"
        assert self.process.wait(10) == 0


@pytest.fixture
def faults_busy_home(faults_home, monkeypatch):
    monkeypatch.setenv("PYHOST_CATALOG_BUSY_TIMEOUT", str(BUSY))
    dh.configure(faults_home.path)
    return faults_home


def test_a_write_fails_after_the_busy_timeout_writes_nothing_and_reads_go_on(faults_busy_home):
    home = faults_busy_home
    project = dh.get_or_create_project("locked")
    first = project.log_dataitem(name="first", kind="table", data=pd.DataFrame({"x": [1, 2]}))
    holder = _Holder(home)
    try:
        began = time.monotonic()
        with pytest.raises(CatalogUnavailable) as failed:
            project.log_dataitem(name="second", kind="table",
                                 data=pd.DataFrame({"x": [3, 4]}))
        waited = time.monotonic() - began
        assert BUSY - 0.1 < waited < BUSY + 1.0, waited  # the documented wait, not 8 of them
        message = str(failed.value)
        assert "stayed locked by another writer" in message, message
        assert f"busy_timeout {BUSY:g} s" in message and "nothing of this operation" in message
        assert project.get_dataitem("first").as_df()["x"].tolist() == [1, 2]  # reads go on
        with pytest.raises(NotInCatalog):
            project.get_dataitem("second")
    finally:
        holder.release()
    assert home.disk_leftovers() == []  # the failed version's table was not left behind
    again = project.log_dataitem(name="second", kind="table", data=pd.DataFrame({"x": [3, 4]}))
    assert home.disk_leftovers() == []
    catalog = SqliteCatalog(home.path / "catalog.db")
    try:
        assert [record.name for record in catalog.find("dataitem")] == ["first", "second"]
        assert catalog._read("SELECT value FROM meta WHERE key = 'held-by'", ()) == \
            [("another process",)]  # the holder's own write is kept too
    finally:
        catalog.close()
    assert again.as_df()["x"].tolist() == [3, 4] and first.as_df()["x"].tolist() == [1, 2]
    seen = home.gc()
    assert seen.returncode == 0 and seen.settled == [] and seen.socket_dirs == 0, seen


ENDS_SOON = textwrap.dedent("""
    import time

    def main(seconds):
        print("ending soon", flush=True)
        time.sleep(seconds)
        return {"answer": 42}
""")


def test_a_run_ending_while_the_catalog_is_locked_is_recorded_once_after(faults_busy_home):
    home = faults_busy_home
    project = dh.get_or_create_project("locked")
    fn = project.new_function(name="ends", kind="python", code=ENDS_SOON, handler="main")
    run = fn.run(action="job", parameters={"seconds": 0.5}, launcher=home.launcher)
    deadline = time.monotonic() + 120
    while "ending soon" not in run.logs():
        assert time.monotonic() < deadline and run.refresh().status.state in ("READY",
                                                                              "RUNNING")
        time.sleep(0.02)
    holder = _Holder(home)  # the handler returns while this holds the lock
    try:
        time.sleep(BUSY * 2.5)  # past the busy timeout: the end's first tries fail
        assert run.refresh().status.state == "RUNNING"  # read meanwhile: not settled yet
    finally:
        holder.release()
    released = time.monotonic()
    run.wait(60)
    assert time.monotonic() - released < 10
    assert run.status.state == "COMPLETED", run.status.to_dict()
    assert run.results() == {"output_0": {"answer": 42}}  # nothing lost
    assert run.logs().startswith("ending soon")
    assert [record.id for record in home_runs(home)] == [run.id]  # nothing written twice
    assert len(run.status.timings) == len({"CREATED", "READY", "RUNNING", "COMPLETED"})
    seen = home.gc()
    assert seen.returncode == 0 and seen.settled == [] and seen.socket_dirs == 0, seen


def home_runs(home) -> list:
    catalog = SqliteCatalog(home.path / "catalog.db")
    try:
        return catalog.find("run")
    finally:
        catalog.close()
