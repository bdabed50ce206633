"""What a task kind is, and the one way a run of it starts.

A task checks its settings into a spec (:class:`~.spec.TaskSpec` and its own fields), then
:meth:`Task.start` records the run and executes it, in the caller's thread when it waits
or in a thread of its own, and settles it: whatever the task's work raises, the run does not
stay active (:class:`OneShotTask`). A serve run outlives its start (its replicas are
supervised), so the serve task starts its own way.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, TypeVar

from ...errors import ConfigurationError
from ..catalog import Record, StaleState
from ..executions import Execution, executing, finished
from ..runs import ACTIVE, ERROR, Run, create_run, record_end
from .detached import detach

if TYPE_CHECKING:
    from ..context import Runtime
    from ..function import Function
    from .spec import TaskSpec

__all__ = ["Cleanup", "OneShotTask", "Task"]

log = logging.getLogger("pyhost.runtime")

#: What a task leaves to do once its run is recorded (close a session: tens of ms that are
#: not the run's time); None when nothing.
Cleanup = Callable[[], None] | None

SpecT = TypeVar("SpecT", bound="TaskSpec")


class Task(abc.ABC, Generic[SpecT]):
    """One kind of task a python function runs as (``fn.run(action=<action>)``)."""

    #: The ``action`` that names it; the run's kind is ``python+<action>``.
    action: ClassVar[str] = ""

    @abc.abstractmethod
    def check(self, function: Function, runtime: Runtime, **settings: Any) -> SpecT:
        """Every setting of a run of ``function``, checked; nothing starts or is recorded.

        Raises:
            ConfigurationError: an unknown or malformed setting (the message names it).
        """

    @abc.abstractmethod
    def start(self, function: Function, runtime: Runtime, *, wait: bool = False,
              **settings: Any) -> Run:
        """Check the settings, record the run and set it going.

        Raises:
            ConfigurationError: a bad setting; raised before anything starts.
        """

    def detached_settings(self, spec: SpecT, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The settings a supervisor process checks again to run this run when nobody
        waits for it (:mod:`.detached`); None: it runs in a thread of the caller (the
        default; e.g. a run in this very process, or a launcher object)."""
        return None

    @abc.abstractmethod
    def supervise(self, function: Function, runtime: Runtime, record: Record,
                  spec: SpecT, execution: Execution) -> None:
        """Run the run here until it ends: a supervisor process's whole work
        (:mod:`pyhost.runtime.supervisor`, which registered ``execution`` before it checked
        the run, so that a stop asked meanwhile is seen)."""

    @staticmethod
    def _check_wait(wait: Any) -> None:
        if not isinstance(wait, bool):
            raise ConfigurationError(f"wait is True or False, not {wait!r}")


class OneShotTask(Task[SpecT]):
    """A task whose run ends when its work returns (a job, a build): one start skeleton."""

    @abc.abstractmethod
    def execute(self, function: Function, runtime: Runtime, record: Record, spec: SpecT,
                execution: Execution) -> Cleanup:
        """Do the run's work and record how it ended; what is left to clean up. ``record``
        is READY, or RUNNING when :meth:`running_at_once` gave it a message."""

    def running_at_once(self, spec: SpecT) -> str | None:
        """The message of a run recorded RUNNING at once, in the write that creates it: one
        whose work starts the moment it is recorded, with nothing to wait for (no container
        to start); None (the default): recorded READY, and its work moves it on."""
        return None

    def start(self, function: Function, runtime: Runtime, *, wait: bool = False,
              **settings: Any) -> Run:
        """Check, record, execute (here when ``wait``, else in a thread) and settle.

        Raises:
            ConfigurationError: a bad setting; raised before anything starts.
        """
        self._check_wait(wait)
        spec = self.check(function, runtime, **settings)
        record = create_run(runtime, function, self.action, spec.record(),
                            running=self.running_at_once(spec))
        if not wait:  # a supervisor process's, when it can be
            handed = self.detached_settings(spec, settings)
            if handed is not None and detach(runtime, record, self.action, handed):
                return Run(record, runtime)
        work = (function, runtime, record, spec, executing(record.id))
        if wait:  # in this thread: no thread to start, and this thread's catalog connection
            cleanup = self._settled(*work)
            if cleanup is not None:  # recorded already: the caller need not wait for it
                threading.Thread(target=cleanup, name="pyhost-run-cleanup",
                                 daemon=True).start()
            ended = work[-1].ended  # as this thread recorded its end: no need to read it
            return Run(ended, runtime) if ended is not None else Run(record, runtime).refresh()
        threading.Thread(target=self._to_the_end, args=work,
                         name=f"pyhost-{self.action}-{record.id[:8]}", daemon=True).start()
        return Run(record, runtime)

    def supervise(self, function: Function, runtime: Runtime, record: Record,
                  spec: SpecT, execution: Execution) -> None:
        self._to_the_end(function, runtime, record, spec, execution)

    def _to_the_end(self, function: Function, runtime: Runtime, record: Record, spec: SpecT,
                    execution: Execution) -> None:
        """Execute, settle, then clean up."""
        cleanup = self._settled(function, runtime, record, spec, execution)
        if cleanup is not None:
            cleanup()

    def _settled(self, function: Function, runtime: Runtime, record: Record, spec: SpecT,
                 execution: Execution) -> Cleanup:
        """:meth:`execute`, and the run never left active by the runtime's own failure."""
        try:
            return self.execute(function, runtime, record, spec, execution)
        except StaleState:
            log.warning("%s run %s was settled by another process while it ran", self.action,
                        record.id)
        except Exception:
            log.exception("%s run %s: the runtime failed", self.action, record.id)
            with contextlib.suppress(Exception):
                record_end(runtime, record.id, ERROR, ACTIVE,
                           message="the runtime failed; see the host's log")
        finally:
            finished(record.id)  # waiters wake before the cleanup
        return None
