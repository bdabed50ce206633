"""A session's messages over two pipes instead of its Unix socket.

When the host and the server share a kernel (a local engine, the process launcher), the host
sends two pipe ends with its hello (``SCM_RIGHTS``): batches come down one pipe; replies,
calls and output go up the other. The socket stays open to carry messages of
``hxpy.wire.BULK_FROM`` bytes and more (a socket moves them faster) and to tell either end
that the other is gone.

Why: measured on a 2-CPU VM, a blocking 16-byte round trip between two processes cost each
end 7 to 9 us of CPU over pipes against 12 to 16 us over a Unix stream socket, and 15 to 18 us
against 22 to 29 us of wall time. A socket also wakes a reader asleep on it each time the peer
consumes what it sent (``unix_write_space`` on the shared wait queue): about 1.4 sleeps per
round trip instead of 1. A pipe has one wait queue per direction.

:class:`Pipes` offers the part of the socket interface :mod:`hxpy.wire` uses, so framing,
polling and the readers are the same on either channel.
"""

from __future__ import annotations

import _socket  # not socket, for a cold start (see hxpy.startup)
import _stat
import array
import errno
import fcntl
import functools
import os
import select

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable

__all__ = ["FdCatcher", "Pipes", "host_pipes", "server_pipes"]

_FD = array.array("i").itemsize


class Pipes:
    """A read end and a write end, read and written like a blocking stream socket.

    ``timeout`` (seconds, None for none) bounds a blocking read as ``SO_RCVTIMEO`` does a
    socket's: when it runs out, the read raises :class:`BlockingIOError`.
    """

    def __init__(self, read_fd: int, write_fd: int, bulk: Any = None) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        #: Where messages of ``hxpy.wire.BULK_FROM`` bytes and more go: the session's socket
        #: (a pipe moves large values slower than a socket does).
        self.bulk = bulk
        self.timeout: float | None = None
        self._poller = select.poll()
        self._poller.register(read_fd, select.POLLIN)

    def fileno(self) -> int:
        return self.read_fd

    def recv_into(self, view: Any, nbytes: int = 0, flags: int = 0) -> int:
        target = view[:nbytes] if nbytes else view
        if flags & _socket.MSG_DONTWAIT:
            return os.preadv(self.read_fd, [target], -1, os.RWF_NOWAIT)
        if self.timeout is not None and not self._poller.poll(self.timeout * 1e3):
            raise BlockingIOError(errno.EAGAIN, "no data within the timeout")
        return os.readv(self.read_fd, [target])

    def ready_poll(self) -> Callable[[], list[Any]]:
        """A call that says, without waiting, whether there is something to read (a
        non-empty list): a C call each time, no Python frame, as a poll loop wants."""
        return functools.partial(self._poller.poll, 0)

    def read_now(self, view: Any) -> Callable[[], int]:
        """A call that reads into ``view`` what :meth:`ready_poll` found (no timeout's poll
        first)."""
        return functools.partial(os.readv, self.read_fd, [view])

    def sendall(self, data: Any) -> None:
        sent = os.write(self.write_fd, data)  # whole unless a signal cut it short
        if sent < len(data):
            view = memoryview(data).cast("B")[sent:]
            while view:
                view = view[os.write(self.write_fd, view):]

    def sendmsg(self, buffers: Sequence[Any]) -> int:
        return os.writev(self.write_fd, buffers)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def host_pipes() -> tuple[Pipes, list[int]] | None:
    """The host's ends, and the two fds to send the server (batches' read end, replies'
    write end; close them once sent). None where non-blocking reads of a pipe are not
    supported (before Linux 5.8, or not Linux): the session then keeps its socket.
    """
    if not hasattr(os, "RWF_NOWAIT"):
        return None
    down_read, down_write = os.pipe()
    up_read, up_write = os.pipe()
    pipes = Pipes(up_read, down_write)
    try:
        pipes.recv_into(bytearray(1), 0, _socket.MSG_DONTWAIT)
    except BlockingIOError:  # nothing there yet: what a poll must say
        return pipes, [down_read, up_write]
    except OSError:
        pass
    for fd in (down_read, up_write):
        os.close(fd)
    pipes.close()
    return None


def server_pipes(fds: list[int], bulk: Any = None) -> Pipes | None:
    """The server's :class:`Pipes` from the fds that came with the hello (large messages
    over ``bulk``), or None (and every fd closed) unless they are exactly a pipe's read end
    and another's write end."""
    try:
        kinds = [(_stat.S_ISFIFO(os.fstat(fd).st_mode),
                  fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) for fd in fds]
    except OSError:
        kinds = []
    if kinds == [(True, os.O_RDONLY), (True, os.O_WRONLY)]:
        return Pipes(fds[0], fds[1], bulk)
    for fd in fds:
        os.close(fd)
    return None


class FdCatcher:
    """A connection's reads that also collect the fds sent with them (the hello's pipes):
    a plain ``recv`` would have the kernel close them."""

    def __init__(self, conn: _socket.socket, most: int = 2) -> None:
        self.conn = conn
        self.fds: list[int] = []
        self._space = _socket.CMSG_SPACE(most * _FD)

    def recv_into(self, view: Any, nbytes: int = 0, flags: int = 0) -> int:
        target = memoryview(view)
        if nbytes:
            target = target[:nbytes]
        # Not inherited by programs user code runs, as the connection itself is not.
        flags |= getattr(_socket, "MSG_CMSG_CLOEXEC", 0)
        received, ancillary, _, _ = self.conn.recvmsg_into([target], self._space, flags)
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[:len(data) - len(data) % _FD])
                self.fds.extend(fds)
        return received

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    def close_fds(self) -> None:
        for fd in self.take_fds():
            os.close(fd)
