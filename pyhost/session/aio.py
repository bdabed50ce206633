"""The asyncio session: the same conversation as :class:`~pyhost.session.blocking.Session`,
awaited, so ``await s.eval(...)`` never blocks the event loop.

Messages are read and written with real asyncio I/O (:meth:`Transport.to_async`); everything
else is :class:`~pyhost.session.conversation.Conversation`'s, shared with the blocking
session. Only the launcher (blocking engine calls to start or remove a container) and the
handshake run in the loop's executor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

from ..errors import ProtocolError, PyHostError
from ..launchers import get_launcher
from ..launchers.base import ExitStatus, Launcher
from .conversation import (
    IO_ERRORS,
    NO_REPLY,
    Conversation,
    encode_eval,
    terminated,
)
from .handshake import Opened, open_server
from .options import SessionOptions
from .output import OutputCallback, check_callback
from .transport import AsyncTransport

__all__ = ["AsyncSession"]

log = logging.getLogger("pyhost")


class AsyncSession(Conversation):
    """A sandboxed Python session for asyncio code.

    ``define``/``exec``/``timeout``/``init``/``handle`` are those of
    :class:`~pyhost.session.blocking.Session`; ``await eval(expr)`` sends one batch. Use
    ``async with AsyncSession() as s:`` or call ``await s.close()``; unlike ``py()``, ``eval``
    never closes the session by itself. Options are ``py()``'s (a
    :class:`~pyhost.session.options.SessionOptions` or keywords); ``spin`` applies to the
    server only: the event loop never polls.
    """

    def __init__(self, launcher: Launcher | str = "docker",
                 options: SessionOptions | None = None, **kwargs: Any) -> None:
        super().__init__(get_launcher(launcher), SessionOptions.from_kwargs(options, **kwargs))
        self._lock = asyncio.Lock()
        self._transport: AsyncTransport | None = None

    async def eval(self, expr: str, *, on_output: OutputCallback | None = None) -> Any:
        """Send the buffered ops and ``expr``; the value of ``expr``.

        ``on_output`` is ``Session.eval``'s: chunks of what the batch prints, while it runs
        (and ``last_output`` the rest). It may be a plain function or a coroutine function
        (anything returning an awaitable): what it returns is awaited before the next
        message is read, so a slow consumer slows the server's printing instead of piling
        chunks up. It runs in the event loop.

        Raises:
            The same errors as ``Session.eval``.
            TypeError: ``on_output`` is not callable.
        """
        if on_output is not None:
            check_callback(on_output, awaitable=True)
        self._check_open()
        last = encode_eval(expr)
        ops, buffers = self._take_pending()
        ops.append(last)
        async with self._lock:
            if self._transport is None:
                init_ops, init_buffers = await self._start()
                ops, buffers = init_ops + ops, init_buffers + buffers
            return await self._roundtrip(ops, buffers, on_output)

    async def close(self) -> None:
        """End the session and remove its container; idempotent."""
        self._closed = True
        await self._stop()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------------

    async def _start(self) -> tuple[list[bytes], list[memoryview]]:
        """Start and handshake a server in a worker thread (the launcher's calls block),
        then speak to it with asyncio I/O on the same connection."""
        loop = asyncio.get_running_loop()
        spec = self.options.launch_spec(self.id)
        # Over its socket: asyncio streams read it without a thread (pipes would need one).
        opening = loop.run_in_executor(None, functools.partial(
            open_server, self._launcher, spec, self.options.max_frame, pipes=False))
        try:
            opened = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_discard)  # the server is still coming: remove it then
            raise
        init = self._started(opened)
        try:
            self._transport = await opened.transport.to_async()
        except BaseException:
            opened.transport.close()
            await self._stop()
            raise
        log.info("session %s: ready (async)", self.id)
        return init

    async def _roundtrip(self, ops: list[bytes], buffers: list[memoryview],
                         on_output: OutputCallback | None = None) -> Any:
        """The blocking session's round trip, awaited (see ``Session._roundtrip``)."""
        batch = self._begin(ops, buffers, on_output)
        transport = self._transport
        assert transport is not None
        try:
            await transport.send(batch.body, batch.buffers)
            while batch.reply is NO_REPLY:
                answer = self._received(batch, await transport.recv(batch.wait()))
                if answer is not None:
                    await transport.send(*answer)
                elif batch.listener is not None and batch.listener.awaiting is not None:
                    await batch.listener.settle()
            return self._finish(batch)
        except ProtocolError:
            await self._stop("protocol error")
            raise
        except PyHostError as exc:
            if not terminated(exc):
                raise  # what the reply means (a soft timeout is a TimeoutError too)
            try:  # the server exits after this reply: removed, whoever sent the SIGTERM
                status = await self._exit_status()  # None when our own kill(grace) sent it
            finally:
                await self._stop("terminated")
            if self._closed:
                raise  # the end the caller asked for, with what the batch printed
            raise self._broken(ConnectionResetError("SIGTERM"), status) from exc
        except IO_ERRORS as exc:
            try:
                status = await self._exit_status() if self._wants_status(exc) else None
            finally:  # the server is stopped however its end is learned
                await self._stop(type(exc).__name__)
            raise self._broken(exc, status) from (None if isinstance(exc, TimeoutError)
                                                  else exc)

    async def _exit_status(self) -> ExitStatus | None:
        """How the server ended (the launcher's wait blocks: it runs in the executor)."""
        instance = self._instance
        if instance is None or self._closed:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, instance.wait, 1.0)

    async def _stop(self, why: str = "close") -> None:
        instance = self._detach()
        if instance is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._remove, instance, why)


def _discard(opening: asyncio.Future[Opened]) -> None:
    """Remove a server whose opening finished after the caller gave up on it."""
    if opening.cancelled() or opening.exception() is not None:
        return
    opened = opening.result()
    opened.transport.close()
    threading.Thread(target=opened.instance.cleanup, name="pyhost-discard", daemon=True).start()
