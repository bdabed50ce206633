"""What the tests of runs that outlive their caller share (``tests/integration/
test_detached_runs.py`` and the fault matrix, ``tests/faults/``): a caller process that
starts a slow job and lingers (or is killed), ``python -m pyhost`` on a home, and whether a
process has ended."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyhost.runtime as dh

HANDLER = textwrap.dedent("""
    import time

    def main(n, seconds):
        for i in range(3):
            print(f"line {i}", flush=True)
        time.sleep(seconds)
        return n * 2
""")

CALLER = textwrap.dedent("""
    import sys, time
    import pyhost.runtime as dh

    dh.configure(sys.argv[1])
    project = dh.get_or_create_project("detached")
    fn = project.new_function(name="slow", kind="python", code=sys.argv[2], handler="main")
    run = fn.run(action="job", parameters={"n": 21, "seconds": float(sys.argv[3])})
    print(run.id, flush=True)
    time.sleep(float(sys.argv[4]))  # killed here, or ends while the run goes on
""")


def start_caller(home: Path, seconds: float, linger: float,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A process that starts a job sleeping ``seconds`` (nobody waits for it) and lingers
    ``linger`` seconds; it and the run's id."""
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(home), HANDLER, str(seconds),
                               str(linger)], stdout=subprocess.PIPE, text=True, env=env)
    assert caller.stdout is not None
    run_id = caller.stdout.readline().strip()
    assert run_id, "the caller printed no run id"
    return caller, run_id


def left_running(home: Path, env: dict[str, str] | None = None) -> tuple[str, dh.Run, str]:
    """A run whose caller has ended: its id, the run, its container (once it runs)."""
    caller, run_id = start_caller(home, seconds=600, linger=0, env=env)
    caller.wait(30)  # the caller has ended; the run has not
    dh.configure(home)
    run = dh.get_run(run_id)
    deadline = time.monotonic() + 120
    while not run.refresh().status.container and time.monotonic() < deadline:
        time.sleep(0.1)
    container = run.status.container
    assert container and run.status.state == "RUNNING", run.status.to_dict()
    return run_id, run, container


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie nobody reaped (its parent died first)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def pyhost_cli(home: Path, *argv: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m pyhost ARGV`` on ``home`` (``env``: the environment, else this one's)."""
    return subprocess.run([sys.executable, "-m", "pyhost", *argv], capture_output=True,
                          text=True, timeout=timeout,
                          env={**(env or os.environ), "PYHOST_HOME": str(home)})
