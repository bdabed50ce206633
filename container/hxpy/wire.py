"""Framing: a frame is a 4-byte big-endian length followed by that many bytes.

A message is one frame of msgpack (a map), preceded by zero or more *buffer frames*: raw bytes
that the message refers to (large array data, sent out of band so that neither side copies it
into or out of msgpack). A buffer frame has the top bit of its length set; lengths stay below
2**31 because the maximum message size (1 GiB by default) is checked, on both sides, against
the message and all its buffers together, *before* anything is allocated for them.

Bytes in, bytes out: :func:`frames` lays a message out, :func:`send_parts` writes it with
vectored I/O, and :class:`FrameReader` reads messages with as few system calls as the data
allows. Both ends of the connection use them.
"""

from __future__ import annotations

import _socket  # _socket.socket's base, all framing needs (hxpy.startup says why not socket)
import functools
import mmap
import os
import select
import struct
import time

from . import codec

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable, Union

    Buffer = Union[bytes, bytearray, memoryview]

__all__ = [
    "BUFFER_FLAG",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_SPIN",
    "FrameReader",
    "FrameTooLarge",
    "HEADER",
    "PeerClosed",
    "SPIN_GATE",
    "SpinGate",
    "allocate",
    "check_size",
    "frames",
    "message_size",
    "recv_into_exactly",
    "recv_message",
    "send",
    "send_message",
    "send_parts",
]

DEFAULT_MAX_FRAME = 1 << 30  # 1 GiB
DEFAULT_SPIN = 50e-6  # seconds a reader polls for the next message before sleeping
HEADER = struct.Struct(">I")
BUFFER_FLAG = 0x8000_0000  # set in the length of a buffer frame

_now = time.perf_counter

# Where a received buffer's memory comes from. Fresh memory costs a page fault per page touched
# (slow in a VM), so buffers up to glibc's largest dynamic mmap threshold come from malloc
# without zeroing (numpy.empty), which reuses freed memory; larger ones get an anonymous
# mapping advised to use huge pages (4 faults for 8 MB instead of 2048).
_UNINITIALISED_FROM = 1 << 20
_MAPPED_FROM = 32 << 20
# sendmsg() takes at most IOV_MAX (1024 on Linux) pieces at a time.
_MAX_PIECES = 512
# Below this, the pieces of a message are joined and sent with one sendall.
_JOIN_BELOW = 64 * 1024
# At most this many reads sleep without polling after polls found nothing.
_MAX_SKIPPED_POLLS = 64


class FrameTooLarge(ValueError):
    """A message (to send or announced by the peer) is larger than the agreed maximum."""


class PeerClosed(ConnectionError):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""


def check_size(size: int, max_size: int, direction: str) -> None:
    """Raise :class:`FrameTooLarge` if ``size`` exceeds ``max_size``."""
    if size > max_size:
        raise FrameTooLarge(
            f"{direction} frame of {size} bytes exceeds the maximum frame size of {max_size} bytes"
        )


def message_size(body: Buffer, buffers: Sequence[memoryview] = ()) -> int:
    """Bytes of a message's body and buffers, the quantity the maximum size limits."""
    if not buffers:
        return len(body)
    return len(body) + sum(buffer.nbytes for buffer in buffers)


def frames(body: bytes, buffers: Sequence[memoryview] = (),
           max_size: int = DEFAULT_MAX_FRAME) -> list[Buffer]:
    """The pieces of one message on the wire: each buffer frame, then the body's frame.

    Buffers are referenced, not copied.

    Raises:
        FrameTooLarge: the body and its buffers together exceed ``max_size``.
    """
    check_size(message_size(body, buffers), max_size, "outgoing")
    if not buffers:
        return [HEADER.pack(len(body)), body]
    pieces: list[Buffer] = []
    for buffer in buffers:
        pieces.append(HEADER.pack(buffer.nbytes | BUFFER_FLAG))
        pieces.append(buffer)
    pieces.append(HEADER.pack(len(body)))
    pieces.append(body)
    return pieces


