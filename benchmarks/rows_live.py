"""Rows about runs that outlive their caller and logs followed while they are written (issue
21): a detached job observed by a second process, a printed line seen by a follower in
another process, 100 MB of output against the same handler writing to /dev/null, and the
host's memory while 1 GB is printed.

Detached runs need a launcher another process can find by name, so these jobs run on
``"docker"`` with the bench's image; the observers are subprocesses of this one, on the same
temporary catalog (``PYHOST_HOME``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.bench import Bench, perf_counter, row
from benchmarks.report import Baseline, Result, Target
from benchmarks.rows_runtime import PROJECT, _catalog
from pyhost.runtime.agent import stop_agent

# Waits for each run id it reads and prints when it saw the run COMPLETED (wall clock).
OBSERVER = """
import sys, time
import pyhost.runtime as dh
for line in sys.stdin:
    run = dh.get_run(line.strip()).wait(300)
    print(run.status.state, time.time(), flush=True)
"""

# Follows one run's log and prints, for each line, when it arrived (wall clock) and the line.
FOLLOWER = """
import sys, time
import pyhost.runtime as dh
for line in dh.get_run(sys.argv[1]).logs(follow=True):
    print(time.time(), line.strip(), flush=True)
"""

TICKS = """
import time

def ticks(count, pause):
    for i in range(count):
        print(f"tick {time.time():.6f}", flush=True)
        time.sleep(pause)
    return count
"""

VOLUME = """
import os, sys

