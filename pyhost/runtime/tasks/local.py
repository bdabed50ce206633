"""A job's handler run in this process (``local_execution=True``): NOT a sandbox. What the
running thread prints is captured as a session's output would be; the task's environment is
set for the call and restored after."""

from __future__ import annotations

import functools
import io
import os
import sys
import threading
import traceback
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
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        with _captured as captured:
            try:
                # prepare drops the modules the last run imported: under the import lock,
                # so that no other run is importing one of them then.
                answer = run_job({**job, "files": {}}, dispatch, source,
                                 before_import=functools.partial(prepare, source))
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


class _Captured:
    """For the block, what this thread prints goes to a buffer of its own (the ``as``
    value). A class rather than a ``@contextmanager``: a third of its cost, every run."""

    def __enter__(self) -> io.StringIO:
        buffer = io.StringIO()
        thread = threading.get_ident()
        with _streams_lock:
            out, err = sys.stdout, sys.stderr
            if not isinstance(out, _PerThread):
                out = sys.stdout = _PerThread(out)
            if not isinstance(err, _PerThread):
                err = sys.stderr = _PerThread(err)
            out.buffers[thread] = err.buffers[thread] = buffer
        return buffer

    def __exit__(self, *exc_info: object) -> None:
        thread = threading.get_ident()
        with _streams_lock:
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, _PerThread):
                    stream.buffers.pop(thread, None)


_captured = _Captured()  # it keeps nothing between enter and exit: one serves every run
