import os
import select
import socket
import struct
import threading
import time

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


# These tests are about polling itself: a gate the machine's load cannot close.
OPEN = wire.SpinGate(runnable=lambda: None)


class _CountingSocket:
    """A socket whose waits are counted: ``polls`` that ask without waiting, ``sleeps``
    (blocking reads that no poll found ready)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.polls = 0
        self.sleeps = 0

    def ready_poll(self):
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)

        def poll():
            self.polls += 1
            return poller.poll(0)

        return poll

    def read_now(self, view):
        return lambda: self.sock.recv_into(view)

    def recv_into(self, view, nbytes=0, flags=0):
        self.sleeps += 1
        return self.sock.recv_into(view, nbytes, flags)


def _send_later(sock: socket.socket, body: bytes, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: sock.sendall(b"".join(wire.frames(body))))
    timer.start()
    return timer


def test_a_polling_reader_gets_what_comes_during_and_after_the_poll():
    a, b = socket.socketpair()
    with a, b:
        counted = _CountingSocket(b)
        reader = wire.FrameReader(counted, spin=0.5, gate=OPEN)  # type: ignore[arg-type]
        timer = _send_later(a, b"during", 0.01)
        assert reader.read() == (b"during", [])
        timer.join()
        assert counted.polls > 1 and counted.sleeps == 0
        reader.spin = 0.001
        timer = _send_later(a, b"after", 0.05)
        assert reader.read() == (b"after", [])
        timer.join()
        assert counted.sleeps == 1
        a.close()
        with pytest.raises(wire.PeerClosed):
            reader.read()


def test_failed_polls_make_the_next_reads_sleep_at_once():
    a, b = socket.socketpair()
    with a, b:
        counted = _CountingSocket(b)
        reader = wire.FrameReader(counted, spin=0.001, gate=OPEN)  # type: ignore[arg-type]
        polls_per_read = []
        for _ in range(6):  # a slow peer: every poll finds nothing
            before = counted.polls
            timer = _send_later(a, b"slow", 0.02)
            assert reader.read() == (b"slow", [])
            timer.join()
            polls_per_read.append(counted.polls - before > 0)
        if len(getattr(os, "sched_getaffinity", lambda _: {0, 1})(0)) > 1:
            assert polls_per_read == [True, False, True, False, False, True]  # skips 1, then 2
        else:  # confined to one CPU: after the first failed poll, 64 reads skip polling
            assert polls_per_read == [True, False, False, False, False, False]
        assert counted.sleeps == 6


def test_a_reader_confined_to_one_cpu_backs_off_fully():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before = os.sched_getaffinity(0)
    a, b = socket.socketpair()
    try:
        os.sched_setaffinity(0, {min(before)})
        with a, b:
            counted = _CountingSocket(b)
            reader = wire.FrameReader(counted, spin=0.001, gate=OPEN)  # type: ignore[arg-type]
            for _ in range(3):
                timer = _send_later(a, b"x", 0.01)
                assert reader.read() == (b"x", [])
                timer.join()
            polls = counted.polls
            assert polls > 0  # the first read polled, found nothing ...
            for _ in range(3):
                a.sendall(b"".join(wire.frames(b"y")))
                assert reader.read() == (b"y", [])
            assert counted.polls == polls  # ... and the next ones do not poll
    finally:
        os.sched_setaffinity(0, before)


class _FakeClock:
    def __init__(self) -> None:
        self.time = 100.0

    def __call__(self) -> float:
        return self.time


def test_the_spin_gate_follows_the_runnable_count_read_at_most_every_interval():
    clock, counts, reads = _FakeClock(), iter([2, 3, 9, 1]), []

    def runnable() -> int:
        reads.append(clock.time)
        return next(counts)

    gate = wire.SpinGate(cpus=2, runnable=runnable, now=clock, every=0.25)  # exact steps
    assert gate.open()  # 2 runnable on 2 CPUs: a poller has a CPU to spare
    clock.time += 0.125
    assert gate.open() and reads == [100.0]  # within the interval: not read again
    clock.time += 0.125
    assert not gate.open()  # 3 on 2 CPUs: closed
    clock.time += 0.125
    assert not gate.open() and len(reads) == 2
    clock.time += 0.125
    assert not gate.open()  # 9
    clock.time += 1.0
    assert gate.open()  # 1: open again
    assert reads == [100.0, 100.25, 100.5, 101.5]


def test_the_spin_gate_stays_open_where_the_count_is_unknown():
    gate = wire.SpinGate(cpus=1, runnable=lambda: None, now=_FakeClock())
    assert gate.open()


def test_a_reader_behind_a_closed_gate_sleeps_at_once_and_polls_again_when_it_opens():
    clock, count = _FakeClock(), [8]
    gate = wire.SpinGate(cpus=2, runnable=lambda: count[0], now=clock, every=0.25)
    a, b = socket.socketpair()
    with a, b:
        counted = _CountingSocket(b)
        reader = wire.FrameReader(counted, spin=0.5, gate=gate)  # type: ignore[arg-type]
        for _ in range(3):  # 8 runnable on 2 CPUs: no read polls
            timer = _send_later(a, b"busy", 0.005)
            assert reader.read() == (b"busy", [])
            timer.join()
        assert counted.polls == 0 and counted.sleeps == 3
        count[0] = 2
        clock.time += 0.25
        timer = _send_later(a, b"quiet", 0.005)
        assert reader.read() == (b"quiet", [])  # within the 0.5 s poll
        timer.join()
        assert counted.polls > 0 and counted.sleeps == 3


def test_the_machine_wide_runnable_count_is_read_on_linux():
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg here")
    count = wire._runnable_threads()
    assert isinstance(count, int) and count >= 1  # this thread is running


def test_while_one_reader_of_a_process_polls_another_sleeps_at_once():
    gate = wire.SpinGate(runnable=lambda: None)  # shared, as SPIN_GATE is by a process's readers
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    with a1, b1, a2, b2:
        first, second = _CountingSocket(b1), _CountingSocket(b2)
        polling = wire.FrameReader(first, spin=5.0, gate=gate)  # type: ignore[arg-type]
        other = wire.FrameReader(second, spin=5.0, gate=gate)  # type: ignore[arg-type]
        got: list[tuple[bytes, list[memoryview]]] = []
        thread = threading.Thread(target=lambda: got.append(polling.read()))
        thread.start()
        deadline = time.monotonic() + 5
        while not first.polls and time.monotonic() < deadline:
            time.sleep(0.001)
        assert gate.polling
        a2.sendall(b"".join(wire.frames(b"second")))
        assert other.read() == (b"second", [])
        assert second.polls == 0 and second.sleeps == 1  # no second poller
        a1.sendall(b"".join(wire.frames(b"first")))
        thread.join(5)
        assert got == [(b"first", [])] and first.sleeps == 0 and not gate.polling
        a2.sendall(b"".join(wire.frames(b"again")))
        assert other.read() == (b"again", []) and second.polls > 0  # it may poll again


def test_a_polling_reader_on_a_plain_socket_reads_and_sees_the_peer_go():
    a, b = socket.socketpair()
    with a, b:
        reader = wire.FrameReader(b, spin=0.5, gate=OPEN)  # polls the socket's fd itself
        timer = _send_later(a, b"during", 0.01)
        started = time.monotonic()
        assert reader.read() == (b"during", [])
        timer.join()
        a.sendall(b"".join(wire.frames(b"waiting")))
        assert reader.read() == (b"waiting", [])
        threading.Timer(0.01, a.close).start()
        with pytest.raises(wire.PeerClosed):
            reader.read()  # a hang-up is "ready" too: the read says the peer is gone
        assert time.monotonic() - started < 0.4  # neither waited out the poll
