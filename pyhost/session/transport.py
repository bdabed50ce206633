"""Transports: move whole messages between the host and one server.

A transport is three verbs — send a message, receive one (with a timeout), close — over a
Unix socket, a TCP socket or, for tests, memory; :meth:`Transport.to_async` gives the same
connection to asyncio code. Framing (length prefix, maximum size) is :mod:`hxpy.wire`'s; the
session decides what the messages mean. Nothing above this module touches a socket.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

from hxpy import wire
from hxpy.pipes import Pipes

from ..launchers.base import Endpoint

__all__ = [
    "AsyncTransport",
    "MemoryListener",
    "MemoryTransport",
    "PipeTransport",
    "SocketTransport",
    "Transport",
    "connect",
]

# wire.Buffer exists for type checkers only (hxpy imports no typing at run time).
Received = tuple["wire.Buffer", list[memoryview]]


class Transport(abc.ABC):
    """Moves messages: a frame body and the out-of-band buffers sent before it.

    Errors: ``wire.PeerClosed``, ``wire.FrameTooLarge``, ``TimeoutError``.
    """

    max_frame: int

    @abc.abstractmethod
    def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        """Send one message; ``buffers`` are read, not copied, and must not change meanwhile."""

    @abc.abstractmethod
    def recv(self, timeout: float | None) -> Received:
        """Receive one message; ``TimeoutError`` if none starts within ``timeout``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close; idempotent."""

    def bound_large(self, large_from: int, prefixes: Sequence[bytes]) -> None:  # noqa: B027
        """Refuse a received message over ``large_from`` bytes whose body does not start
        with one of ``prefixes``, before its body is allocated where the transport can
        (:meth:`hxpy.wire.FrameReader.bound_large`); by default the session checks the
        message after receiving it."""

    @abc.abstractmethod
    def hung_up(self) -> bool:
        """Whether the peer has spoken or gone while nothing was asked of it (a server that
        waits for a batch never speaks first, so anything readable means it hung up)."""

    async def to_async(self) -> AsyncTransport:
        """This connection for asyncio code; use only the returned object afterwards.

        By default each receive waits in a worker thread; a socket transport overrides this
        with real asyncio streams.
        """
        return _ThreadedAsyncTransport(self)


class AsyncTransport(abc.ABC):
    """A transport for asyncio code: the same three verbs, awaited.

    Errors: ``wire.PeerClosed``, ``wire.FrameTooLarge``, ``TimeoutError``, ``OSError``.
    """

    @abc.abstractmethod
    async def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        """Send one message (see :meth:`Transport.send`)."""

    @abc.abstractmethod
    async def recv(self, timeout: float | None) -> Received:
        """Receive one message; ``TimeoutError`` if none comes within ``timeout``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close; idempotent."""

    def bound_large(self, large_from: int, prefixes: Sequence[bytes]) -> None:  # noqa: B027
        """Refuse a received message over ``large_from`` bytes whose body does not start
        with one of ``prefixes``, before its body is allocated where the transport can
        (:meth:`hxpy.wire.FrameReader.bound_large`); by default the session checks the
        message after receiving it."""


class SocketTransport(Transport):
    """A connected stream socket (Unix or TCP).

    The socket stays blocking and a receive deadline is the kernel's ``SO_RCVTIMEO``, so
    waiting for a reply is one ``recv``, as in the plainest client, after at most ``spin``
    seconds of polling (see :class:`hxpy.wire.FrameReader`). (A ``poll`` call before the
    ``recv`` would add a system call and, measured here, double the round trip when the two
    ends run on different CPUs: a wake-up through poll does not pull the waiter next to its
    waker.) The option is set only when the deadline moves by more than :attr:`SLACK`, so a
    session with a steady timeout sets it once.
    """

    SLACK = 0.05  # seconds a deadline may come late rather than cost a system call

    def __init__(self, sock: socket.socket, max_frame: int = wire.DEFAULT_MAX_FRAME,
                 spin: float = 0.0, channel: Pipes | None = None) -> None:
        sock.settimeout(None)
        self.sock = sock
        self.max_frame = max_frame
        self._channel: Any = sock if channel is None else channel  # where messages go
        self._reader = wire.FrameReader(self._channel, max_frame, spin=spin)  # type: ignore[arg-type]
        self._wait = 0.0  # SO_RCVTIMEO now; 0 waits forever

    def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        wire.send(self._channel, body, buffers, self.max_frame)

    def bound_large(self, large_from: int, prefixes: Sequence[bytes]) -> None:
        self._reader.bound_large(large_from, prefixes)

    def recv(self, timeout: float | None) -> Received:
        self._wait_at_most(timeout)
        try:
            return self._reader.read()
        except BlockingIOError:  # SO_RCVTIMEO ran out: no byte came for the whole wait
            raise TimeoutError("no frame within the timeout") from None

    def _wait_at_most(self, timeout: float | None) -> None:
        """Bound the socket's blocking reads by ``timeout`` (None: no bound)."""
        wait = 0.0 if timeout is None else max(timeout, 0.001)  # 0 would mean forever
        if wait != self._wait and not (self._wait and wait <= self._wait <= wait + self.SLACK):
            seconds, fraction = divmod(wait, 1.0)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                 _TIMEVAL.pack(int(seconds), int(fraction * 1e6)))
            self._wait = wait

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_with_fds(self, body: bytes, fds: list[int]) -> None:
        """Send one small message with file descriptors attached (``SCM_RIGHTS``)."""
        frame = wire.HEADER.pack(len(body)) + body
        sent = socket.send_fds(self.sock, [frame], fds)
        self.sock.sendall(frame[sent:])

    def over_pipes(self, pipes: Pipes) -> PipeTransport:
        """This connection with its messages over ``pipes`` from now on; use only the
        returned transport afterwards."""
        return PipeTransport(self.sock, pipes, self.max_frame, self._reader.spin)

    def hung_up(self) -> bool:
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    async def to_async(self) -> AsyncTransport:
        reader, writer = await asyncio.open_connection(sock=self.sock, limit=2**16)
        return _StreamTransport(reader, writer, self.max_frame)


