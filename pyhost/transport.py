"""Transports: move whole frames between the host and one server.

A transport is three verbs — send a frame body, receive a frame body (with a timeout), close —
over a Unix socket, a TCP socket or, for tests, memory. Framing (length prefix, maximum size)
is :mod:`hxpy.wire`'s; the session decides what the frames mean.
"""

from __future__ import annotations

import abc
import errno
import queue
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

from hxpy import wire

__all__ = [
    "Endpoint",
    "MemoryTransport",
    "SocketTransport",
    "Transport",
    "connect",
]

# Joining the header to a small body saves a syscall; past this size we send them apart
# rather than copy a large body.
_JOIN_BELOW = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens: ``kind`` is ``"unix"`` (address = path) or ``"tcp"``."""

    kind: str
    address: str | tuple[str, int]

    def __str__(self) -> str:
        if self.kind == "tcp":
            host, port = self.address  # type: ignore[misc]
            return f"tcp://{host}:{port}"
        return f"unix://{self.address}"


class Transport(abc.ABC):
    """Moves frame bodies. Errors: ``wire.PeerClosed``, ``wire.FrameTooLarge``, ``TimeoutError``."""

    max_frame: int

    @abc.abstractmethod
    def send(self, body: bytes) -> None:
        """Send one frame body."""

    @abc.abstractmethod
    def recv(self, timeout: float | None) -> bytearray:
        """Receive one frame body; ``TimeoutError`` if none arrives within ``timeout``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close; idempotent."""


class SocketTransport(Transport):
    """A connected stream socket (Unix or TCP).

    The socket stays blocking; a receive deadline is a ``poll`` before reading, only when no
    frame is already buffered. Reads go into one reused buffer, so a small reply costs one
    ``recv_into`` and no mode switches.
    """

    _BUFFER = 64 * 1024

    def __init__(self, sock: socket.socket, max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        sock.settimeout(None)
        self.sock = sock
        self.max_frame = max_frame
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._buf = bytearray(self._BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0  # buffered, unread bytes are self._buf[self._start:self._end]
        self._end = 0

    def send(self, body: bytes) -> None:
        wire.check_size(len(body), self.max_frame, "outgoing")
        if len(body) < _JOIN_BELOW:
            self.sock.sendall(wire.HEADER.pack(len(body)) + body)
        else:
            self.sock.sendall(wire.HEADER.pack(len(body)))
            self.sock.sendall(body)

    def recv(self, timeout: float | None) -> bytearray:
        if self._end - self._start < wire.HEADER.size:
            if timeout is not None and self._start == self._end:
                if not self._poller.poll(max(timeout, 0.0) * 1000):
                    raise TimeoutError("no frame within the timeout")
            self._fill(wire.HEADER.size)
        (size,) = wire.HEADER.unpack_from(self._buf, self._start)
        wire.check_size(size, self.max_frame, "incoming")
        self._start += wire.HEADER.size
        buffered = self._end - self._start
        if size <= buffered:
            body = self._buf[self._start:self._start + size]
            self._start += size
            return body
        # A large frame: take what is buffered and read the rest straight into its own buffer.
        body = bytearray(size)
        body[:buffered] = self._view[self._start:self._end]
        self._start = self._end = 0
        wire.recv_into_exactly(self.sock, memoryview(body), buffered)
        return body

    def _fill(self, need: int) -> None:
        """Read until at least ``need`` bytes are buffered."""
        if self._start:
            remaining = self._end - self._start
            self._buf[:remaining] = self._view[self._start:self._end]
            self._start, self._end = 0, remaining
        while self._end < need:
            n = self.sock.recv_into(self._view[self._end:])
            if n == 0:
                raise wire.PeerClosed("connection closed")
            self._end += n

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


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

    def send(self, body: bytes) -> None:
        if self._closed:
            raise wire.PeerClosed("transport is closed")
        wire.check_size(len(body), self.max_frame, "outgoing")
        self._outbox.put(bytes(body))

    def recv(self, timeout: float | None) -> bytearray:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError("no frame within the timeout") from exc
        if item is self._CLOSED:
            self._inbox.put(item)
            raise wire.PeerClosed("connection closed")
        assert isinstance(item, bytes)
        wire.check_size(len(item), self.max_frame, "incoming")
        return bytearray(item)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put(self._CLOSED)


def connect(endpoint: Endpoint, deadline: float, still_starting: Callable[[], bool],
            max_frame: int = wire.DEFAULT_MAX_FRAME) -> SocketTransport:
    """Connect to a server that may not be listening yet.

    Retries with a short, growing back-off (from 0.5 ms) until ``deadline``; no fixed sleeps.
    ``still_starting()`` is asked now and then and should return False once the server
    cannot come any more (its container exited), which stops the wait early.

    Raises:
        TimeoutError: the deadline passed.
        ConnectionError: ``still_starting()`` said the server is gone.
    """
    delay = 0.0005
    next_check = time.monotonic() + 0.05
    while True:
        sock = _socket_for(endpoint)
        try:
            sock.connect(endpoint.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if endpoint.kind == "tcp":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SocketTransport(sock, max_frame)
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
        delay = min(delay * 2, 0.01)


def _socket_for(endpoint: Endpoint) -> socket.socket:
    if endpoint.kind == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if endpoint.kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        return sock
    raise ValueError(f"unknown endpoint kind {endpoint.kind!r}")
