"""N processes writing one SQLite catalog file at once lose nothing, never see "database is
locked", and never both win a compare-and-set. The workers are real interpreters running
``tests/support/catalog_worker.py`` on the catalog of the test's home (moved here from
``tests/unit/``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import pyhost
from pyhost.runtime.catalog import Record, SqliteCatalog

WORKER = Path(__file__).parent.parent / "support" / "catalog_worker.py"
SOURCE = Path(pyhost.__file__).parent.parent
PROCESSES = 4

pytestmark = pytest.mark.docker  # the engine: gc's report on the home, and what is left


def _run_workers(path: Path, count: int, mode: str) -> list[dict[str, Any]]:
    """Start the workers, release them together once all are ready, and return what each
    printed; fail on any exit status, stderr or "locked"."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), str(SOURCE / "container")])}
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(path), str(number),
                                 str(count), mode], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
               for number in range(PROCESSES)]
    try:
        for worker in workers:
            assert worker.stdout is not None
            ready = worker.stdout.readline()
            assert ready == "ready\n", f"a worker did not start: {ready!r} " \
                                       f"{worker.stderr.read() if worker.stderr else ''}"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    failures = [(number, worker.returncode, err) for number, (worker, (_, err))
                in enumerate(zip(workers, results)) if worker.returncode or err.strip()]
    assert not failures, f"workers failed: {failures}"
    assert not any("locked" in out for out, _ in results)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in results]


def _assert_overlapped(reports: list[dict[str, Any]]) -> None:
    # Else the test proves nothing about concurrency. Only some pair is required: on a busy
    # machine one worker may well run alone for a while, and that is no fault of the catalog.
    assert any(one["first"] < other["last"] and other["first"] < one["last"]
               for number, one in enumerate(reports) for other in reports[number + 1:]), \
        f"the workers ran one after another: {reports}"


def _gc_finds_nothing(home) -> None:
    seen = home.gc()
    assert seen.returncode == 0, seen
    assert seen.runs == "settled 0 run(s) left active by dead processes", seen
    assert seen.socket_dirs == 0, seen


def test_processes_making_runs_at_once_lose_nothing(faults_home):
    path = faults_home.path / "catalog.db"
    began = time.monotonic()
    reports = _run_workers(path, 200, "runs")
    elapsed = time.monotonic() - began
    _assert_overlapped(reports)
    catalog = SqliteCatalog(path)
    try:
        runs = catalog.find("run")
        assert len(runs) == PROCESSES * 200
        assert {run.state for run in runs} == {"COMPLETED"}
        assert sorted((run.document["worker"], run.document["number"]) for run in runs) == \
            [(worker, number) for worker in range(PROCESSES) for number in range(200)]
        assert all(len(catalog.find("run", project=f"p{worker}")) == 200
                   for worker in range(PROCESSES))
    finally:
        catalog.close()
    assert elapsed < 60, f"{elapsed:.1f} s"
    _gc_finds_nothing(faults_home)


def test_processes_claiming_the_same_runs_each_win_different_ones(faults_home):
    path = faults_home.path / "catalog.db"
    catalog = SqliteCatalog(path)
    ids = []
    for _ in range(400):
        run = Record("run", "p", uuid.uuid4().hex, uuid.uuid4().hex, "python+job", 1.0, 1.0,
                     "CREATED", {})
        catalog.add(run)
        ids.append(run.id)
    try:
        reports = _run_workers(path, 0, "claim")
        _assert_overlapped(reports)
        won = [id for report in reports for id in report["won"]]
        assert sorted(won) == sorted(ids), "a run was claimed twice, or never"
        for worker, report in enumerate(reports):
            for id in report["won"]:
                record = catalog.get("run", id)
                assert record is not None and record.state == "RUNNING"
                assert record.document == {"owner": worker}
    finally:
        catalog.close()
    _gc_finds_nothing(faults_home)



# Another process's write, then its last connection closed (as a CLI command, a supervisor or
# gc does when it exits).
WRITES_AND_CLOSES = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("INSERT INTO meta (key, value) VALUES ('other process', 'was here')")
conn.close()
"""


def test_a_second_catalog_in_one_process_keeps_the_locks_of_the_first(faults_home):
    path = faults_home.path / "catalog.db"
    first = SqliteCatalog(path)
    second = None
    try:
        first.add(_run_record())
        assert len(first.find("run")) == 1  # its connection reads through the WAL now
        second = SqliteCatalog(path)  # as configure(), gc or a console open one again
        other = faults_home.python(WRITES_AND_CLOSES, str(path))
        assert other.wait(30) == 0
        # Had opening the second dropped this process's locks (a descriptor of the file
        # closed), the other process would have taken itself for the last one and deleted
        # the WAL and its index under the first catalog's connection.
        assert path.with_name("catalog.db-shm").exists() and \
            path.with_name("catalog.db-wal").exists()
        first.add(_run_record())
        assert len(first.find("run")) == len(second.find("run")) == 2
    finally:
        first.close()
        if second is not None:
            second.close()
    reopened = SqliteCatalog(path)
    try:
        assert len(reopened.find("run")) == 2
        assert reopened._read("SELECT value FROM meta WHERE key = 'other process'", ()) == \
            [("was here",)]
        assert reopened._read("PRAGMA integrity_check", ()) == [("ok",)]
    finally:
        reopened.close()
    _gc_finds_nothing(faults_home)


def _run_record() -> Record:
    return Record("run", "p", uuid.uuid4().hex, uuid.uuid4().hex, "python+job", 1.0, 1.0,
                  "CREATED", {})
