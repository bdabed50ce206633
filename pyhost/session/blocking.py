"""The blocking session: buffered define/exec, one round trip per eval.

A :class:`Session` knows its :class:`~pyhost.launchers.base.Launcher` only through the
interface and never imports docker. ``define`` and ``exec`` are encoded at once (bad values
fail there, before anything is sent) and buffered; ``eval`` sends the buffer and the
expression as ONE batch and waits for the reply, answering the calls the container makes back
to the host meanwhile. What that means is :class:`~pyhost.session.conversation.Conversation`'s;
this module adds the blocking I/O.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ProtocolError, PyHostError, SessionClosed
from ..launchers import get_launcher
from ..launchers.base import ExitStatus, Launcher
from . import registry
from .conversation import (
    IO_ERRORS,
    NO_REPLY,
    REPLY_PREFIXES,
    Conversation,
    SessionStats,
    encode_eval,
    terminated,
)
from .handshake import Opened, open_server
from .options import SessionOptions
from .output import OutputCallback, check_callback
from .pool import take_warm
from .transport import Transport

__all__ = ["Session", "SessionStats"]

class Session(Conversation):
    """One sandboxed Python session; obtain it with :func:`pyhost.py`.

    Chain ``define``/``exec``/``timeout``/``init`` and finish with ``eval``. Without ``with``
    (and unless persistent) ``eval`` closes the session afterwards, as hxPy does; inside
    ``with py() as s:`` the session lives until the block ends.
    """

    def __init__(self, launcher: Launcher | str = "docker",
                 options: SessionOptions | None = None, **kwargs: Any) -> None:
        super().__init__(get_launcher(launcher), SessionOptions.from_kwargs(options, **kwargs))
        self.persist = self.options.persist
        self._keep = self.persist is not None
        self._lock = threading.RLock()
        self._transport: Transport | None = None
        self._depth = 0

    def eval(self, expr: str, *, on_output: OutputCallback | None = None) -> Any:
        """Send the buffered ops and ``expr``; return the value of ``expr``.

        With ``on_output``, what the batch prints (stdout and stderr, in order) is passed to
        ``on_output(text)`` in chunks while it runs: each line as it ends when lines come
        slowly, many lines per chunk when they come fast, a partial line within about 0.2 s.
        It is called in this thread; while it runs, the eval waits. What was printed but not
        yet sent when the eval ended (at most 64 KiB) is ``last_output`` instead, so the
        chunks followed by ``last_output`` are everything printed, once, in order: streamed
        output is not capped. A callback that raises is logged once per eval and the eval
        goes on. Without ``on_output`` nothing is streamed and nothing changes.

        Raises:
            PythonError: the code raised in the container (the session stays usable).
            MarshalError: the value cannot be brought back (the session stays usable).
            SessionTimeout: the batch ran past the timeout.
            SessionDied: the container ended under us.
            SessionClosed: the session was closed.
            TypeError: ``on_output`` is not callable, or is a coroutine function (the
                ``AsyncSession`` takes those).
        """
        if on_output is not None:
            check_callback(on_output, awaitable=False)
        self._check_open()
        last = encode_eval(expr)
        ops, buffers = self._take_pending()
        ops.append(last)
        with self._lock:
            self._depth += 1
            try:
                if self._transport is None:
                    init_ops, init_buffers = self._start()
                    ops, buffers = init_ops + ops, init_buffers + buffers
                    if self._closed:  # killed while it started
                        self._stop("killed while starting")
                        raise SessionClosed(f"session {self.id} was closed while starting")
                return self._roundtrip(ops, buffers, on_output)
            finally:
                self._depth -= 1
                if not self._keep and self._depth == 0:
                    self.close()

    def close(self) -> None:
        """End the session and remove its container; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop("close")
        registry.forget(self)

    def kill(self, grace: float = 0.0) -> None:
        """Kill the container at once, even while another thread waits in eval (or is
        still starting the container: that eval then ends with SessionClosed).

        Args:
            grace: when over 0, SIGTERM first: the server ends (raising in user code, whose
                ``finally`` blocks run) and is killed only if it still runs ``grace``
                seconds later (user code that ignores SIGTERM, say). Returns once it ended.
        """
        self._closed = True
        instance = self._instance
        if instance is not None:
            if grace > 0:
                instance.terminate(grace)
            else:
                instance.kill()
        if self._lock.acquire(blocking=False):  # no eval under way: remove it now
            try:
                self._stop("kill")
            finally:
                self._lock.release()
        # else the eval under way meets the dead server (or a closed session) and removes it
        registry.forget(self)

    def __enter__(self) -> Session:
        self._keep = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _start(self) -> tuple[list[bytes], list[memoryview]]:
        """Start (or take from a warm pool) a server; the ops its init buffered."""
        opened = take_warm(self._pool_key()) if self._starts == 0 else None
        if opened is None:
            opened = self._open_fresh(self.id)
        self._transport = opened.transport
        # A call from the container is small (a chunk and a few fields); only a reply to
        # this session's batch may be as large as max_frame.
        opened.transport.bound_large(self.options.max_call_frame, REPLY_PREFIXES)
        registry.remember(self)
        return self._started(opened)

    def _open_fresh(self, session_id: str) -> Opened:
        """Start and handshake a new server with this session's options."""
        return open_server(self._launcher, self.options.launch_spec(session_id),
                           self.options.max_frame)

    def _pool_key(self) -> tuple[Any, ...]:
        return (id(self._launcher), *self.options.pool_key())

    def _roundtrip(self, ops: list[bytes], buffers: list[memoryview],
                   on_output: OutputCallback | None = None) -> Any:
        """Send a batch, answer the container's calls (and hand its output to
        ``on_output``), return what the reply means."""
        batch = self._begin(ops, buffers, on_output)
        transport = self._transport
        assert transport is not None
        try:
            transport.send(batch.body, batch.buffers)
            while ((answer := self._received(batch, transport.recv(batch.wait()))) is not None
                   or batch.reply is NO_REPLY):  # a call to answer, or output (handed on)
                if answer is not None:
                    transport.send(*answer)
            return self._finish(batch)
        except ProtocolError:
            self._stop("protocol error")
            raise
        except PyHostError as exc:
            if not terminated(exc):
                raise  # what the reply means (a soft timeout is a TimeoutError too)
            try:  # the server exits after this reply: removed, whoever sent the SIGTERM
                status = self._exit_status()  # None when our own kill(grace) sent it
            finally:
                self._stop("terminated")
            if self._closed:
                raise  # the end the caller asked for, with what the batch printed
            raise self._broken(ConnectionResetError("SIGTERM"), status) from exc
        except IO_ERRORS as exc:
            try:
                status = self._exit_status() if self._wants_status(exc) else None
            finally:  # the server is stopped however its end is learned
                self._stop(type(exc).__name__)
            raise self._broken(exc, status) from (None if isinstance(exc, TimeoutError)
                                                  else exc)

    def _exit_status(self) -> ExitStatus | None:
        """How the server ended, waiting a moment for it to finish ending (unless we closed
        the session ourselves)."""
        instance = self._instance
        return instance.wait(1.0) if instance is not None and not self._closed else None

    def _stop(self, why: str) -> None:
        """Drop the connection and remove the container (the next eval may start anew)."""
        instance = self._detach()
        if instance is not None:
            self._remove(instance, why)