def send(sock: _socket.socket, body: bytes, buffers: Sequence[memoryview] = (),
         max_size: int = DEFAULT_MAX_FRAME) -> None:
    """Send one message: its buffers' frames, then its body's frame.

    Raises:
        FrameTooLarge: the message is too large; nothing was sent.
    """
    size = len(body)
    if not buffers and size < _JOIN_BELOW and size <= max_size:  # the common case: one write
        sock.sendall(HEADER.pack(size) + body)
        return
    pieces = frames(body, buffers, max_size)
    bulk = getattr(sock, "bulk", None)
    if bulk is not None and message_size(body, buffers) >= BULK_FROM:
        sock.sendall(_BULK_MARK)  # the next message is on the bulk stream
        sock = bulk
    send_parts(sock, pieces)


#: Messages of at least this many bytes go over a channel's ``bulk`` stream when it has one: a
#: session on pipes sends them over its socket (``hxpy.pipes``), which moved an 8 MB array
#: round trip at 2.3-3.1 GB/s against 1.8 over 1 MiB pipes (measured). An empty frame on the
#: channel (never a message: a body is a map) says that the next message is there.
BULK_FROM = 256 * 1024
_BULK_MARK = HEADER.pack(0)


def send_parts(sock: _socket.socket, pieces: list[Buffer]) -> None:
    """Write ``pieces`` in order: small messages with one ``sendall``, large ones with
    ``sendmsg`` straight from the caller's memory."""
    total = sum(memoryview(p).nbytes for p in pieces)
    if total < _JOIN_BELOW:
        sock.sendall(b"".join(pieces))
        return
    views = [memoryview(p).cast("B") for p in pieces]
    while views:
        sent = sock.sendmsg(views[:_MAX_PIECES])
        while sent:
            first = views[0]
            if sent >= first.nbytes:
                sent -= first.nbytes
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0


def allocate(size: int) -> memoryview:
    """A writable buffer for ``size`` received bytes (its contents are not zeroed)."""
    if _UNINITIALISED_FROM <= size < _MAPPED_FROM:
        try:
            import numpy
        except ImportError:
            pass
        else:
            return numpy.empty(size, numpy.uint8).data
    if size < _MAPPED_FROM:
        return memoryview(bytearray(size))
    # Private: a shared anonymous mapping is shmem, which gets no transparent huge pages.
    mapped = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        mapped.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):  # not Linux, or huge pages are disabled: plain pages
        pass
    return memoryview(mapped)


