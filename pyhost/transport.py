"""Transports: move whole frames between the host and one server.

A transport is three verbs — send a frame body, receive a frame body (with a timeout), close —
over a Unix socket, a TCP socket or, for tests, memory. Framing (length prefix, maximum size)
is :mod:`hxpy.wire`'s; the session decides what the frames mean.
"""

from __future__ import annotations

import abc
import errno
import queue
import socket
import struct
import time
from collections.abc import Sequence
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

@dataclass(frozen=True)
class Endpoint:
    """Where a server listens: ``kind`` is ``"unix"`` (address = path) or ``"tcp"``."""

    kind: str
    address: str | tuple[str, int]

    def __str__(self) -> str:
        if isinstance(self.address, tuple):
            host, port = self.address
            return f"tcp://{host}:{port}"
        return f"unix://{self.address}"


Received = tuple[wire.Buffer, list[memoryview]]


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
                 spin: float = 0.0) -> None:
        sock.settimeout(None)
        self.sock = sock
        self.max_frame = max_frame
        self._reader = wire.FrameReader(sock, max_frame, spin=spin)
        self._wait = 0.0  # SO_RCVTIMEO now; 0 waits forever

    def send(self, body: bytes, buffers: Sequence[memoryview] = ()) -> None:
        wire.send(self.sock, body, buffers, self.max_frame)

    def recv(self, timeout: float | None) -> Received:
        wait = 0.0 if timeout is None else max(timeout, 0.001)  # 0 would mean forever
        if wait != self._wait and not (self._wait and wait <= self._wait <= wait + self.SLACK):
            seconds, fraction = divmod(wait, 1.0)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                 _TIMEVAL.pack(int(seconds), int(fraction * 1e6)))
            self._wait = wait
        try:
            return self._reader.read()
        except BlockingIOError:  # SO_RCVTIMEO ran out: no byte came for the whole wait
            raise TimeoutError("no frame within the timeout") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


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


def connect(endpoint: Endpoint, deadline: float, still_starting: Callable[[], bool],
            max_frame: int = wire.DEFAULT_MAX_FRAME, spin: float = 0.0) -> SocketTransport:
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
        delay = min(delay * 2, 0.01)


def _socket_for(endpoint: Endpoint) -> socket.socket:
    if endpoint.kind == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if endpoint.kind == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        return sock
    raise ValueError(f"unknown endpoint kind {endpoint.kind!r}")
