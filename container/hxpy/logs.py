"""The server's own log, and the ``logging`` set-up user code finds, without importing
``logging`` at start.

``logging`` (with the ``re``, ``enum``, ``traceback`` and ``string`` it pulls in) was the
largest part of the server's import on a cold start, and a session whose code never logs
needs none of it. So the set-up waits for the first ``import logging``, whoever makes it
(user code, a library, the runtime, or :func:`own_log` when it has something to say): a
finder on ``sys.meta_path`` lets the real finders find the module and runs the set-up
right after the module's own code, inside the same import, then steps aside. User code
therefore never sees ``logging`` unconfigured: a ``logging.basicConfig(...)`` of its own
finds the root handler already there and does what it did when the set-up ran at start.
"""

from __future__ import annotations

import sys

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
    import logging  # set up by _SetUpOnImport before this returns

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
    module = sys.modules.get("logging")
    if module is not None:
        _set_up(module)
    elif not any(isinstance(finder, _SetUpOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SetUpOnImport())


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


class _SetUpOnImport:
    """A ``sys.meta_path`` finder for ``logging`` alone: it asks the finders after it for the
    real spec and hands it back with a loader that runs the set-up after the module's code."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if finder is not self and find else None
            if spec is not None:
                break
        else:
            return None
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _SettingUp(spec.loader, self)
        return spec


class _SettingUp:
    """The real loader of ``logging``, and the set-up after it."""

    def __init__(self, loader: Any, finder: _SetUpOnImport) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # The module is as the real loader made it (linecache and importlib.resources ask
        # __loader__), and later imports do not come here.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _set_up(module)
