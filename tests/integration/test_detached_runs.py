"""A run nobody waits for belongs to a supervisor process, not to its caller: any process
of this host can wait for it and stop it (real containers, a real catalog). Its caller or
its supervisor killed: ``tests/faults/test_host_killed.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import docker.errors
import pytest

import pyhost.runtime as dh
from tests.support.detached import CALLER, HANDLER, left_running, pyhost_cli


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_another_process_stops_a_run_its_caller_left(home, client):
    run_id, run, container = left_running(home)
    assert pyhost_cli(home, "wait", run_id, "--timeout", "0.3").returncode == 124
    stopped = pyhost_cli(home, "stop", run_id)  # a third process
    assert stopped.returncode == 0 and "RUNNING -> STOPPED" in stopped.stderr, stopped
    assert run.refresh().status.state == "STOPPED"
    again = pyhost_cli(home, "stop", run_id)  # a second stop changes nothing
    assert again.returncode == 0 and "already STOPPED" in again.stderr
    assert run.stop().status.state == "STOPPED"
    assert pyhost_cli(home, "wait", run_id).returncode == 2
    with pytest.raises(docker.errors.NotFound):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            client.containers.get(container)
            time.sleep(0.1)


TICKS = textwrap.dedent("""
    import logging, sys, time

    def main(count, pause):
        for i in range(count):
            print(f"tick {i} {time.time():.3f}", flush=True)
            time.sleep(pause)
        logging.getLogger("handler").warning("warned %d", count)
        print("no newline at the end", end="")
        return count
""")


def test_a_followed_log_shows_each_line_as_it_is_printed(home, tmp_path):
    source = tmp_path / "ticks.py"
    source.write_text(TICKS)
    started = pyhost_cli(home, "run", f"{source}:main", "--param", "count=5", "--param",
                         "pause=0.6", "--detach")
    assert started.returncode == 0, started
    run_id = started.stdout.strip()
    follower = subprocess.Popen([sys.executable, "-m", "pyhost", "logs", "-f", run_id],
                                stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYHOST_HOME": str(home)})
    arrivals = []
    for line in follower.stdout:
        arrivals.append((time.time(), line))
    assert follower.wait(60) == 0
    ticks = [(seen, float(line.split()[2])) for seen, line in arrivals
             if line.startswith("tick ")]
    assert len(ticks) == 5, arrivals
    late = [round(seen - printed, 3) for seen, printed in ticks]
    assert max(late) < 1.0, late  # each line seen while the handler still ran
    assert ticks[0][0] < arrivals[-1][0] - 2.0  # the first seen long before the end
    text = "".join(line for _, line in arrivals)
    assert "warned 5" in text and text.endswith("no newline at the end")
    dh.configure(home)
    run = dh.get_run(run_id)
    assert run.wait(30).status.state == "COMPLETED"
    assert run.logs() == text


SERVE = textwrap.dedent("""
    def main(context, event):
        print("request", flush=True)
        return {"hello": "world"}
""")


def test_a_detached_service_serves_until_any_process_stops_it(home, tmp_path, client):
    source = tmp_path / "service.py"
    source.write_text(SERVE)
    started = pyhost_cli(home, "serve", f"{source}:main", "--detach")
    assert started.returncode == 0, started
    run_id = started.stdout.strip()
    assert pyhost_cli(home, "wait", run_id, "--timeout", "120").returncode == 0  # serving
    dh.configure(home)
    run = dh.get_run(run_id)
    assert run.status.state == "RUNNING"
    assert run.invoke(json={}).json() == {"hello": "world"}
    container = run.status.replicas[0]["container"]
    assert pyhost_cli(home, "stop", run_id).returncode == 0
    assert run.refresh().status.state == "STOPPED"
    assert "[replica 0] request" in run.logs()
    with pytest.raises(docker.errors.NotFound):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            client.containers.get(container)
            time.sleep(0.1)


def test_one_agent_per_home_forks_the_supervisors_even_when_callers_race(home):
    # Each handler sleeps 30 s: long enough for every supervisor to be seen alive below
    # on a loaded machine (its parent is read first, before anything slower).
    racing = [subprocess.Popen([sys.executable, "-c", CALLER, str(home), HANDLER, "30", "0"],
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    callers = [(caller, caller.stdout.readline().strip()) for caller in racing]
    assert all(run_id for _, run_id in callers), [caller.wait(30) for caller in racing]
    dh.configure(home)
    runs = [dh.get_run(run_id) for _, run_id in callers]
    parents = []
    for run in runs:
        supervisor = int(run.metadata["owner"]["org.pyhost.owner.pid"])
        try:
            with open(f"/proc/{supervisor}/stat") as stat:
                parents.append(int(stat.read().rsplit(")", 1)[1].split()[1]))
        except FileNotFoundError:
            pytest.fail(f"supervisor {supervisor} is gone: {run.refresh().status.to_dict()}")
    status = pyhost_cli(home, "agent", "status")
    assert status.returncode == 0, status
    agent = int(status.stdout.split()[1])
    assert parents == [agent] * 3  # all forked by the one agent
    for caller, _ in callers:
        caller.wait(30)
    for run in runs:
        assert run.wait(90).status.state == "COMPLETED"
    socket_path = home / "agent.sock"
    assert socket_path.stat().st_mode & 0o077 == 0  # the owner's alone
    assert pyhost_cli(home, "agent", "stop").returncode == 0
    assert pyhost_cli(home, "agent", "status").returncode == 3
