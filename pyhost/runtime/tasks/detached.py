"""A run nobody waits for is handed to a supervisor process of its own
(:mod:`pyhost.runtime.supervisor`), so that it outlives its caller: a script that returns, a
kernel restarted, a caller killed with SIGKILL right after ``fn.run(wait=False)``.

The caller starts the supervisor in a session of its own, records it as the run's owner,
then hands it the run's settings on its stdin (codec bytes, never a pickle; secrets are not
in them: the supervisor inherits this environment and resolves them itself). Only then may
the supervisor act, so at every moment the run's recorded owner is a process that will
finish it, or a dead one whose run the next process settles.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hxpy
from hxpy import codec

from ...launchers.ownership import SUPERVISOR_LABEL, Owner
from ..catalog import Record
from ..entities import iso_time

if TYPE_CHECKING:
    from ..context import Runtime

__all__ = ["detach"]


def detach(runtime: Runtime, record: Record, action: str, settings: dict[str, Any]) -> bool:
    """Hand the run of ``record`` to a new supervisor process; False when it cannot be (a
    runtime without a home of its own, settings the codec cannot carry): the caller runs it
    itself then."""
    if runtime.home is None:
        return False
    try:
        payload = codec.encode({"action": action, "run_id": record.id, "settings": settings})
    except Exception:
        return False
    directory = runtime.store.path(record.project, "run", record.id, "logs")
    # Where this process found pyhost and hxpy: the supervisor imports the same ones.
    paths = [str(Path(__file__).resolve().parents[3]),
             str(Path(hxpy.__file__).resolve().parents[1])]
    env = {**os.environ, "PYHOST_HOME": str(runtime.home),
           "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    with open(directory / "supervisor.txt", "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "pyhost.runtime.supervisor"], stdin=subprocess.PIPE,
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            close_fds=True)
    # Reaped when it ends (a zombie would look alive to owner_alive); a daemon: the caller
    # may end first, and the supervisor goes on without it.
    threading.Thread(target=child.wait, name=f"pyhost-reap-{child.pid}", daemon=True).start()
    assert child.stdin is not None
    try:
        document = dict(record.document)
        now = time.time()
        document["metadata"] = {**(document.get("metadata") or {}), "updated": iso_time(now),
                                "owner": {**Owner.of(child.pid).labels(record.id),
                                          SUPERVISOR_LABEL: "1"}}
        runtime.update("run", record.id, document, updated=now, expect_state=record.state)
        child.stdin.write(payload)
    except BaseException:
        child.kill()  # it never got the run: the caller keeps it
        raise
    finally:
        child.stdin.close()
    return True