class PipeTransport(SocketTransport):
    """A Unix socket connection whose messages go over two pipes (:mod:`hxpy.pipes`): a
    blocking round trip costs each end less CPU and one sleep instead of about 1.4. The
    socket still carries messages of ``hxpy.wire.BULK_FROM`` bytes and more, and tells
    either end that the other is gone. A deadline is a ``poll`` before a pipe read that
    would block (pipes have no ``SO_RCVTIMEO``), and ``SO_RCVTIMEO`` on the socket.
    """

    def __init__(self, sock: socket.socket, pipes: Pipes, max_frame: int = wire.DEFAULT_MAX_FRAME,
                 spin: float = 0.0) -> None:
        pipes.bulk = sock  # large messages still go over the socket (hxpy.wire.BULK_FROM)
        super().__init__(sock, max_frame, spin, channel=pipes)
        self.pipes = pipes

    def recv(self, timeout: float | None) -> Received:
        if timeout is None:
            self.pipes.timeout = None
            if self._wait:
                self._wait_at_most(None)  # for a large message, which comes over the socket
        else:
            self.pipes.timeout = max(timeout, 0.001)
            self._wait_at_most(timeout)
        try:
            return self._reader.read()
        except BlockingIOError:  # the poll or SO_RCVTIMEO ran out: no byte for the whole wait
            raise TimeoutError("no frame within the timeout") from None

    def close(self) -> None:
        super().close()
        self.pipes.close()

    async def to_async(self) -> AsyncTransport:
        return _ThreadedAsyncTransport(self)


class _StreamTransport(AsyncTransport):
    """A socket read and written through asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_frame: int) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame = max_frame

    async def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        self._writer.writelines(wire.frames(body, buffers, self.max_frame))
        await self._writer.drain()

    async def recv(self, timeout: float | None) -> Received:
        try:
            return await asyncio.wait_for(self._read(), timeout)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            raise TimeoutError("no frame within the timeout") from None
        except asyncio.IncompleteReadError as exc:
            raise wire.PeerClosed("connection closed") from exc

    async def _read(self) -> Received:
        """One message: the frame body and the buffer frames before it (see hxpy.wire)."""
        buffers: list[memoryview] = []
        total = 0
        while True:
            (size,) = wire.HEADER.unpack(await self._reader.readexactly(wire.HEADER.size))
            is_buffer = size & wire.BUFFER_FLAG
            size &= ~wire.BUFFER_FLAG
            total += size
            wire.check_size(total, self.max_frame, "incoming")
            data = await self._reader.readexactly(size)
            if not is_buffer:
                return data, buffers
            buffer = wire.allocate(size)  # writable, as the blocking transport's are
            buffer[:] = data
            buffers.append(buffer)

    def close(self) -> None:
        self._writer.close()


class _ThreadedAsyncTransport(AsyncTransport):
    """Any blocking transport for asyncio code: each call waits in a worker thread."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._transport.send, body, buffers)

    async def recv(self, timeout: float | None) -> Received:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._transport.recv, timeout)

    def close(self) -> None:
        self._transport.close()


_TIMEVAL = struct.Struct("@ll")


