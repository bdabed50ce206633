"""A run nobody waits for is handed to a supervisor process of its own, so that it outlives
its caller: a script that returns, a kernel restarted, a caller killed with SIGKILL right
after ``fn.run(wait=False)``.

The supervisor is forked by the home's agent (:mod:`pyhost.runtime.agent`, started by the
first run that needs it), or, where there is none to be had, started afresh
(``python -m pyhost.runtime.supervisor``, handed the run on its stdin). Either way it gets
the run's settings (codec bytes, never a pickle; secrets are not in them: it has the
caller's environment and resolves them itself), the caller records it as the run's owner,
and only then does it get the word to act: at every moment the run's recorded owner is a
process that will finish it, or a dead one whose run the next process settles.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hxpy
from hxpy import codec

from ...launchers.ownership import SUPERVISOR_LABEL, Owner
from ..catalog import Record
from ..entities import iso_time

if TYPE_CHECKING:
    from ..context import Runtime

__all__ = ["SOCKET", "detach", "read_exactly", "read_frame", "write_frame"]


SOCKET = "agent.sock"  # in the home: the agent's (:mod:`pyhost.runtime.agent`)
_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 << 20  # a run's settings; more is not a request
_AGENT_START = 10.0  # seconds a new agent has to listen


@dataclass
class _Handover:
    """A supervisor that has the run but waits for the word to act."""

    pid: int
    go: Callable[[], None]
    abort: Callable[[], None]
    close: Callable[[], None]


def detach(runtime: Runtime, record: Record, action: str, settings: dict[str, Any]) -> bool:
    """Hand the run of ``record`` to a supervisor process of its own: forked by the home's
    agent, else started afresh. False when it cannot be (a runtime without a home of its
    own, settings the codec cannot carry): the caller runs it itself then."""
    if runtime.home is None:
        return False
    payload = {"action": action, "run_id": record.id, "settings": settings}
    try:
        codec.encode(payload)
    except Exception:
        return False
    handover = _through_agent(runtime.home, payload) or _new_process(runtime, record,
                                                                    payload)
    try:
        document = dict(record.document)
        now = time.time()
        document["metadata"] = {**(document.get("metadata") or {}), "updated": iso_time(now),
                                "owner": {**Owner.of(handover.pid).labels(record.id),
                                          SUPERVISOR_LABEL: "1"}}
        runtime.update("run", record.id, document, updated=now, expect_state=record.state)
        handover.go()
    except BaseException:
        handover.abort()  # it never got the word: the caller keeps the run
        raise
    finally:
        handover.close()
    return True


def write_frame(conn: socket.socket, message: Any) -> None:
    data = codec.encode(message)
    conn.sendall(_HEADER.pack(len(data)) + data)


def read_frame(conn: socket.socket) -> Any:
    """The next message; None at EOF.

    Raises:
        ValueError: a frame larger than a request may be.
    """
    header = read_exactly(conn, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    data = read_exactly(conn, size)
    return None if data is None else codec.decode(data)


def read_exactly(conn: socket.socket, size: int) -> bytes | None:
    """``size`` bytes; None at EOF first."""
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _through_agent(home: Path, payload: dict[str, Any]) -> _Handover | None:
    """The run handed to a child of the home's agent (started when none runs); None when
    there is none to be had (``PYHOST_AGENT=0``, a socket path too long, a failure)."""
    path = home / SOCKET
    if os.environ.get("PYHOST_AGENT") == "0" or len(str(path)) > 100:
        return None
    conn = _connect(path)
    if conn is None:
        _start_agent(home)
        deadline = time.monotonic() + _AGENT_START
        while conn is None and time.monotonic() < deadline:
            time.sleep(0.02)
            conn = _connect(path)
    if conn is None:
        return None
    try:
        conn.settimeout(30)
        write_frame(conn, {**payload, "env": dict(os.environ), "cwd": os.getcwd()})
        answer = read_frame(conn)
        pid = answer.get("pid") if isinstance(answer, dict) else None
        if not isinstance(pid, int):
            raise OSError("the agent did not fork")
    except (OSError, ValueError):
        conn.close()
        return None
    return _Handover(pid, lambda: conn.sendall(b"g"), lambda: None, conn.close)


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


def _start_agent(home: Path) -> None:
    with open(home / "agent.log", "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "pyhost.runtime.agent", str(home)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=_child_env(home), start_new_session=True, close_fds=True)
    _reap_later(child)


def _new_process(runtime: Runtime, record: Record, payload: dict[str, Any]) -> _Handover:
    """A supervisor of its own (``python -m pyhost.runtime.supervisor``), handed the run on
    its stdin."""
    assert runtime.home is not None
    directory = runtime.store.path(record.project, "run", record.id, "logs")
    with open(directory / "supervisor.txt", "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "pyhost.runtime.supervisor"], stdin=subprocess.PIPE,
            stdout=out, stderr=subprocess.STDOUT, env=_child_env(runtime.home),
            start_new_session=True, close_fds=True)
    _reap_later(child)
    stdin = child.stdin
    assert stdin is not None

    def go() -> None:
        stdin.write(codec.encode(payload))

    return _Handover(child.pid, go, child.kill, stdin.close)


def _child_env(home: Path) -> dict[str, str]:
    # Where this process found pyhost and hxpy: the child imports the same ones.
    paths = [str(Path(__file__).resolve().parents[3]),
             str(Path(hxpy.__file__).resolve().parents[1])]
    return {**os.environ, "PYHOST_HOME": str(home), "PYHOST_STARTUP_GC": "0",
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


def _reap_later(child: subprocess.Popen[bytes]) -> None:
    """Reap ``child`` when it ends (a zombie would look alive to owner_alive); a daemon
    thread: the caller may end first, and the child goes on without it."""
    threading.Thread(target=child.wait, name=f"pyhost-reap-{child.pid}", daemon=True).start()
