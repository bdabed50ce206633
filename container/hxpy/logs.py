"""The server's own log, and the ``logging`` set-up user code finds, without importing
``logging`` at start.

``logging`` (with the ``re``, ``enum``, ``traceback`` and ``string`` it pulls in) was the
largest part of the server's import on a cold start, and a session whose code never logs
needs none of it. So the set-up waits for the first ``import logging``, whoever makes it
(user code, a library, the runtime, or :func:`own_log` when it has something to say), and
runs right after the module's own code, inside the same import (:mod:`hxpy.lazy`). User
code therefore never sees ``logging`` unconfigured: a ``logging.basicConfig(...)`` of its
own finds the root handler already there and does what it did when the set-up ran at start.
"""

from __future__ import annotations

import sys

from .lazy import when_imported

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

__all__ = ["DEBUG", "INFO", "LEVELS", "WARNING", "configure_logging", "own_log"]

DEBUG, INFO, WARNING = 10, 20, 30  # as logging numbers them
#: The level names ``HXPY_LOG_LEVEL`` may give.
LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARN": WARNING, "WARNING": WARNING,
          "INFO": INFO, "DEBUG": DEBUG, "NOTSET": 0}

_OWN_LOG = "hxpy"
_own_level = WARNING


def own_log(level: int, message: str, *args: Any, exc_info: bool = False) -> None:
    """Log ``message % args`` at ``level`` to the server's own log (the ``hxpy`` logger,
    the container's stderr). ``logging`` is imported only for a record the configured
    level lets through; once it is imported, the logger itself decides, as it did always."""
    if level < _own_level and "logging" not in sys.modules:
        return
    import logging  # set up (hxpy.lazy) before this returns

    logging.getLogger(_OWN_LOG).log(level, message, *args, exc_info=exc_info)


def configure_logging(level: str) -> None:
    """Set up ``logging`` when it is first imported (now, if it already is): the server's own
    log goes to the container's stderr at ``level`` (a name of :data:`LEVELS`); what user code
    logs (the root logger, Python's default WARNING) goes where its prints go, into the
    batch's output, streamed or returned with the reply.

    Raises:
        ValueError: ``level`` is not a level name.
    """
    global _own_level
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(LEVELS)}")
    _own_level = LEVELS[level]
    when_imported("logging", _set_up)


def _set_up(logging: ModuleType) -> None:
    own = logging.StreamHandler(sys.__stderr__)
    own.setFormatter(logging.Formatter("hxpy %(levelname)s %(message)s"))
    own_logger = logging.getLogger(_OWN_LOG)
    own_logger.addHandler(own)
    own_logger.setLevel(_own_level)
    own_logger.propagate = False
    logging.basicConfig(level=logging.WARNING, stream=_CurrentStderr())


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: the batch's capture while user code
    runs, the container's stderr otherwise."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
