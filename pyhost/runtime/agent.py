"""One local agent per ``PYHOST_HOME``: a warm process that supervisors of runs nobody waits
for are forked from (``python -m pyhost.runtime.agent HOME``).

A new supervisor process costs a Python start and pyhost's imports (about half a second
here) before the run's container even starts; a fork of a process that has them costs a few
milliseconds. So the first run handed over starts the agent (:mod:`.tasks.detached`), which
imports what a run needs, listens on ``HOME/agent.sock`` (owner-only: the directory's owner
and root may connect), and for each run forks a child that is that run's supervisor
(:func:`.supervisor.run_payload`), with the caller's environment and working directory.

* One per home, even when callers race to start it: the agent holds ``HOME/agent.lock``
  (``flock``) for its life; a second one finds it held and exits.
* The agent opens no catalog, no engine client and starts no thread: a fork of it is a
  clean start. Its children are its own and it reaps them.
* It exits when idle (no request and no child for ``PYHOST_AGENT_IDLE`` seconds, default
  600), or on SIGTERM (``pyhost agent stop``); the supervisors it forked go on without it.
  ``pyhost agent status`` says whether one runs.

The handshake, over the socket, in frames of a 4-byte length and codec bytes: the caller
sends the run (``action``, ``run_id``, ``settings``, ``env``, ``cwd``); the agent forks and
answers ``{"pid": child}``; the caller records the child as the run's owner and sends one
byte, ``g``, which the child waits for before it acts (EOF instead: the caller died first,
and the child exits).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import IO

from hxpy import codec

from .tasks.detached import SOCKET, read_exactly, read_frame, write_frame

__all__ = ["agent_pid", "main", "stop_agent"]

_LOCK = "agent.lock"
_PID = "agent.pid"
# Imported before any fork, so that no child pays for them.
_WARM = ("pyhost.runtime.supervisor", "pyhost.runtime.tasks.job", "pyhost.runtime.tasks.build",
         "pyhost.runtime.tasks.serve", "pyhost.launchers.docker.launcher",
         "pyhost.launchers.docker.swarm.launcher", "pyhost.launchers.process")


def agent_pid(home: Path) -> int | None:
    """The pid of the agent of ``home`` if one runs (it holds the lock)."""
    try:
        with open(home / _LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return int((home / _PID).read_text().strip() or 0) or None
            fcntl.flock(lock, fcntl.LOCK_UN)
    except (OSError, ValueError):
        return None
    return None


def stop_agent(home: Path, timeout: float = 10.0) -> int | None:
    """Ask the agent of ``home`` to exit (the supervisors it forked go on); its pid, or None
    when none runs."""
    pid = agent_pid(home)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while agent_pid(home) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def main(argv: list[str]) -> int:
    home = Path(argv[0]).absolute()
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / _LOCK, "a")  # held for the agent's life
    if not _take(lock):
        return 0  # another caller started one first
    for name in _WARM:
        importlib.import_module(name)
    path = home / SOCKET
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(64)
    (home / _PID).write_text(str(os.getpid()))
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(True))
    idle = float(os.environ.get("PYHOST_AGENT_IDLE", "600"))
    children: set[int] = set()
    last = time.monotonic()
    try:
        while not stopping:
            _reap(children)
            ready, _, _ = select.select([listener], [], [], 0.5)
            if ready:
                conn, _ = listener.accept()
                with conn:
                    child = _hand_over(listener, conn, home)
                if child:
                    children.add(child)
                last = time.monotonic()
            elif not children and time.monotonic() - last > idle:
                break
    finally:
        path.unlink(missing_ok=True)
        (home / _PID).unlink(missing_ok=True)
        listener.close()
    return 0


def _take(lock: IO[str]) -> bool:
    """The agent's lock, unless another agent holds it. A moment's wait: ``agent_pid`` of
    another process may hold it for a probe, which must not make a starting agent quit."""
    for _ in range(40):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.025)
    return False


def _hand_over(listener: socket.socket, conn: socket.socket, home: Path) -> int | None:
    """Fork the run's supervisor; its pid (None: a malformed request, dropped)."""
    conn.settimeout(10)
    try:
        request = read_frame(conn)
    except (OSError, ValueError, codec.MarshalError):
        return None
    if not isinstance(request, dict) or not {"action", "run_id", "settings", "env",
                                             "cwd"} <= set(request):
        return None
    pid = os.fork()
    if pid == 0:  # the run's supervisor
        code = 1
        try:
            listener.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.environ.clear()
            os.environ.update({**request["env"], "PYHOST_HOME": str(home),
                               "PYHOST_STARTUP_GC": "0"})
            with contextlib.suppress(OSError):
                os.chdir(request["cwd"])
            conn.settimeout(30)
            go = read_exactly(conn, 1)
            conn.close()
            if go == b"g":
                from .supervisor import run_payload

                code = run_payload(request)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    with contextlib.suppress(OSError):
        write_frame(conn, {"pid": pid})
    return pid


def _reap(children: set[int]) -> None:
    for child in list(children):
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(child, os.WNOHANG)
            if not done:
                continue
        children.discard(child)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))