class FrameReader:
    """Reads messages from a stream socket through one reused buffer.

    A small message costs one ``recv_into`` for its header and body together; a large body or
    buffer is read straight into its own allocation.

    With ``spin`` (seconds), a read that finds nothing waiting polls the socket for up to that
    long, yielding the CPU between polls, before it sleeps in the kernel. Sleeping costs a
    wake-up per message, and waking an idle CPU in a VM costs tens of microseconds: in a hot
    loop of small evals the answer usually comes within the poll. A poll that finds nothing
    makes the next reads sleep at once (1, 2, 4... up to 64 of them), so a slow peer, or one
    that needs this very CPU to answer, costs almost no polling.
    """

    def __init__(self, sock: _socket.socket, max_size: int = DEFAULT_MAX_FRAME,
                 buffer_size: int = 64 * 1024, spin: float = 0.0,
                 gate: SpinGate | None = None) -> None:
        # A buffer of HEADER.size bytes never reads past the end of a message.
        self.sock = sock
        self.max_size = max_size
        self.spin = spin
        self.gate = gate if gate is not None else SPIN_GATE
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0  # buffered, unread bytes are self._buf[self._start:self._end]
        self._end = 0
        self._skip = 0  # reads left that sleep without polling
        self._backoff = 1  # reads to skip after the next poll that finds nothing
        self._large_from = max_size  # see bound_large
        self._large_prefixes: tuple[bytes, ...] = ()
        # Large messages of a channel that has a bulk stream come over it (see BULK_FROM).
        bulk = getattr(sock, "bulk", None)
        self._bulk = None if bulk is None else FrameReader(bulk, max_size)
        self._ready: Callable[[], list[Any]] | None = None  # both made by _prepare_polls
        self._read_now: Callable[[], int] | None = None

    def bound_large(self, large_from: int, prefixes: Sequence[bytes]) -> None:
        """Accept a message whose body is more than ``large_from`` bytes only when the body
        starts with one of ``prefixes``: any other is refused with :class:`FrameTooLarge`
        once the first bytes of its body are read, before the body is allocated. The body
        is what decoding copies; out-of-band buffers (array data, text columns) are received
        once, into the memory their arrays then use, and stay bounded by ``max_size``."""
        self._large_from = min(large_from, self.max_size)
        self._large_prefixes = tuple(prefixes)
        if self._bulk is not None:
            self._bulk.bound_large(large_from, prefixes)

    def read(self) -> tuple[Buffer, list[memoryview]]:
        """The next message: its body and the buffers sent before it.

        Raises:
            PeerClosed: the peer closed the connection.
            FrameTooLarge: the message announced more than ``max_size`` bytes in all; nothing
                was allocated for the frame that crossed the limit.
        """
        if self._start == self._end:  # between messages the buffer is usually empty
            self._start = self._end = 0
            received = self._wait_and_receive() if self.spin else self.sock.recv_into(self._view)
            if not received:
                raise PeerClosed("connection closed")
            self._end = received
        # The common case, a small message read whole: a buffer frame's length has the top
        # bit set, so it never fits here.
        start = self._start + HEADER.size
        if start <= self._end:
            (size,) = HEADER.unpack_from(self._buf, self._start)
            end = start + size
            if end <= self._end and size <= self._large_from:
                self._start = end
                if not size and self._bulk is not None:
                    return self._bulk.read()
                return self._buf[start:end], []
        return self._read_frames()

    def _wait_and_receive(self) -> int:
        """``recv_into`` the empty buffer, polling first (see the class)."""
        if self._skip:
            self._skip -= 1
            return self.sock.recv_into(self._view)
        gate = self.gate
        # Another thread of this process polls already, or more threads are runnable than
        # there are CPUs: a poll would steal a CPU (or the GIL) that a peer needs to answer.
        if gate.polling or not gate.open():
            return self.sock.recv_into(self._view)
        ready = self._ready or self._prepare_polls()
        gate.polling = True
        try:
            until = _now() + self.spin
            while not ready():
                if _now() >= until:
                    break
                os.sched_yield()  # a peer waiting for this CPU may run now
            else:
                self._backoff = 1
                return self._read_now()  # type: ignore[misc]  # made with _ready
        finally:
            gate.polling = False
        # Nothing came: sleep, and poll again only after as many reads as polls have failed in
        # a row (doubling up to a cap), so a slow peer costs almost no polling. Confined to
        # one CPU, polling cannot help: the peer needs that CPU to answer.
        self._skip = self._backoff if _several_cpus() else _MAX_SKIPPED_POLLS
        self._backoff = min(self._backoff * 2, _MAX_SKIPPED_POLLS)
        return self.sock.recv_into(self._view)

    def _prepare_polls(self) -> Callable[[], list[Any]]:
        """One poll and one read, prebuilt at the first poll: C calls with no Python frame.
        The poll asks whether a byte is there (an empty list: no) rather than trying a read
        that raises when none is: building that exception cost 1.9-2.6 us a poll against
        0.6 for the question (measured here), and it held the GIL a poller shares with the
        session threads of its process."""
        sock = self.sock
        ready_poll = getattr(sock, "ready_poll", None)
        self._ready = ready_poll() if ready_poll else _ready_poll(sock.fileno())
        read_now = getattr(sock, "read_now", None)
        self._read_now = read_now(self._view) if read_now else \
            functools.partial(sock.recv_into, self._view)
        return self._ready

    def _read_frames(self) -> tuple[Buffer, list[memoryview]]:
        buffers: list[memoryview] = []
        total = 0
        while True:
            if self._end - self._start < HEADER.size:
                self._fill(HEADER.size)
            (size,) = HEADER.unpack_from(self._buf, self._start)
            self._start += HEADER.size
            is_buffer = size & BUFFER_FLAG
            size &= ~BUFFER_FLAG
            total += size
            check_size(total, self.max_size, "incoming")
            if not is_buffer:
                if not size and not buffers and self._bulk is not None:
                    return self._bulk.read()
                if size > self._large_from:
                    self._check_large(size)
                return self._take(size), buffers
            buffers.append(self._take_into(allocate(size)))

    def _check_large(self, body_size: int) -> None:
        need = min(max(map(len, self._large_prefixes), default=0), body_size)
        if self._end - self._start < need:
            self._fill(need)
        head = bytes(self._view[self._start:self._start + need])
        if not any(head.startswith(prefix) for prefix in self._large_prefixes):
            raise FrameTooLarge(f"incoming message body of {body_size} bytes: only "
                                f"{self._large_from} bytes are allowed for this kind of "
                                "message")

    def _take(self, size: int) -> Buffer:
        if size <= self._end - self._start:
            body = self._buf[self._start:self._start + size]
            self._start += size
            return body
        return self._take_into(memoryview(bytearray(size)))

    def _take_into(self, target: memoryview) -> memoryview:
        """Fill ``target`` with the next bytes: the buffered ones, then straight from the
        socket."""
        size = target.nbytes
        buffered = min(self._end - self._start, size)
        target[:buffered] = self._view[self._start:self._start + buffered]
        self._start += buffered
        if self._start == self._end:
            self._start = self._end = 0
        recv_into_exactly(self.sock, target, buffered)
        return target

    def _fill(self, need: int) -> None:
        """Read until at least ``need`` bytes are buffered."""
        if self._start:  # move the unread bytes to the front
            remaining = self._end - self._start
            self._buf[:remaining] = self._view[self._start:self._end]
            self._start, self._end = 0, remaining
        while self._end < need:
            n = self.sock.recv_into(self._view[self._end:])
            if n == 0:
                if self._end:
                    raise PeerClosed(f"connection closed after {self._end} of {need} bytes")
                raise PeerClosed("connection closed")
            self._end += n


