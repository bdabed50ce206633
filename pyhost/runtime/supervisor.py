"""The supervisor of one run nobody waits for: ``python -m pyhost.runtime.supervisor``,
started by :func:`pyhost.runtime.tasks.detached.detach` in a session of its own.

It reads the run's settings from stdin (the caller writes them once it has recorded this
process as the run's owner; EOF first means the caller died before: nothing to do), checks
them again as the caller did, executes the run as a waited run is executed, records its end,
and exits. SIGTERM (``run.stop()`` from any process of this host) stops the run as a stop
in its caller does (its container sent SIGTERM, killed after ``PYHOST_STOP_GRACE``):
STOPPED, its container removed. SIGKILL leaves it to the next process that opens the catalog, which
settles it ERROR as any run of a dead owner; its container goes with ``pyhost gc``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from hxpy import codec

from ..errors import PyHostError
from ..session.registry import keep_sigterm
from .context import Runtime
from .executions import Execution, executing, finished
from .function import Function
from .runs import ACTIVE, ERROR, STOPPED, transition
from .tasks import get_task

__all__ = ["main", "run_payload"]

log = logging.getLogger("pyhost.runtime")

def main() -> int:
    data = sys.stdin.buffer.read()
    if not data:
        return 1  # the caller died before handing the run over
    return run_payload(codec.decode(data))


def run_payload(payload: dict[str, Any]) -> int:
    """Run what a caller handed over (``action``, ``run_id``, ``settings``) to its end; the
    exit status. The agent's children call it too (:mod:`.agent`)."""
    runtime = Runtime.open(settle=False)  # $PYHOST_HOME: the caller's home
    record = runtime.get("run", payload["run_id"])
    # Registered before anything else: a stop from now on is seen, whenever it comes.
    execution = executing(record.id)
    keep_sigterm()  # a stop is the run's own, with its grace: not every session closed at once
    signal.signal(signal.SIGTERM, lambda signum, frame: _stop(execution))
    try:
        task = get_task(payload["action"])
        try:
            function = Function(runtime.get("function",
                                            record.document["spec"]["function_id"]), runtime)
            spec = task.check(function, runtime, **payload["settings"])
        except PyHostError as exc:  # what changed since the caller checked (an image gone)
            transition(runtime, record, ERROR, ACTIVE, message=f"{type(exc).__name__}: {exc}",
                       error={"type": type(exc).__name__, "message": str(exc),
                              "traceback": ""})
            return 1
        if execution.stop_requested:  # stopped while it checked: nothing has started
            transition(runtime, record, STOPPED, ACTIVE, message="stopped")
            return 0
        task.supervise(function, runtime, record, spec, execution)
        return 0
    finally:
        finished(record.id)


def _stop(execution: Execution) -> None:
    """Stop the run (a second signal changes nothing more)."""
    execution.stop_requested = True
    if execution.stopper is not None:
        # Not in this handler: a stop waits out a grace period talking to the engine, as the
        # main thread it interrupted may be doing itself (one engine client, re-entered).
        threading.Thread(target=execution.stopper, name="pyhost-stop", daemon=True).start()


def _run() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())


if __name__ == "__main__":
    _run()
