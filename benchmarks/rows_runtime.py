"""Rows about the python runtime (``pyhost.runtime``): a trivial job run in this process, in a
cold container and in a warm one, and a 1M-row table logged from a job and read back in
another process.

Each row points the runtime at a fresh SQLite catalog and store in a temporary directory
(``pyhost.runtime.configure``), never at the user's home, and removes it afterwards. Jobs run
on the bench's labelling launcher with the bench's image (``image=`` of the function), so
their containers carry the run's labels as every session of the bench does.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pyhost
from benchmarks.bench import Bench, perf_counter, row
from benchmarks.report import Baseline, Result, Target, Unavailable
from benchmarks.rows_data import _table
from benchmarks.rows_scale import _wait_pool_full

if TYPE_CHECKING:
    from pyhost.runtime import Function, Run

PROJECT = "bench"
HANDLER = "def f(x):\n    return x + 1\n"


@contextlib.contextmanager
def _catalog() -> Iterator[Path]:
    """This process's runtime on a new catalog and store in a temporary directory (its
    path), for the length of the block."""
    try:
        import pyhost.runtime as dh
    except ImportError as exc:
        raise Unavailable(f"pyhost.runtime not available: {exc}") from None
    home = Path(tempfile.mkdtemp(prefix="pyhost-bench-runtime-"))
    try:
        runtime = dh.configure(home)
        try:
            yield home
        finally:
            runtime.catalog.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _temporary_files_in(directory: Path) -> Iterator[None]:
    """Make ``tempfile`` create its files under ``directory`` for the block: a guard, so
    that a temporary file a run might make (a local run imports its version's files where
    the store keeps them, and makes none today) goes with the benchmark's home, not /tmp."""
    directory.mkdir(exist_ok=True)
    saved = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def _increment(bench: Bench) -> Function:
    """The trivial function of the job rows, saved in the current catalog."""
    import pyhost.runtime as dh

    project = dh.get_or_create_project(PROJECT)
    return project.new_function(name="increment", kind="python", code=HANDLER, handler="f",
                                image=bench.image)


def _completed(run: Run, expected: int) -> None:
    status = run.status
    if status.state != "COMPLETED":
        raise AssertionError(f"run {run.id} ended {status.state}: {status.message} "
                             f"{status.error or ''}")
    if run.result("result") != expected:
        raise AssertionError(f"run {run.id} returned {run.result('result')!r}, not "
                             f"{expected!r}")


@row("job_local", issue="11")
def job_local(bench: Bench) -> list[Result]:
    """``fn.run(local_execution=True, wait=True)`` of ``f(x) = x + 1``, end to end with its
    catalog writes, against calling ``f`` directly; interleaved, one of each per sample."""
    warmup, n = 20, bench.n(300, 100)
    namespace: dict[str, Any] = {}
    exec(compile(HANDLER, "<handler>", "exec"), namespace)
    direct: Callable[[int], int] = namespace["f"]
    runs, calls = [], []
    with _catalog() as home, _temporary_files_in(home / "tmp"):
        function = _increment(bench)
        for index in range(warmup + n):
            started = perf_counter()
            value = direct(index)
            called = perf_counter() - started
            started = perf_counter()
            run = function.run(local_execution=True, wait=True, parameters={"x": index})
            elapsed = perf_counter() - started
            _completed(run, value)
            if index >= warmup:
                runs.append(elapsed * 1e3)
                calls.append(called * 1e3)
    direct_ms = Baseline("calling f(x) directly in this process; ms", tuple(calls))
    return [
        Result("job_local", "ms", runs, baseline=direct_ms,
               note="local_execution=True, wait=True: the run recorded (SQLite in a temporary "
                    "directory) from CREATED to COMPLETED; comparison only, the target is on "
                    "the overhead"),
        Result("job_local[overhead]", "ms", [ms - direct_ms.median for ms in runs],
               target=Target(0.5),  # issue 23
               note="each run minus the median direct call: its median is median run - "
                    "median direct call; DigitalHub's own local execution measured 2.3 ms "
                    "(not measured here)"),
    ]


@row("job_cold", issue="11")
def job_cold(bench: Bench) -> list[Result]:
    """``fn.run(wait=True)`` of the same function in a new container, to COMPLETED, against
    a bare create + start of the image; interleaved."""
    warmup, n = 1, bench.n(20, 8)
    jobs, bares = [], []
    with _catalog():
        function = _increment(bench)
        for index in range(warmup + n):
            bare = bench.fleet.time_bare_start(bench.image)
            started = perf_counter()
            run = function.run(wait=True, launcher=bench.launcher, parameters={"x": index})
            elapsed = perf_counter() - started
            _completed(run, index + 1)
            if index >= warmup:
                jobs.append(elapsed * 1e3)
                bares.append(bare * 1e3)
    return [Result("job_cold", "ms", jobs, target=Target(1.15, relative=True),  # issue 23
                   baseline=Baseline("bare create+start of the image (sleep infinity, "
                                     "network none); ms", tuple(bares)),
                   note="a run is COMPLETED once recorded; its container is removed just "
                        "after, so neither time includes a removal")]