def _ready_poll(fd: int) -> Callable[[], list[Any]]:
    """A call that says, without waiting, whether ``fd`` has something to read (or is
    closed): a non-empty list if so."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return functools.partial(poller.poll, 0)


class SpinGate:
    """Whether a waiting reader may poll now: only while the machine has no more runnable
    threads than this process has CPUs. Past that, a poller takes the CPU that the peer (or
    another session's server, or another thread of this process) needs to answer, and many
    sessions at once get less done in total than one. Shared by every reader of a process;
    the count is read at most every ``every`` seconds (one ``pread`` of /proc/loadavg, whose
    fourth field is the kernel's count of runnable threads, machine-wide even in a
    container), so the gate follows the load within that time and costs almost nothing.
    Without that file (not Linux) the gate stays open, as polling was before it.
    """

    def __init__(self, cpus: int | None = None,
                 runnable: Callable[[], int | None] | None = None,
                 now: Callable[[], float] = time.monotonic, every: float = 0.01) -> None:
        self._cpus = cpus
        self._runnable = runnable if runnable is not None else _runnable_threads
        self._now = now
        self._every = every
        self._next = float("-inf")  # when to read the count again
        self._open = True
        #: Whether a reader of this process polls now. One at a time: each poll releases the
        #: GIL, so two threads polling hand it back and forth, and the thread that has a
        #: reply to take in waits for it.
        self.polling = False

    def open(self) -> bool:
        now = self._now()
        if now >= self._next:
            self._next = now + self._every
            if self._cpus is None:
                self._cpus = _cpu_count()
            runnable = self._runnable()
            self._open = runnable is None or runnable <= self._cpus
        return self._open


def _runnable_threads() -> int | None:
    """The machine's runnable threads now (this one included), or None if unknown."""
    global _loadavg
    try:
        if _loadavg is None:
            _loadavg = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        # "0.52 0.58 0.59 3/512 12345": runnable/existing scheduling entities
        return int(os.pread(_loadavg, 128, 0).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


_loadavg: int | None = None  # the fd of /proc/loadavg, kept open: one pread per reading


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


SPIN_GATE = SpinGate()


def _several_cpus() -> bool:
    """Whether this thread may run on more than one CPU."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):  # not Linux: assume so
        return True


def recv_into_exactly(sock: _socket.socket, view: memoryview, got: int) -> None:
    """Fill ``view`` from ``sock``, its first ``got`` bytes being already there."""
    size = view.nbytes
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise PeerClosed(f"connection closed after {got} of {size} bytes")
        got += n


def send_message(sock: _socket.socket, message: dict[str, Any],
                 max_size: int = DEFAULT_MAX_FRAME) -> None:
    """Encode ``message`` (its large arrays out of band) and send it."""
    body, buffers = codec.encode_parts(message, where="message")
    send(sock, body, buffers, max_size)


def recv_message(sock: _socket.socket, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any]:
    """Receive one message, reading nothing beyond it, and decode it to a map.

    Raises:
        codec.MarshalError: the body is not a msgpack map with a ``type``.
    """
    body, buffers = FrameReader(sock, max_size, buffer_size=HEADER.size).read()
    message = codec.decode(body, buffers)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise codec.MarshalError("a frame must hold a msgpack map with a 'type' string")
    return message
