"""The server's capture of what user code prints (``hxpy.capture``), in this process: capped
for the reply, or streamed to a sender while a batch runs; and the messages that carry it."""

from __future__ import annotations

import sys
import threading
import time

import msgpack

from hxpy import capture, protocol
from hxpy.capture import CHUNK, MAX_DELAY, CappedOutput, encodable, utf8_pieces


class Sink:
    """A sender that keeps what it was given, optionally held until released."""

    def __init__(self, hold: bool = False) -> None:
        self.pieces: list[str] = []
        self.released = threading.Event()
        if not hold:
            self.released.set()

    def __call__(self, text: str) -> None:
        self.released.wait()
        self.pieces.append(text)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def test_capped_mode_keeps_the_head_and_counts_the_rest():
    out = CappedOutput(10)
    out.stream.write("0123456")
    out.stream.write("789abc")
    out.stream.write("def")
    text, truncated = out.take()
    assert truncated and text.startswith("0123456789") and "6 more characters" in text
    assert out.take() == ("", False)


def test_streaming_hands_over_every_write_once_in_order_across_threads():
    out = CappedOutput(1 << 20)
    sink = Sink()
    out.start_stream(sink, threading.Lock())

    def printer(name: str) -> None:
        for i in range(2000):
            out.stream.write(f"{name}{i}\n")

    threads = [threading.Thread(target=printer, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.end_stream()
    rest, truncated = out.take()
    lines = (sink.text + rest).splitlines()
    assert not truncated and len(lines) == 6000
    for name in "abc":
        assert [line for line in lines if line[0] == name] == [f"{name}{i}" for i in range(2000)]


def test_a_line_and_a_partial_line_go_within_the_delay_each():
    out = CappedOutput(100)
    sink = Sink()
    out.start_stream(sink, threading.Lock())
    for text in ("line\n", "partial"):
        written = time.monotonic()
        out.stream.write(text)
        while sink.text.count(text) < 1 and time.monotonic() < written + 1:
            time.sleep(0.001)
        assert sink.text.endswith(text) and time.monotonic() - written <= MAX_DELAY
    assert sink.text == "line\npartial"
    out.end_stream()
    assert out.take() == ("", False)


def test_what_was_kept_between_batches_is_streamed_first():
    out = CappedOutput(5)
    out.stream.write("between batches\n")  # over the cap: cut, with its marker
    sink = Sink()
    out.start_stream(sink, threading.Lock())
    out.stream.write("in the batch\n")
    time.sleep(0.1)
    out.end_stream()
    streamed = sink.text + out.take()[0]
    assert streamed.startswith("betwe\n[... output truncated by hxpy: 11 more")
    assert streamed.endswith("...]\nin the batch\n")


def test_a_full_backlog_makes_the_writer_wait_and_the_end_sends_all_but_a_chunk():
    out = CappedOutput(1 << 20)
    sink = Sink(hold=True)
    out.start_stream(sink, threading.Lock())
    line = "x" * 99 + "\n"
    done = threading.Event()

    def printer() -> None:
        for _ in range(30_000):  # 3 MB, three times the backlog
            out.stream.write(line)
        done.set()

    writer = threading.Thread(target=printer)
    writer.start()
    assert not done.wait(0.5)  # held back while the sender is stuck
    sink.released.set()
    assert done.wait(10)
    writer.join()
    out.end_stream()
    rest, _ = out.take()
    assert len(rest) <= CHUNK
    assert sink.text + rest == line * 30_000
    assert max(len(piece) for piece in sink.pieces) <= CHUNK


def test_a_write_after_the_end_is_kept_for_the_next_reply():
    out = CappedOutput(100)
    sink = Sink()
    out.start_stream(sink, threading.Lock())
    out.end_stream()
    out.stream.write("late\n")
    assert out.take() == ("late\n", False)


def test_text_is_made_encodable_and_cut_between_characters():
    assert encodable("plain") == "plain"
    assert encodable("bad \udcff \ud800 ok é") == "bad \ufffd \ufffd ok é"
    pieces = utf8_pieces("aé€😀" * 1000, 100)
    assert "".join(pieces) == "aé€😀" * 1000
    assert all(len(piece.encode()) <= 100 for piece in pieces)


def test_the_stream_flag_and_the_output_message():
    ops = [protocol.pack_eval("1 + 1")]
    plain = protocol.pack_batch(7, 10.0, ops)
    assert plain == msgpack.packb({"type": "batch", "id": 7, "timeout": 10.0,
                                   "ops": [["eval", "1 + 1"]]})
    assert msgpack.unpackb(protocol.pack_batch(7, 10.0, ops, stream=True)) == {
        "type": "batch", "id": 7, "timeout": 10.0, "stream": True, "ops": [["eval", "1 + 1"]]}
    assert msgpack.unpackb(protocol.pack_output(7, "hé\n")) == {
        "type": "output", "batch": 7, "text": "hé\n"}
    assert capture.MAX_DELAY == 0.2 and capture.MIN_GAP <= 0.02


def test_without_a_thread_for_the_flusher_output_is_kept_for_the_reply(monkeypatch):
    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    out = CappedOutput(100)
    assert out.start_stream(Sink(), threading.Lock()) is False
    out.stream.write("kept\n")
    assert out.take() == ("kept\n", False)


def test_bytes_and_text_utf8_cannot_carry_become_replacement_characters():
    out = CappedOutput(100)
    out.stream.write("lone \ud800 and \udcff\n")
    out.stream.flush()
    out.stream.buffer.write(b"bin \xff\xfe\x00 \xe2\x82")  # a character cut at its end
    out.stream.buffer.write(b"\xac split\n")  # ...and completed by the next write
    assert out.take() == ("lone \ufffd and \ufffd\nbin \ufffd\ufffd\x00 \u20ac split\n", False)


def test_the_stream_looks_like_a_files_and_a_write_in_progress_is_busy():
    out = CappedOutput(100)
    assert out.stream.encoding == "utf-8" and not out.stream.isatty()
    assert out.stream.name == "<hxpy output>" and out.stream.writable()
    seen = []

    def sender(text: str) -> None:
        seen.append(out.busy(sys._getframe()))

    assert not out.busy(sys._getframe())
    out.start_stream(sender, threading.Lock())
    out.stream.write("x" * (CHUNK + 1))  # past the buffer: handed over from this thread
    out.end_stream()
    assert seen and all(seen)
