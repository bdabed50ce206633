"""A job's handler run in this process (``local_execution=True``): NOT a sandbox. What the
running thread prints is captured as a session's output would be; the task's environment is
set for the call and restored after.

The handler is imported once per version, environment and process, not at every run (an
import was most of a small local run's time): the version's files never change, so the
first run's import is every later one's. Its module-level code therefore runs once, in the
first run (whose log shows what it printed), as a module imported twice in one program
would; a run given other ``envs`` or ``secrets`` imports it afresh, so module-level code
that reads them sees its own. A failed import is not kept: the next run tries again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, Callable

from hxpy.runtime.handler import output_names
from hxpy.runtime.job import _sort_outputs as sort_outputs  # a container's sorting, the same
from hxpy.runtime.job import compose_arguments
from hxpy.runtime.loader import import_function

from ...errors import PythonError

__all__ = ["run_here"]

#: Handlers kept imported (by version directory, handler and environment), least recently
#: used dropped first.
LOADED_HANDLERS = 64


def run_here(job: dict[str, Any], dispatch: Callable[..., Any], source: str,
             environment: dict[str, str]) -> tuple[Any, str]:
    """The handler's answer and what it printed, run from the version's own files in the
    store (``source``: nothing to write; a directory per version, so another version is
    another handler).

    Raises:
        PythonError: the handler raised; its traceback starts at the handler (or at the
            import of its module).
    """
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        with _captured() as captured:
            try:
                handler = _handler(source, job["module"], job["function"],
                                   _digest(environment))
                value = handler(**compose_arguments(handler, job, dispatch))
                answer = sort_outputs(output_names(handler), value)
            except Exception as exc:
                raise PythonError(type(exc).__qualname__, str(exc), _users_traceback(exc),
                                  captured.getvalue()) from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return answer, captured.getvalue()


@functools.lru_cache(maxsize=LOADED_HANDLERS)
def _handler(source: str, module: str, function: str, environment: str) -> Callable[..., Any]:
    """The handler, imported on first use (a raise is not cached). ``environment`` only
    keys the cache (see the module docstring)."""
    return import_function(source, module, function)


def _digest(environment: dict[str, str]) -> str:
    """A key for the environment given to a run (secrets among it: their digest, never
    their values, is what the cache keeps)."""
    if not environment:
        return ""
    return hashlib.sha256(repr(sorted(environment.items())).encode()).hexdigest()


def _users_traceback(exc: BaseException) -> str:
    """From the handler on (or from the import of its module): without this module's
    frames."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename != __file__]
    return "Traceback (most recent call last):\n" + "".join(
        traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc))


class _PerThread(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a thread running a local job writes to its own
    buffer, every other thread to the stream that was there before."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.buffers: dict[int, io.StringIO] = {}

    def write(self, text: str) -> int:
        return self.buffers.get(threading.get_ident(), self.fallback).write(text)

    def flush(self) -> None:
        self.fallback.flush()


_streams_lock = threading.Lock()


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    with _streams_lock:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _PerThread):
                setattr(sys, name, _PerThread(getattr(sys, name)))
            getattr(sys, name).buffers[threading.get_ident()] = buffer
    try:
        yield buffer
    finally:
        with _streams_lock:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _PerThread):
                    stream.buffers.pop(threading.get_ident(), None)
