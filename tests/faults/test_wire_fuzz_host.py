"""The host's side of the wire, fuzzed: hostile bytes into the frame readers, blocking and
asyncio (over a real socketpair), the codec's decoder and a real session (over a real Unix
socket).

What must hold for every example: the reader ends in ``PeerClosed`` or ``FrameTooLarge``
and the decoder in ``MarshalError``, never another exception, never a hang (every read has
a deadline that fails the test), never a crash; a length beyond the cap allocates nothing;
a session raises a pyhost error (``ProtocolError`` or ``SessionDied`` for bytes that are
not a reply at all) within a second or two and starts afresh on the next eval.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hxpy import codec, protocol, wire
from pyhost.errors import (
    MarshalError,
    ProtocolError,
    PyHostError,
    PythonError,
    SessionDied,
    SessionTimeout,
)
from pyhost.session.blocking import Session
from pyhost.session.transport import SocketTransport
from tests.faults.fuzz_support import (
    CAP,
    HostileLauncher,
    bodies,
    framed,
    fuzz_settings,
    garbage_bodies,
    nested_grids,
    nested_lists,
    packed,
    shaped_messages,
    streams,
)

READ_DEADLINE = 5.0  # seconds any one read may take before the test calls it a hang


def _feed(stream: bytes) -> tuple[socket.socket, threading.Thread]:
    """The reading end of a socketpair whose other end writes ``stream`` and hangs up."""
    reading, writing = socket.socketpair()
    # A kernel receive deadline, as the host's transport has (SO_RCVTIMEO): a read that
    # waits past it fails with BlockingIOError.
    reading.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                       struct.pack("@ll", int(READ_DEADLINE), 0))

    def write() -> None:
        try:
            writing.sendall(stream)
            writing.shutdown(socket.SHUT_WR)
        except OSError:  # the reader gave up first
            pass
        finally:
            writing.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return reading, writer


def _read_all(reader: wire.FrameReader) -> BaseException:
    """Read and decode messages until the reader fails; what it failed with."""
    for _ in range(1000):
        try:
            body, buffers = reader.read()
        except (wire.PeerClosed, wire.FrameTooLarge) as exc:
            return exc
        except BlockingIOError:
            pytest.fail("the frame reader waited for bytes that were never coming "
                        "(the peer had hung up)")
        assert wire.message_size(body, buffers) <= reader.max_size
        try:
            codec.decode(body, buffers)
        except codec.MarshalError:
            pass
    pytest.fail("1000 messages from a short stream")


@fuzz_settings(800)
@given(stream=streams(), spin=st.sampled_from([0.0, 50e-6]),
       buffer_size=st.sampled_from([wire.HEADER.size, 7, 64 * 1024]))
@example(stream=wire.HEADER.pack(0xFFFF_FFFF), spin=0.0, buffer_size=64 * 1024)
@example(stream=framed(nested_grids(400)), spin=0.0, buffer_size=64 * 1024)
def test_the_frame_reader_ends_every_stream_in_a_wire_error(stream: bytes, spin: float,
                                                             buffer_size: int) -> None:
    sock, writer = _feed(stream)
    try:
        reader = wire.FrameReader(sock, CAP, buffer_size=buffer_size, spin=spin)
        assert isinstance(_read_all(reader), (wire.PeerClosed, wire.FrameTooLarge))
    finally:
        sock.close()
        writer.join(READ_DEADLINE)


@fuzz_settings(400)
@given(stream=streams())
@example(stream=wire.HEADER.pack(0xFFFF_FFFF))
def test_the_asyncio_reader_ends_every_stream_in_a_wire_error(stream: bytes) -> None:
    sock, writer = _feed(stream)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 0))

    async def read_all() -> BaseException:
        transport = await SocketTransport(sock, CAP).to_async()
        try:
            for _ in range(1000):
                try:
                    body, buffers = await transport.recv(READ_DEADLINE)
                except (wire.PeerClosed, wire.FrameTooLarge) as exc:
                    return exc
                except TimeoutError:
                    pytest.fail("the asyncio reader waited for bytes that were never coming")
                assert wire.message_size(body, buffers) <= CAP
                try:
                    codec.decode(body, buffers)
                except codec.MarshalError:
                    pass
            pytest.fail("1000 messages from a short stream")
        finally:
            transport.close()

    try:
        assert isinstance(asyncio.run(read_all()), (wire.PeerClosed, wire.FrameTooLarge))
    finally:
        sock.close()
        writer.join(READ_DEADLINE)


@fuzz_settings(200)
@given(before=st.lists(st.integers(0, 64 * 1024), max_size=3), flag=st.booleans(),
       beyond=st.integers(1, 2**31 - 1 - (8 << 20)))
def test_a_length_beyond_the_cap_allocates_nothing(before: list[int], flag: bool,
                                                   beyond: int) -> None:
    cap = 8 << 20  # what a frame of it would get is malloc'd (traced), not mapped
    total = sum(before)
    stream = b"".join(wire.HEADER.pack(size | wire.BUFFER_FLAG) + bytes(size)
                      for size in before)
    stream += wire.HEADER.pack((cap - total + beyond) | (wire.BUFFER_FLAG if flag else 0))
    stream += b"\0" * 64
    sock, writer = _feed(stream)
    reader = wire.FrameReader(sock, cap)
    tracemalloc.start()
    try:
        with pytest.raises(wire.FrameTooLarge):
            reader.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sock.close()
        writer.join(READ_DEADLINE)
    assert peak < total + (256 << 10), f"{peak} bytes allocated for a refused frame"


@fuzz_settings(1200)
@given(body=bodies, buffers=st.lists(st.binary(max_size=64), max_size=2))
@example(body=nested_grids(400), buffers=[])  # recursed in C until the stack overflowed
@example(body=nested_lists(5000), buffers=[])
def test_the_decoder_takes_any_body(body: bytes, buffers: list[bytes]) -> None:
    try:
        codec.decode(body, [memoryview(bytearray(b)) for b in buffers])
    except codec.MarshalError:
        pass


# -- a real session against a hostile server ---------------------------------------------------

def _session(launcher: HostileLauncher) -> Session:
    return Session(launcher, io=None, timeout=3, max_frame=CAP, max_call_frame=CAP // 4)


def _meet(stream: bytes, instead_of_welcome: bool) -> BaseException | None:
    """Let a session meet ``stream`` (as its first reply, or instead of the welcome); what
    the eval raised. The session must then start afresh, on a benign server."""
    launcher = HostileLauncher([stream], instead_of_welcome)
    raised: BaseException | None = None
    with _session(launcher) as session:
        started = time.monotonic()
        try:
            session.eval("1")
        except Exception as exc:  # judged by the caller
            raised = exc
        assert time.monotonic() - started < 2.5, "the session waited past the hostile bytes"
        if raised is None or not isinstance(raised, (ProtocolError, SessionDied)):
            # The reply read as one the session survives; the next batch meets the server
            # that hung up.
            with pytest.raises(SessionDied):
                session.eval("1")
        assert session.eval("1") == 2  # a new server answers: the session was replaced
    assert len(launcher.started) == 2
    return raised


_GARBAGE = (ProtocolError, SessionDied)


@fuzz_settings(200)
@given(stream=streams(garbage_bodies), instead_of_welcome=st.booleans())
@example(stream=wire.HEADER.pack(CAP + 1), instead_of_welcome=False)
@example(stream=framed(nested_grids(400)), instead_of_welcome=False)
def test_a_session_meets_garbage_with_a_protocol_error(stream: bytes,
                                                       instead_of_welcome: bool) -> None:
    raised = _meet(stream, instead_of_welcome)
    assert isinstance(raised, _GARBAGE), f"{type(raised).__name__}: {raised}"


@fuzz_settings(200)
@given(message=shaped_messages, instead_of_welcome=st.booleans())
@example(message={"type": protocol.ERROR, "id": 1, "kind": "python", "error": "not a map"},
         instead_of_welcome=False)
@example(message={"type": protocol.RESULT, "id": [1, 2], "truncated": [True, False]},
         instead_of_welcome=False)
def test_a_session_meets_malformed_replies_with_its_own_errors(message: dict[str, Any],
                                                               instead_of_welcome: bool) -> None:
    raised = _meet(framed(packed(message)), instead_of_welcome)
    allowed = (ProtocolError, SessionDied, PythonError, MarshalError, SessionTimeout)
    assert raised is None or isinstance(raised, allowed), f"{type(raised).__name__}: {raised}"
    assert not isinstance(raised, SessionTimeout) or raised.kind == "soft"
    assert raised is None or isinstance(raised, PyHostError)
