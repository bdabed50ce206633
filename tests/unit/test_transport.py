"""One suite that every transport must pass: Unix socket, TCP and memory."""

import socket
import threading

import pytest

from hxpy import wire
from pyhost.session.transport import MemoryTransport, SocketTransport, Transport


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def _make(kind: str, max_frame: int) -> tuple[Transport, Transport]:
    if kind == "memory":
        return MemoryTransport.pair(max_frame)
    a, b = socket.socketpair() if kind == "unix" else _tcp_pair()
    return SocketTransport(a, max_frame), SocketTransport(b, max_frame)


@pytest.fixture(params=["unix", "tcp", "memory"])
def pair(request):
    a, b = _make(request.param, 1 << 24)
    yield a, b
    a.close()
    b.close()


def test_frames_arrive_in_order_and_whole(pair):
    a, b = pair
    bodies = [b"", b"x", bytes(100_000), b"last"]
    sender = threading.Thread(target=lambda: [a.send(body) for body in bodies])
    sender.start()
    assert [bytes(b.recv(5)[0]) for _ in bodies] == bodies
    sender.join()


def test_both_directions(pair):
    a, b = pair
    a.send(b"ping")
    assert b.recv(5) == (b"ping", [])
    b.send(b"pong")
    assert a.recv(5) == (b"pong", [])


def test_recv_times_out_when_nothing_comes(pair):
    _, b = pair
    with pytest.raises(TimeoutError):
        b.recv(0.05)


def test_close_is_seen_by_the_peer(pair):
    a, b = pair
    a.close()
    with pytest.raises(wire.PeerClosed):
        b.recv(5)


def test_close_is_idempotent(pair):
    a, _ = pair
    a.close()
    a.close()


@pytest.mark.parametrize("kind", ["unix", "tcp", "memory"])
def test_oversized_outgoing_frame_is_refused(kind):
    a, b = _make(kind, 1000)
    with pytest.raises(wire.FrameTooLarge):
        a.send(bytes(1001))
    with pytest.raises(wire.FrameTooLarge):
        a.send(bytes(500), [memoryview(bytes(501))])
    a.send(b"still fine")
    assert b.recv(5) == (b"still fine", [])
    a.close()
    b.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_oversized_incoming_frame_is_refused_before_allocation(kind):
    a, b = _make(kind, 1000)
    raw = a.sock  # type: ignore[attr-defined]
    raw.sendall(wire.HEADER.pack(2**31 - 1))
    with pytest.raises(wire.FrameTooLarge, match="incoming"):
        b.recv(5)
    a.close()
    b.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_buffers_and_body_over_max_together_are_refused(kind):
    a, b = _make(kind, 1000)
    raw = a.sock  # type: ignore[attr-defined]
    # two buffer frames of 600 bytes: the second one crosses the limit before allocation
    raw.sendall(wire.HEADER.pack(600 | wire.BUFFER_FLAG) + bytes(600)
                + wire.HEADER.pack(600 | wire.BUFFER_FLAG))
    with pytest.raises(wire.FrameTooLarge, match="incoming frame of 1200 bytes"):
        b.recv(5)
    a.close()
    b.close()


def test_buffers_arrive_in_order_beside_their_body(pair):
    a, b = pair
    big = bytes(range(256)) * 8192  # 2 MiB: a mapped buffer on the socket transports
    small = b"\x01" * 70_000
    sender = threading.Thread(target=lambda: [a.send(b"body", [memoryview(big),
                                                              memoryview(small)]),
                                              a.send(b"next")])
    sender.start()
    body, buffers = b.recv(5)
    assert bytes(body) == b"body"
    assert [bytes(x) for x in buffers] == [big, small]
    assert all(not x.readonly for x in buffers)
    assert b.recv(5) == (b"next", [])
    sender.join()