@row("job_warm", issue="11")
def job_warm(bench: Bench) -> list[Result]:
    """The same job with a warm pool for the options its session is opened with, the pool
    full before each; against a session taken from the same pool: ``py()`` + ``eval`` +
    close."""
    if not hasattr(pyhost, "warm_pool"):
        raise Unavailable("pyhost.warm_pool does not exist")
    size, warmup, n = 2, 1, bench.n(20, 10)
    jobs, sessions = [], []
    taken = 0
    # What pyhost.runtime.job._run_in_session opens a job's session with, when the run gives
    # no envs, secrets or resources: env {}, mem_limit "1g", cpus None, io None, the
    # function's image, the run's launcher (the timeout is not part of a pool's key).
    pool = pyhost.warm_pool(size, **bench.session_options)
    try:
        with _catalog():
            function = _increment(bench)
            for index in range(warmup + n):
                _wait_pool_full(pool)
                started = perf_counter()
                run = function.run(wait=True, launcher=bench.launcher, parameters={"x": index})
                elapsed = perf_counter() - started
                # A refill takes a container start (~200 ms), far longer than a warm job:
                # a job that took its server from the pool leaves it one short.
                from_pool = pool.ready < size
                _completed(run, index + 1)
                _wait_pool_full(pool)
                started = perf_counter()
                with bench.session() as session:
                    session.eval("None")
                opened = perf_counter() - started
                if index >= warmup:
                    jobs.append(elapsed * 1e3)
                    sessions.append(opened * 1e3)
                    taken += from_pool
    finally:
        pool.close()
    if not taken:
        raise Unavailable("no job took its server from the warm pool: the job's session "
                          "options do not match the pool's")
    return [Result("job_warm", "ms", jobs, target=Target(10.0),
                   baseline=Baseline("a session from the same pool: py() + eval('None') + "
                                     "close (container removal included, as in the job); ms",
                                     tuple(sessions)),
                   note=f"warm_pool({size}) with the job session's options; {taken} of {n} "
                        f"jobs seen taking a pooled server")]


# The table of grid_table, built in the container by the same code; the handler times the
# logging alone.
_TABLE_JOB = "\n".join([
    "from __future__ import annotations",
    "import time",
    "import numpy as np",
    "import pandas as pd",
    "from typing import Any",
    "",
    inspect.getsource(_table),
    "",
    "def log_table(project, rows, name):",
    "    frame = _table(rows)",
    "    started = time.perf_counter()",
    "    project.log_dataitem(name, kind='table', data=frame)",
    "    return time.perf_counter() - started",
    "",
])

# Reads a table in a new process: the imports come first, untimed (the bench process has
# them loaded too); then either the dataitem through the runtime or the Parquet file.
_READ_SCRIPT = """
import json, sys, time
import pandas, pyarrow.parquet
import pyhost.runtime as dh
how, home, project, what = sys.argv[1:5]
if how == "dataitem":
    dh.configure(home)
    started = time.perf_counter()
    frame = dh.get_project(project).get_dataitem(what).as_df()
else:
    started = time.perf_counter()
    frame = pyarrow.parquet.read_table(what).to_pandas()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": len(frame),
                  "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()}}))
"""


