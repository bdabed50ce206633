"""hxpy.pipes: a session's messages over two pipes, the fds sent with the hello."""

import os
import socket
import tempfile
import threading
import time

import numpy as np
import pytest

from hxpy import codec, pipes, startup, wire


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.fixture
def ends():
    made = pipes.host_pipes()
    assert made is not None, "this kernel reads pipes without blocking (Linux 5.8+)"
    host, theirs = made
    server = pipes.server_pipes(theirs)
    assert server is not None
    yield host, server
    host.close()
    server.close()


def test_messages_cross_both_ways_through_the_wire_readers(ends):
    host, server = ends
    wire.send_message(host, {"type": "batch", "id": 1})
    assert wire.recv_message(server) == {"type": "batch", "id": 1}
    wire.send_message(server, {"type": "result", "id": 1, "value": [1, "a"]})
    assert wire.recv_message(host) == {"type": "result", "id": 1, "value": [1, "a"]}


def test_a_message_larger_than_the_pipe_crosses_whole_with_its_buffers(ends):
    host, server = ends
    array = np.arange(1_000_000, dtype=np.float64)  # 8 MB, out of band: sendmsg -> writev
    body, buffers = codec.encode_parts({"type": "x", "a": array})
    assert buffers
    sender = threading.Thread(target=wire.send, args=(host, body, buffers))
    sender.start()
    got = codec.decode(*wire.FrameReader(server).read())
    sender.join()
    assert np.array_equal(got["a"], array)


def test_a_read_that_must_not_wait_says_so(ends):
    host, _ = ends
    with pytest.raises(BlockingIOError):
        host.recv_into(bytearray(8), 0, socket.MSG_DONTWAIT)


def test_a_polling_reader_gets_a_message_sent_while_it_polls(ends):
    host, server = ends
    reader = wire.FrameReader(server, spin=0.5, gate=wire.SpinGate(runnable=lambda: 0))
    threading.Timer(0.01, wire.send_message, (host, {"type": "late"})).start()
    body, buffers = reader.read()
    assert codec.decode(body, buffers) == {"type": "late"}


def test_a_timeout_bounds_a_blocking_read(ends):
    host, _ = ends
    host.timeout = 0.05
    started = time.monotonic()
    with pytest.raises(BlockingIOError):
        host.recv_into(bytearray(8))
    assert 0.04 <= time.monotonic() - started < 2


def test_the_peer_closing_its_end_is_peer_closed(ends):
    host, server = ends
    server.close()
    host.timeout = 5.0
    with pytest.raises(wire.PeerClosed):
        wire.FrameReader(host).read()


def test_server_pipes_takes_only_a_read_end_then_a_write_end():
    def fresh():
        made = pipes.host_pipes()
        assert made is not None
        made[0].close()
        return made[1]  # [read end, write end]

    def read_end_only():
        read_end, write_end = fresh()
        os.close(write_end)
        return read_end

    with tempfile.TemporaryFile() as file:
        refused = [list(reversed(fresh())), [read_end_only(), os.dup(file.fileno())],
                   [read_end_only()], fresh() + [os.dup(file.fileno())], []]
    for fds in refused:
        assert pipes.server_pipes(list(fds)) is None
        assert all(_closed(fd) for fd in fds), f"{fds} left open"


def test_the_hello_reader_keeps_the_fds_sent_with_the_hello():
    a, b = socket.socketpair()
    made = pipes.host_pipes()
    assert made is not None
    local, theirs = made
    with a, b:
        frame = wire.HEADER.pack(len(body := codec.encode({"type": "hello"}))) + body
        socket.send_fds(a, [frame], theirs)
        for fd in theirs:
            os.close(fd)
        catcher = pipes.FdCatcher(b)
        assert startup.read_hello(b, 1 << 20, 5.0, catcher) == {"type": "hello"}
        received = catcher.take_fds()
        assert not any(os.get_inheritable(fd) for fd in received)  # as the connection's
        server = pipes.server_pipes(received)
        assert server is not None
        wire.send_message(local, {"type": "down"})
        assert wire.recv_message(server) == {"type": "down"}
        server.close()
        local.close()


def test_fds_after_the_hello_reader_closes_them():
    a, b = socket.socketpair()
    read_end, write_end = os.pipe()
    with a, b:
        socket.send_fds(a, [wire.HEADER.pack(1) + b"\xc0"], [read_end, write_end])
        catcher = pipes.FdCatcher(b)
        wire.FrameReader(catcher, buffer_size=wire.HEADER.size).read()  # type: ignore[arg-type]
        taken = list(catcher.fds)
        assert len(taken) == 2
        catcher.close_fds()
        assert catcher.fds == [] and all(_closed(fd) for fd in taken)
    os.close(read_end)
    os.close(write_end)


def test_a_large_message_goes_over_the_bulk_stream_in_its_place_among_small_ones():
    class Counted:  # the host's bulk stream, counting what goes over it
        def __init__(self, sock):
            self.sock, self.sent = sock, 0

        def sendall(self, data):
            self.sent += len(data)
            self.sock.sendall(data)

        def sendmsg(self, views):
            sent = self.sock.sendmsg(views)
            self.sent += sent
            return sent

    made = pipes.host_pipes()
    assert made is not None
    host, theirs = made
    here, there = socket.socketpair()
    server = pipes.server_pipes(theirs, bulk=there)
    assert server is not None
    host.bulk = counted = Counted(here)
    try:
        array = np.arange(wire.BULK_FROM, dtype=np.uint8)  # 256 KiB: at the threshold
        sent = [{"type": "small", "n": 1}, {"type": "large", "a": array},
                {"type": "small", "n": 2}]
        reader = wire.FrameReader(server)
        for message in sent:
            before = counted.sent
            body, buffers = codec.encode_parts(message)
            sender = threading.Thread(target=wire.send, args=(host, body, buffers))
            sender.start()
            got = codec.decode(*reader.read())
            sender.join()
            assert got["type"] == message["type"]
            over_the_socket = counted.sent - before
            if message["type"] == "large":
                assert np.array_equal(got["a"], array)
                assert over_the_socket > wire.BULK_FROM
            else:
                assert over_the_socket == 0
        here.close()
        wire.send(host, b"", ())  # the mark alone: the next message is on the socket
        with pytest.raises(wire.PeerClosed):  # which is closed
            reader.read()
    finally:
        host.close()
        server.close()
        there.close()


def test_without_a_bulk_stream_an_empty_frame_is_only_an_empty_frame(ends):
    host, server = ends
    host.sendall(wire.HEADER.pack(0))
    assert wire.FrameReader(server).read() == (b"", [])
