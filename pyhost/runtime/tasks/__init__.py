"""The tasks a python function runs as, chosen by name: ``fn.run(action="job")``.

``TASKS`` maps each action to ``"module:Class"`` (relative to this package, or a module of
your own): a new kind is one module with a :class:`~.base.Task` and one line here. Each
name gives one shared task object per process; its module is imported only when asked for,
so :class:`~pyhost.runtime.function.Function` knows no task.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from .base import Task

__all__ = ["TASKS", "get_task"]

# action -> "module:Class"
TASKS = {
    "job": ".job:JobTask",
    "build": ".build:BuildTask",
    "serve": ".serve:ServeTask",
}

_shared: dict[str, Task] = {}  # by entry: a line changed in TASKS loads the new class
_lock = threading.Lock()


def get_task(action: str) -> Task:
    """The task ``action`` names (made on first use).

    Raises:
        ConfigurationError: no task has that name, or its entry names no Task class.
    """
    if not isinstance(action, str) or action not in TASKS:
        known = ", ".join(repr(name) for name in TASKS)
        raise ConfigurationError(f"action={action!r}: a python function runs as {known}")
    entry = TASKS[action]
    with _lock:
        task = _shared.get(entry)
        if task is None:
            task = _shared[entry] = _load(action, entry)
        return task


def _load(action: str, entry: str) -> Task:
    from .base import Task

    module_name, _, class_name = entry.partition(":")
    try:
        found = getattr(importlib.import_module(module_name, __name__), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"action={action!r}: cannot load {entry}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise ConfigurationError(f"action={action!r}: {entry} is not a Task class")
    return found()
