"""A job's handler run in this process (``local_execution=True``): NOT a sandbox. What the
running thread prints is captured as a session's output would be; the task's environment is
set for the call and restored after."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any, Callable

from hxpy.runtime.job import run_job

from ...errors import PythonError
from .local_finder import prepare

__all__ = ["run_here"]


def run_here(job: dict[str, Any], dispatch: Callable[..., Any], source: str,
             environment: dict[str, str]) -> tuple[Any, str]:
    """The handler's answer and what it printed, run from the version's own files in the
    store (``source``: nothing to write).

    Raises:
        PythonError: the handler raised; its traceback starts at the handler.
    """
    prepare(source)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        with _captured() as captured:
            try:
                answer = run_job({**job, "files": {}}, dispatch, source)
            except Exception as exc:
                # from the handler on: not this frame, nor run_job's
                frames = traceback.extract_tb(exc.__traceback__)[2:]
                text = "".join(traceback.format_list(frames) +
                               traceback.format_exception_only(type(exc), exc))
                raise PythonError(type(exc).__qualname__, str(exc),
                                  "Traceback (most recent call last):\n" + text,
                                  captured.getvalue()) from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return answer, captured.getvalue()


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
