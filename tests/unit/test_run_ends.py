"""A wait for a run another process executes is told of its end (``pyhost.runtime.run_ends``):
a FIFO in the home whose last writer's close every reader sees, not a poll."""

from __future__ import annotations

import os
import threading
import time

import pytest

import pyhost.runtime as dh
from pyhost.runtime import run_ends, runs
from pyhost.runtime.executions import execution_here
from pyhost.runtime.run_ends import EndWatch, tell_ended


def test_every_waiter_is_told_and_a_new_one_waits_for_the_next_teller(tmp_path):
    first, second = EndWatch(tmp_path, "r1"), EndWatch(tmp_path, "r1")
    assert not first.wait(0.05)  # nobody told yet
    tell_ended(tmp_path, "r1")
    assert first.wait(10) and second.wait(10)
    assert not (tmp_path / "waits" / "r1").exists()  # the teller cleaned up
    third = EndWatch(tmp_path, "r1")
    assert not third.wait(0.05)
    for watch in (first, second, third):
        watch.close()
    tell_ended(tmp_path, "nobody-waits")  # no FIFO: nothing to do, no error


def test_a_planted_file_is_refused_so_the_waiter_polls(tmp_path):
    (tmp_path / "waits").mkdir()
    (tmp_path / "waits" / "r2").write_text("not a fifo")
    with pytest.raises(OSError, match="is not a FIFO"):
        EndWatch(tmp_path, "r2")


def test_the_fifo_is_the_owners_alone(tmp_path):
    with EndWatch(tmp_path, "r3"):
        assert (tmp_path / "waits").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "waits" / "r3").stat().st_mode & 0o777 == 0o600


def test_a_wait_on_another_processes_run_ends_when_its_end_is_recorded(runtime, monkeypatch):
    monkeypatch.setattr(run_ends, "FALLBACK", 3600.0)  # no re-read: only being told ends it
    monkeypatch.setattr(runs, "FALLBACK", 3600.0)
    fn = dh.get_or_create_project("p").new_function(
        name="f", kind="python", code="def f():\n    return 1\n", handler="f")
    record = runs.create_run(runtime, fn, "job", {"function": fn.key})
    run = dh.get_run(record.id)
    assert execution_here(run.id) is None  # as a run of another process

    def settle() -> None:
        time.sleep(0.3)
        current = runtime.get("run", record.id)
        runs.transition(runtime, current, runs.RUNNING, runs.ACTIVE)
        runs.transition(runtime, runtime.get("run", record.id), runs.COMPLETED, runs.ACTIVE)

    settler = threading.Thread(target=settle)
    settler.start()
    assert run.wait(timeout=15).status.state == "COMPLETED"
    settler.join()
    assert not os.listdir(runtime.home / "waits")
