"""An asyncio session: the same conversation as :class:`~pyhost.session.Session`, over
asyncio streams, so ``await s.eval(...)`` never blocks the event loop.

The frames are read and written with real async I/O; the ops and the meaning of replies come
from :mod:`pyhost.conversation`, shared with the blocking session. Only the launcher (a
blocking SDK call to start or remove a container) runs in the loop's executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

from hxpy import protocol, wire

from .api import default_launcher
from .conversation import (
    call_reply,
    decode_message,
    died_error,
    encode_define,
    encode_eval,
    encode_exec,
    hard_timeout_error,
    remote_error,
)
from .errors import MarshalError, ProtocolError, PyHostError, SessionClosed
from .launcher import DEFAULT_IO, Instance, Launcher, LaunchSpec
from .opening import Opened, open_server
from .session import DEFAULT_GRACE, DEFAULT_TIMEOUT, SessionStats, launch_options

__all__ = ["AsyncSession"]

log = logging.getLogger("pyhost")


class AsyncSession:
    """A sandboxed Python session for asyncio code.

    ``define``/``exec``/``timeout`` buffer as on :class:`~pyhost.session.Session`;
    ``await eval(expr)`` sends one batch. Use ``async with AsyncSession() as s:`` or call
    ``await s.close()``; unlike ``py()``, ``eval`` never closes the session by itself.
    ``spin`` applies to the server only: the event loop never polls.
    """

    def __init__(self, launcher: Launcher | None = None, *, image: str | None = None,
                 io: str | os.PathLike[str] | None = DEFAULT_IO, io_host_path: str | None = None,
                 io_volume: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 log_level: str = "WARNING", env: dict[str, str] | None = None,
                 mem_limit: str | int | None = "1g", cpus: float | None = None,
                 network: str | None = None, publish_address: str = "127.0.0.1",
                 max_frame: int = wire.DEFAULT_MAX_FRAME, output_cap: int = 1 << 20,
                 spin: float = wire.DEFAULT_SPIN, grace: float = DEFAULT_GRACE) -> None:
        self.id = secrets.token_hex(6)
        self._launcher = launcher or default_launcher()
        self._io, self._spec_options = launch_options(
            image=image, io=io, io_host_path=io_host_path, io_volume=io_volume,
            log_level=log_level, env=env, mem_limit=mem_limit, cpus=cpus, network=network,
            publish_address=publish_address, max_frame=max_frame, output_cap=output_cap,
            spin=spin)
        self._timeout = timeout
        self._grace = grace
        self._max_frame = max_frame
        self._ops: list[bytes] = []
        self._buffers: list[memoryview] = []
        self._lock = asyncio.Lock()
        self._instance: Instance | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self._batch_ids = 0
        self._handlers: dict[str, Callable[..., Any]] = {}
        self.stats = SessionStats()
        self.last_output = ""

    def define(self, name: str, value: Any) -> AsyncSession:
        """Bind ``name`` to ``value`` (sent with the next eval); see ``Session.define``."""
        self._check_open()
        op, buffers = encode_define(name, value)
        self._ops.append(op)
        self._buffers.extend(buffers)
        return self

    def exec(self, code: str) -> AsyncSession:
        """Run statements (sent with the next eval)."""
        self._check_open()
        self._ops.append(encode_exec(code))
        return self

    def timeout(self, seconds: float | None) -> AsyncSession:
        """Set how long each eval may run; None waits forever."""
        self._timeout = seconds
        return self

    def handle(self, method: str, fn: Callable[..., Any]) -> AsyncSession:
        """Answer ``call_host(method, ...)`` from the container with ``fn``."""
        self._handlers[method] = fn
        return self

    @property
    def container_id(self) -> str | None:
        return self._instance.id if self._instance else None

    async def eval(self, expr: str) -> Any:
        """Send the buffered ops and ``expr``; the value of ``expr``.

        Raises:
            The same errors as ``Session.eval``.
        """
        self._check_open()
        ops, buffers = self._ops + [encode_eval(expr)], self._buffers
        self._ops, self._buffers = [], []
        async with self._lock:
            if self._writer is None:
                await self._start()
            return await self._roundtrip(ops, buffers)

    async def close(self) -> None:
        """End the session and remove its container; idempotent."""
        self._closed = True
        await self._stop()

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session {self.id} is closed")

    async def _start(self) -> None:
        """Start and handshake a server in a worker thread (the launcher's SDK calls block),
        then speak to it over asyncio streams on the same socket."""
        loop = asyncio.get_running_loop()
        spec = LaunchSpec(session_id=self.id, key="", io_dir=self._io, **self._spec_options)
        opening = loop.run_in_executor(None, open_server, self._launcher, spec, self._max_frame)
        try:
            opened = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_discard)  # the server is still coming: remove it then
            raise
        self._instance = opened.instance
        try:
            sock = opened.transport.sock  # type: ignore[attr-defined]
            self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=2**16)
        except BaseException:
            opened.transport.close()
            await self._stop()
            raise
        log.info("session %s: ready (async)", self.id)

    async def _send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        assert self._writer is not None
        self._writer.writelines(wire.frames(body, buffers, self._max_frame))
        await self._writer.drain()

    async def _recv(self) -> tuple[bytes, list[memoryview]]:
        """One message: the frame body and the buffer frames before it (see hxpy.wire)."""
        assert self._reader is not None
        buffers: list[memoryview] = []
        total = 0
        while True:
            (size,) = wire.HEADER.unpack(await self._reader.readexactly(wire.HEADER.size))
            is_buffer = size & wire.BUFFER_FLAG
            size &= ~wire.BUFFER_FLAG
            total += size
            wire.check_size(total, self._max_frame, "incoming")
            data = await self._reader.readexactly(size)
            if not is_buffer:
                return data, buffers
            buffer = wire.allocate(size)  # writable, as the blocking session's are
            buffer[:] = data
            buffers.append(buffer)

    async def _roundtrip(self, ops: list[bytes], buffers: list[memoryview]) -> Any:
        self._batch_ids += 1
        body = protocol.pack_batch(self._batch_ids, self._timeout, ops)
        size = wire.message_size(body, buffers)
        if size > self._max_frame:
            raise MarshalError(f"the batch is {size} bytes, over the maximum frame size of "
                               f"{self._max_frame} bytes; nothing was sent")
        started = time.monotonic()
        deadline = None if self._timeout is None else started + self._timeout + self._grace
        try:
            await self._send(body, buffers)
            while True:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                frame, received = await asyncio.wait_for(self._recv(), remaining)
                message = decode_message(frame, received, self.id, "a batch")
                if message.get("type") == protocol.CALL:
                    self.stats.host_calls += 1
                    await self._send(*call_reply(self._handlers, message, self.id))
                    continue
                break
        except asyncio.TimeoutError:
            await self._stop()
            raise hard_timeout_error(self.id, self._timeout, self._grace) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise await self._died() from exc
        except wire.FrameTooLarge as exc:
            await self._stop()
            raise ProtocolError(f"session {self.id}: {exc}") from exc
        latency = time.monotonic() - started
        self.stats.batches += 1
        self.stats.last_latency = latency
        self.stats.total_latency += latency
        self.stats.bytes_out += size
        self.stats.bytes_in += wire.message_size(frame, received)
        self.last_output = message.get("output") or ""
        if message.get("type") == protocol.RESULT:
            return message.get("value")
        if message.get("type") == protocol.ERROR:
            error = remote_error(message, self.id, self._timeout)
            if isinstance(error, ProtocolError):
                await self._stop()
            raise error
        raise ProtocolError(f"session {self.id}: unexpected message {message.get('type')!r}")

    async def _died(self) -> PyHostError:
        if self._closed:
            await self._stop()
            return SessionClosed(f"session {self.id} was closed")
        instance = self._instance
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, instance.wait, 1.0) if instance else None
        await self._stop()
        return died_error(self.id, "a batch", status)

    async def _stop(self) -> None:
        writer, instance = self._writer, self._instance
        self._reader = self._writer = None
        self._instance = None
        if writer is not None:
            writer.close()
        if instance is not None:
            await asyncio.get_running_loop().run_in_executor(None, instance.cleanup)


def _discard(opening: asyncio.Future[Opened]) -> None:
    """Remove a server whose opening finished after the caller gave up on it."""
    if opening.cancelled() or opening.exception() is not None:
        return
    opened = opening.result()
    opened.transport.close()
    threading.Thread(target=opened.instance.cleanup, name="pyhost-discard", daemon=True).start()
