"""The runs executing in this process: how to wait for each and how to stop it.

A run's record is in the catalog, for every process to read; what only the process running
it has (the event its waiters in other threads wait on, the call that ends its work at
once) is here, registered while it executes (:func:`executing`, :func:`finished`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .catalog import Record

__all__ = ["Execution", "execution_here", "executing", "finished"]


class Execution:
    """A run executing in this process: how to wait for it and how to stop it."""

    def __init__(self) -> None:
        self._done: threading.Event | None = None  # made when first asked for (see done)
        self._finished = False
        self.stop_requested = False
        self.stopper: Callable[[], None] | None = None  # ends the work at once (a kill)
        # A serve run's: wait_ready(timeout) -> its record once it serves (see _wait_serving)
        self.wait_ready: Callable[[float | None], Record] | None = None
        # The run as its end was recorded here (record_end's answer): what a caller waiting
        # in this thread returns, without reading it again.
        self.ended: Record | None = None

    @property
    def done(self) -> threading.Event:
        """Set once the run's work ended here. Made when first asked for: a run its caller
        waits for in its own thread (most local runs) needs none, and an Event is most of
        what registering a run costs."""
        with _executions_lock:
            if self._done is None:
                self._done = threading.Event()
                if self._finished:
                    self._done.set()
            return self._done


_executions: dict[str, Execution] = {}
_executions_lock = threading.Lock()


def executing(run_id: str) -> Execution:
    """Register a run as executing in this process."""
    execution = Execution()
    with _executions_lock:
        _executions[run_id] = execution
    return execution


def execution_here(run_id: str) -> Execution | None:
    """The run's execution if it executes in this process."""
    with _executions_lock:
        return _executions.get(run_id)


def finished(run_id: str) -> None:
    with _executions_lock:
        execution = _executions.pop(run_id, None)
        if execution is None:
            return
        execution._finished = True
        done = execution._done
    if done is not None:
        done.set()
