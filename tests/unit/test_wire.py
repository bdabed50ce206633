import socket
import struct
import threading

import pytest

from hxpy import codec, wire


def test_a_frame_is_big_endian_length_then_payload():
    assert b"".join(wire.frames(b"\x81\xa1a\x01")) == b"\x00\x00\x00\x04\x81\xa1a\x01"


def test_golden_message_bytes():
    body = codec.encode({"type": "hello", "version": 1})
    assert body == b"\x82\xa4type\xa5hello\xa7version\x01"


def test_send_and_receive_message_over_socketpair():
    a, b = socket.socketpair()
    with a, b:
        wire.send_message(a, {"type": "x", "n": [1, 2.5, "s", None, b"\x00"]})
        assert wire.recv_message(b) == {"type": "x", "n": [1, 2.5, "s", None, b"\x00"]}


def test_outgoing_frame_over_max_is_refused_before_sending():
    with pytest.raises(wire.FrameTooLarge, match="outgoing frame of 11 bytes exceeds"):
        wire.frames(b"x" * 11, max_size=10)


def test_incoming_frame_over_max_is_refused_before_reading_the_body():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 2**31 - 1))  # announces 2 GiB, sends nothing more
        with pytest.raises(wire.FrameTooLarge, match="incoming frame of 2147483647 bytes"):
            wire.FrameReader(b, max_size=1 << 20).read()


def test_large_frame_arrives_whole():
    a, b = socket.socketpair()
    payload = bytes(range(256)) * 40_000  # 10 MB: many partial reads
    with a, b:
        sender = threading.Thread(target=lambda: a.sendall(b"".join(wire.frames(payload))))
        sender.start()
        assert wire.FrameReader(b).read() == (payload, [])
        sender.join()


def test_peer_closing_mid_frame_is_peer_closed():
    a, b = socket.socketpair()
    with b:
        a.sendall(struct.pack(">I", 100) + b"only ten b")
        a.close()
        with pytest.raises(wire.PeerClosed, match="after 10 of 100 bytes"):
            wire.FrameReader(b).read()


def test_peer_closing_between_frames_is_peer_closed():
    a, b = socket.socketpair()
    with b:
        a.close()
        with pytest.raises(wire.PeerClosed):
            wire.FrameReader(b).read()


def test_message_must_be_a_map_with_a_type():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"".join(wire.frames(codec.encode([1, 2]))))
        with pytest.raises(codec.MarshalError, match="'type'"):
            wire.recv_message(b)


def test_messages_read_in_order_whatever_the_reads_bring():
    # Two whole messages in one read, then one whose header and body come apart.
    a, b = socket.socketpair()
    with a, b:
        reader = wire.FrameReader(b)
        a.sendall(b"".join(wire.frames(b"one") + wire.frames(b"two") + [b"\x00\x00"]))
        assert reader.read() == (b"one", [])
        assert reader.read() == (b"two", [])
        sender = threading.Thread(target=lambda: a.sendall(b"\x00\x05th" + b"ree"))
        sender.start()
        assert reader.read() == (b"three", [])
        sender.join()


def test_exact_reader_reads_nothing_beyond_its_message():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"".join(wire.frames(b"first") + wire.frames(b"second")))
        assert wire.FrameReader(b, buffer_size=wire.HEADER.size).read() == (b"first", [])
        assert wire.FrameReader(b).read() == (b"second", [])


def test_small_frames_over_max_are_refused_both_ways():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(wire.FrameTooLarge, match="outgoing frame of 11 bytes"):
            wire.send(a, b"x" * 11, max_size=10)
        a.sendall(b"".join(wire.frames(b"x" * 11)))  # whole in the reader's first read
        with pytest.raises(wire.FrameTooLarge, match="incoming frame of 11 bytes"):
            wire.FrameReader(b, max_size=10).read()