class MemoryTransport(Transport):
    """An in-process transport; :meth:`pair` gives two connected ends."""

    _CLOSED = object()

    def __init__(self, inbox: queue.Queue[object], outbox: queue.Queue[object],
                 max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self.max_frame = max_frame
        self._closed = False

    @classmethod
    def pair(cls, max_frame: int = wire.DEFAULT_MAX_FRAME) -> tuple[MemoryTransport,
                                                                      MemoryTransport]:
        """Two connected ends."""
        a: queue.Queue[object] = queue.Queue()
        b: queue.Queue[object] = queue.Queue()
        return cls(a, b, max_frame), cls(b, a, max_frame)

    def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        if self._closed:
            raise wire.PeerClosed("transport is closed")
        wire.check_size(wire.message_size(body, buffers), self.max_frame, "outgoing")
        self._outbox.put((bytes(body), [bytes(b) for b in buffers]))

    def recv(self, timeout: float | None) -> Received:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError("no frame within the timeout") from exc
        if item is self._CLOSED:
            self._inbox.put(item)
            raise wire.PeerClosed("connection closed")
        assert isinstance(item, tuple)
        body, buffers = item
        wire.check_size(len(body) + sum(map(len, buffers)), self.max_frame, "incoming")
        return bytearray(body), [memoryview(bytearray(b)) for b in buffers]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put(self._CLOSED)
            self._inbox.put(self._CLOSED)  # wakes a reader of this end too

    def hung_up(self) -> bool:
        return not self._inbox.empty()


class MemoryListener:
    """Where in-memory servers are found: ``connect(Endpoint("memory", name))`` hands the
    server end of a new :class:`MemoryTransport` pair to the listener called ``name``."""

    _listening: dict[str, MemoryListener] = {}
    _lock = threading.Lock()

    def __init__(self, name: str, max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        self.name = name
        self.max_frame = max_frame
        self._accepted: queue.Queue[MemoryTransport] = queue.Queue()
        with self._lock:
            if name in self._listening:
                raise ValueError(f"a memory listener called {name!r} exists")
            self._listening[name] = self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("memory", self.name)

    def accept(self, timeout: float | None = None) -> MemoryTransport:
        """The server end of the next connection; ``TimeoutError`` if none comes in time."""
        try:
            return self._accepted.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no connection to {self.name} in time") from None

    def close(self) -> None:
        with self._lock:
            if self._listening.get(self.name) is self:
                del self._listening[self.name]

    @classmethod
    def connect(cls, name: str) -> MemoryTransport:
        """The client end of a new connection to the listener ``name``.

        Raises:
            ConnectionRefusedError: nothing listens under that name.
        """
        with cls._lock:
            listener = cls._listening.get(name)
        if listener is None:
            raise ConnectionRefusedError(f"no memory listener called {name!r}")
        client, server = MemoryTransport.pair(listener.max_frame)
        listener._accepted.put(server)
        return client


#: Seconds between connection attempts to a Unix socket that is not there yet, at most. A
#: server listens about 30 ms after its container starts; attempts up to 10 ms apart found it
#: 5 ms late on average, and an attempt costs a few microseconds.
UNIX_RETRY = 0.002


def connect(endpoint: Endpoint, deadline: float, still_starting: Callable[[], bool],
            max_frame: int = wire.DEFAULT_MAX_FRAME, spin: float = 0.0) -> Transport:
    """Connect to a server that may not be listening yet.

    Retries with a short, growing back-off (from 0.5 ms, at most :data:`UNIX_RETRY` on a
    Unix socket and 10 ms over TCP) until ``deadline``; no fixed sleeps.
    ``still_starting()`` is asked now and then and should return False once the server
    cannot come any more (its container exited), which stops the wait early.

    Raises:
        TimeoutError: the deadline passed.
        ConnectionError: ``still_starting()`` said the server is gone.
    """
    if endpoint.kind == "memory":
        return MemoryListener.connect(str(endpoint.address))
    delay = 0.0005
    next_check = time.monotonic() + 0.05
    while True:
        sock = _socket_for(endpoint)
        try:
            sock.connect(endpoint.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if endpoint.kind == "tcp":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SocketTransport(sock, max_frame, spin)
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET,
                                 errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
                raise
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError(f"the server at {endpoint} did not start listening in time")
        if now >= next_check:
            if not still_starting():
                raise ConnectionError(f"the server at {endpoint} exited before listening")
            next_check = now + 0.05
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 2, UNIX_RETRY if endpoint.kind == "unix" else 0.01)


def _socket_for(endpoint: Endpoint) -> socket.socket:
    if endpoint.kind == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if endpoint.kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        return sock
    raise ValueError(f"unknown endpoint kind {endpoint.kind!r}")