def volume(megabytes, devnull):
    line = "x" * 63 + "\\n"
    out = open(os.devnull, "w") if devnull else sys.stdout
    for _ in range(megabytes * (1 << 20) // 64):
        out.write(line)
    return megabytes
"""


def _function(bench: Bench, name: str, code: str, handler: str):  # type: ignore[no-untyped-def]
    import pyhost.runtime as dh

    return dh.get_or_create_project(PROJECT).new_function(
        name=name, kind="python", code=code, handler=handler, image=bench.image)


def _python(script: str, *argv: str, home: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYHOST_HOME": home})


@row("job_detached", issue="21")
def job_detached(bench: Bench) -> list[Result]:
    """``fn.run(wait=False)`` of ``f(x) = x + 1`` (a supervisor process runs it), to
    COMPLETED as observed by a second process; and the call alone. Against a bare create +
    start of the image; interleaved."""
    warmup, n = 1, bench.n(12, 5)
    ends, calls, bares = [], [], []
    with _catalog() as home:
        from benchmarks.rows_runtime import HANDLER

        function = _function(bench, "increment", HANDLER, "f")
        observer = _python(OBSERVER, home=str(home))
        assert observer.stdin is not None and observer.stdout is not None
        try:
            for index in range(warmup + n):
                bare = bench.fleet.time_bare_start(bench.image)
                begun, started = time.time(), perf_counter()
                run = function.run(launcher="docker", parameters={"x": index})
                call = perf_counter() - started
                observer.stdin.write(run.id + "\n")
                observer.stdin.flush()
                state, seen = observer.stdout.readline().split()
                if state != "COMPLETED":
                    raise AssertionError(f"run {run.id} ended {state}")
                if index >= warmup:
                    ends.append((float(seen) - begun) * 1e3)
                    calls.append(call * 1e3)
                    bares.append(bare * 1e3)
        finally:
            observer.stdin.close()
            observer.wait(30)
            stop_agent(home)
    bare_baseline = Baseline("bare create+start of the image (sleep infinity, network "
                             "none); ms", tuple(bares))
    return [Result("job_detached", "ms", ends, target=Target(1.3, relative=True),
                   baseline=bare_baseline,
                   note="from the call to COMPLETED seen by another process (told by a "
                        "FIFO when the end is recorded)"),
            Result("job_detached[call]", "ms", calls, target=Target(20.0),
                   note="fn.run(wait=False) returning: checks, the run recorded, the "
                        "supervisor started and handed the run")]


@row("logs_follow", issue="21")
def logs_follow(bench: Bench) -> list[Result]:
    """A line printed in the handler -> seen by ``run.logs(follow=True)`` in another
    process: the delay of each of ``count`` lines, 0.25 s apart."""
    count = bench.n(40, 16)
    with _catalog() as home:
        function = _function(bench, "ticks", TICKS, "ticks")
        run = function.run(launcher="docker", parameters={"count": count, "pause": 0.25})
        follower = _python(FOLLOWER, run.id, home=str(home))
        out, _ = follower.communicate(timeout=300)
        stop_agent(home)
    delays = []
    for line in out.splitlines():
        seen, _, text = line.partition(" ")
        if text.startswith("tick "):
            delays.append((float(seen) - float(text.split()[1])) * 1e3)
    if len(delays) != count:
        raise AssertionError(f"the follower saw {len(delays)} of {count} lines")
    return [Result("logs_follow", "ms", delays, target=Target(250.0),
                   note="print in the container -> the line from run.logs(follow=True) in "
                        "another process; issue 21 asks p95 <= 250 ms (the p95 column)")]


@row("log_volume", issue="21")
def log_volume(bench: Bench) -> list[Result]:
    """A handler printing 100 MB of 64-byte lines, run to COMPLETED with its log streamed
    into the store; against the same handler writing them to /dev/null; interleaved."""
    megabytes, n = 100, bench.n(3, 1)
    printed: list[float] = []
    discarded: list[float] = []
    with _catalog():
        function = _function(bench, "volume", VOLUME, "volume")
        for _ in range(n):
            for devnull, times in ((True, discarded), (False, printed)):
                started = perf_counter()
                run = function.run(launcher=bench.launcher, wait=True, log_cap="64Mi",
                                   parameters={"megabytes": megabytes, "devnull": devnull})
                times.append(perf_counter() - started)
                if run.status.state != "COMPLETED":
                    raise AssertionError(f"run {run.id} ended {run.status.state}: "
                                         f"{run.status.message}")
    return [Result("log_volume", "s", printed, target=Target(1.5, relative=True),
                   baseline=Baseline("the same handler writing to /dev/null; s",
                                     tuple(discarded)),
                   note=f"{megabytes} MB printed, streamed to the run's log (64 MiB kept: "
                        "its head and its tail)")]


def _peak_from_now() -> int:
    """Start this process's peak resident set (``VmHWM``) afresh; the resident set now."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) << 10
    raise LookupError(field)


@row("log_gigabyte", issue="21")
def log_gigabyte(bench: Bench) -> list[Result]:
    """A handler printing 1 GB, run with ``wait=True`` in this process: how much this
    process's peak resident set grew while its log was streamed and capped (64 MiB); against
    the same handler writing to /dev/null."""
    gigabyte = 1024
    peaks: list[float] = []
    discarded: list[float] = []
    seconds: list[float] = []
    with _catalog():
        function = _function(bench, "gigabyte", VOLUME, "volume")
        for devnull in (True, False):
            before = _peak_from_now()
            started = perf_counter()
            run = function.run(launcher=bench.launcher, wait=True,
                               parameters={"megabytes": gigabyte, "devnull": devnull})
            elapsed = perf_counter() - started
            grown = (_status_bytes("VmHWM") - before) / (1 << 20)
            if run.status.state != "COMPLETED":
                raise AssertionError(f"run {run.id} ended {run.status.state}: "
                                     f"{run.status.message}")
            (discarded if devnull else peaks).append(grown)
            if not devnull:
                seconds.append(elapsed)
    return [Result("log_gigabyte", "MiB", peaks, target=Target(64.0),
                   baseline=Baseline("the same run writing to /dev/null; MiB",
                                     tuple(discarded)),
                   note=f"the host's peak RSS growth while 1 GB was printed and its log "
                        f"capped to 64 MiB (in {seconds[0]:.1f} s)")]