@row("dataitem_1m", issue="11")
def dataitem_1m(bench: Bench) -> list[Result]:
    """A 1M-row x 5-column DataFrame logged from inside a job
    (``project.log_dataitem(name, kind="table", data=df)``, timed in the handler), then
    ``as_df()`` of it in a new host process; against writing the same DataFrame as Parquet
    with pyarrow in this process and reading it in a new one. A job per sample, each
    followed by the direct path and then the two reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, warmup, n = 1_000_000, 1, bench.n(5, 3)
    frame = _table(rows)
    logged, written = [], []
    read: list[dict[str, Any]] = []
    read_direct: list[dict[str, Any]] = []
    with _catalog() as home:
        import pyhost.runtime as dh

        project = dh.get_or_create_project(PROJECT)
        function = project.new_function(name="log-table", kind="python", code=_TABLE_JOB,
                                        handler="log_table", image=bench.image)
        direct_path = home / "direct.parquet"
        for index in range(warmup + n):
            name = f"table-{index}"
            run = function.run(wait=True, launcher=bench.launcher,
                               parameters={"rows": rows, "name": name})
            if run.status.state != "COMPLETED":
                raise AssertionError(f"the job ended {run.status.state}: "
                                     f"{run.status.message}")
            started = perf_counter()
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), direct_path)
            elapsed = perf_counter() - started
            got = _read_elsewhere("dataitem", home, name)
            got_direct = _read_elsewhere("parquet", home, str(direct_path))
            for table in (got, got_direct):
                if table["rows"] != rows:
                    raise AssertionError(f"a table came back with {table['rows']} rows")
            if index >= warmup:
                logged.append(float(run.result("result")))
                written.append(elapsed)
                read.append(got)
                read_direct.append(got_direct)
    runtime_s = [log + got["seconds"] for log, got in zip(logged, read)]
    direct_s = [write + got["seconds"] for write, got in zip(written, read_direct)]
    dtypes = ", ".join(f"{name} {dtype}" for name, dtype in frame.dtypes.items())
    read_dtypes = ", ".join(f"{name} {dtype}" for name, dtype in read[0]["dtypes"].items())
    return [
        Result("dataitem_1m", "s", runtime_s, target=Target(2.0, relative=True),
               baseline=Baseline("the same DataFrame written as Parquet by pyarrow in this "
                                 "process + read in a new one; s", tuple(direct_s)),
               note=f"{rows:,} rows ({dtypes}; every name distinct): log_dataitem in the "
                    f"handler + as_df() in a new process (imports untimed); target: at least "
                    f"half the direct path's speed, i.e. at most 2x its time; as_df() gave "
                    f"{read_dtypes}"),
        Result("dataitem_1m[log]", "s", logged,
               baseline=Baseline("pa.Table.from_pandas + pq.write_table in this process; s",
                                 tuple(written)),
               note="log_dataitem(data=df) timed in the handler: the frame to a Grid, over "
                    "the session channel, back to a DataFrame, Parquet into the store, the "
                    "catalog record; comparison only"),
        Result("dataitem_1m[as_df]", "s", [got["seconds"] for got in read],
               baseline=Baseline("pq.read_table(...).to_pandas() in a new process; s",
                                 tuple(got["seconds"] for got in read_direct)),
               note="get_dataitem(name).as_df() in a new process; comparison only"),
    ]


def _read_elsewhere(how: str, home: Path, what: str) -> dict[str, Any]:
    """Read a table in a new Python process (see :data:`_READ_SCRIPT`); what it reports."""
    path = os.pathsep.join(entry for entry in sys.path if entry)
    done = subprocess.run([sys.executable, "-c", _READ_SCRIPT, how, str(home), PROJECT, what],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": path})
    if done.returncode != 0:
        raise RuntimeError(f"reading {what} in a new process failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@row("build_noop", issue="12")
def build_noop(bench: Bench) -> list[Result]:
    """``fn.run(action="build", wait=True)`` of a function whose image is current (same
    base, requirements, instructions and source): no engine build, the run recorded; against
    ``docker image inspect`` of the image's tag in the same run (the engine round trip a
    no-op cannot do without). The first, real, build is reported as a comparison."""
    import pyhost.runtime as dh

    warmup, n = 1, bench.n(20, 8)
    noops, inspects = [], []
    with _catalog():
        project = dh.get_or_create_project(PROJECT)
        function = project.new_function(name="built", kind="python", code=HANDLER,
                                        handler="f", base_image=bench.image)
        settings: dict[str, Any] = {"instructions": ["echo built > /opt/marker"], "wait": True,
                    "progress": False, "launcher": bench.launcher}
        started = perf_counter()
        first = function.run(action="build", **settings)
        first_s = perf_counter() - started
        if first.status.state != "COMPLETED":
            raise AssertionError(f"the build ended {first.status.state}: "
                                 f"{first.status.message}")
        tag = str(first.status.image)
        try:
            for index in range(warmup + n):
                started = perf_counter()
                bench.client.api.inspect_image(tag)
                inspected = perf_counter() - started
                started = perf_counter()
                run = function.run(action="build", **settings)
                elapsed = perf_counter() - started
                if run.status.state != "COMPLETED" or run.status.built is not False:
                    raise AssertionError(f"an unchanged build was not a no-op: "
                                         f"{run.status.message}")
                if index >= warmup:
                    noops.append(elapsed)
                    inspects.append(inspected)
        finally:
            bench.client.api.remove_image(tag, force=True)
    return [Result("build_noop", "s", noops, target=Target(1.0),
                   baseline=Baseline("docker image inspect of the tag; s", tuple(inspects)),
                   note=f"an unchanged rebuild, run recorded (SQLite in a temporary "
                        f"directory); the first build of the same image (one instruction, "
                        f"on the session image) took {first_s:.2f} s")]
