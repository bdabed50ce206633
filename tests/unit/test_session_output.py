"""``eval(code, on_output=...)`` against the real hxpy server run as a local process: output
arrives while the eval runs, once, in order, and a session without it is unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import tracemalloc

import pytest

from pyhost import AsyncSession, SessionTimeout
from tests.support.tap import TappedLauncher
from tests.unit.conftest import session


class Recorder:
    """An on_output callback keeping each chunk and when it came."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.times: list[float] = []

    def __call__(self, text: str) -> None:
        self.times.append(time.monotonic())
        self.chunks.append(text)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def test_a_line_arrives_while_the_eval_still_runs(launcher):
    got = Recorder()
    with session(launcher) as s:
        s.eval("None")  # started: the timing below is the eval's alone
        value = s.eval("import time\nprint('first')\ntime.sleep(0.5)\nprint('second')\n42",
                       on_output=got)
        returned = time.monotonic()
    assert value == 42
    assert got.chunks and got.chunks[0] == "first\n"
    assert returned - got.times[0] >= 0.4
    assert got.text + s.last_output == "first\nsecond\n"


def test_chunks_then_last_output_are_everything_once_in_order(launcher):
    code = """
import sys, threading, time
def side():
    for i in range(50):
        print(f'thread {i}')
for i in range(300):
    print(f'main {i}', file=sys.stderr if i % 3 else sys.stdout)
    if i % 40 == 0:
        sys.stdout.write('partial-'); time.sleep(0.03)
    if i == 150:
        worker = threading.Thread(target=side); worker.start(); worker.join()
print('end')
"""
    lines = []
    for i in range(300):
        lines.append(f"main {i}\n")
        if i % 40 == 0:
            lines.append("partial-")
        if i == 150:
            lines += [f"thread {i}\n" for i in range(50)]
    expected = "".join(lines) + "end\n"
    got = Recorder()
    with session(launcher) as s:
        s.exec(code).eval("None", on_output=got)
        assert len(got.chunks) > 1
        assert got.text + s.last_output == expected
        # The next eval streams only its own output.
        again = Recorder()
        s.eval("print('next')", on_output=again)
        assert again.text + s.last_output == "next\n"


def test_a_partial_line_arrives_within_200_ms(launcher):
    got = Recorder()
    with session(launcher) as s:
        s.eval("None")
        started = time.monotonic()
        s.eval("import sys, time\nsys.stdout.write('no newline yet')\ntime.sleep(1.0)",
               on_output=got)
    assert got.chunks[0] == "no newline yet"
    assert got.times[0] - started <= 0.25  # 200 ms, and the way to the host


def test_20_mb_of_short_lines_arrive_complete_in_order_in_bounded_host_memory(launcher):
    count = 800_000  # 26 bytes a line: about 21 MB
    line = "line {:08d} abcdefghijk\n"
    expected = hashlib.sha256()
    for start in range(0, count, 10_000):
        expected.update("".join(map(line.format, range(start, start + 10_000))).encode())
    received = hashlib.sha256()  # in order and complete, without keeping a chunk
    sizes = []

    def check(text: str) -> None:
        received.update(text.encode())
        sizes.append(len(text.encode()))

    with session(launcher, timeout=120) as s:
        s.eval("None")
        tracemalloc.start()
        try:
            s.eval(f"for i in range({count}): print(f'line {{i:08d}} abcdefghijk')",
                   on_output=check)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        received.update(s.last_output.encode())
    assert received.hexdigest() == expected.hexdigest()
    assert sum(sizes) + len(s.last_output) == count * 26
    assert len(sizes) >= count * 26 // 65536 and max(sizes) <= 65536
    assert peak < 8 << 20, f"the host held {peak} bytes at its peak"


def test_a_slow_consumer_makes_the_printer_wait_instead_of_filling_memory(launcher):
    rss = "import resource; resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
    lines = 100_000  # 100 characters a line: 10 MB, which a printer not held back would queue
    seen = []

    def slow(text: str) -> None:
        seen.append(len(text))
        time.sleep(0.01)

    with session(launcher, timeout=120) as s:
        before = s.eval(rss)
        s.eval(f"for i in range({lines}): print(f'{{i:099d}}')", on_output=slow)
        assert sum(seen) + len(s.last_output) == lines * 100
        grown_kb = s.eval(rss) - before
    assert grown_kb < 5 * 1024, f"the server grew by {grown_kb} KiB"


def test_one_large_write_is_split_into_frames_of_at_most_64_kib(launcher):
    got = Recorder()
    text = "é" * 200_000 + "x" * 300_000 + "\n"  # 700 KB of UTF-8 in one write
    with session(launcher) as s:
        s.define("text", text).eval("import sys, time\nsys.stdout.write(text)\ntime.sleep(0.3)",
                                    on_output=got)
    assert got.text + s.last_output == text
    assert max(len(chunk.encode()) for chunk in got.chunks) <= 65536
    assert len(got.chunks) >= len(text.encode()) // 65536


def test_text_utf8_cannot_encode_becomes_replacement_characters(launcher):
    code = "import sys\nprint('bad \\udcff byte')\nsys.stderr.write('lone \\ud800\\n')\n7"
    with session(launcher) as s:
        assert s.eval(code) == 7  # captured, not streamed
        assert s.last_output == "bad \ufffd byte\nlone \ufffd\n"
        got = Recorder()
        assert s.eval(code, on_output=got) == 7
        assert got.text + s.last_output == "bad \ufffd byte\nlone \ufffd\n"
        assert s.eval("1 + 1") == 2


def test_without_on_output_no_output_frame_crosses_the_wire(launcher):
    tapped = TappedLauncher(launcher)
    code = "import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.05)\n"
    with session(tapped) as s:
        s.eval("None")
        (tap,) = tapped.taps
        before = tap.to_host.messages
        s.exec(code).eval("None")
        assert tap.to_host.messages == before + 1  # the reply, and nothing else
        assert s.last_output == "0\n1\n2\n3\n4\n"
        got = Recorder()
        s.exec(code).eval("None", on_output=got)
        assert tap.to_host.messages >= before + 1 + 1 + 4  # the lines came one by one
        assert got.text + s.last_output == "0\n1\n2\n3\n4\n"


def test_a_callback_that_raises_is_logged_once_and_the_eval_goes_on(launcher, caplog):
    calls = []

    def broken(text: str) -> None:
        calls.append(text)
        raise ValueError("the consumer broke")

    code = "import time\nfor i in range(4):\n    print(i)\n    time.sleep(0.05)\n'done'"
    with caplog.at_level(logging.WARNING, logger="pyhost"), session(launcher) as s:
        assert s.eval(code, on_output=broken) == "done"
        assert "".join(calls) + s.last_output == "0\n1\n2\n3\n"
        assert s.eval("2") == 2
    raised = [r for r in caplog.records if "on_output raised" in r.getMessage()]
    assert len(calls) >= 3 and len(raised) == 1
    assert "the consumer broke" in caplog.text


def test_output_interleaves_with_calls_to_the_host(launcher):
    got = Recorder()
    code = """
from hxpy.server import call_host
import time
print('before')
time.sleep(0.1)
answer = call_host('double', 21)
print('after', answer)
time.sleep(0.1)
answer
"""
    with session(launcher) as s:
        s.handle("double", lambda value: got.chunks.append("<call>\n") or value * 2)
        assert s.eval(code, on_output=got) == 42
    assert got.text + s.last_output == "before\n<call>\nafter 42\n"


def test_a_soft_timeout_while_printing_fast_leaves_the_session_usable(launcher):
    got = Recorder()
    with session(launcher, timeout=1) as s:
        with pytest.raises(SessionTimeout) as caught:
            s.eval("i = 0\nwhile True:\n    print('x' * 100, i)\n    i += 1", on_output=got)
        assert caught.value.kind == "soft"
        streamed = got.text + s.last_output
        lines = streamed.splitlines()
        assert len(lines) > 1000
        assert all(line == f"{'x' * 100} {n}" for n, line in enumerate(lines[:-1]))
        assert s.eval("i > 1000") is True  # the namespace is kept, the stream intact


def test_the_blocking_session_refuses_a_coroutine_function(launcher):
    async def callback(text: str) -> None:
        pass

    with session(launcher) as s, pytest.raises(TypeError, match="AsyncSession"):
        s.eval("1", on_output=callback)
    with session(launcher) as s, pytest.raises(TypeError, match="callable"):
        s.eval("1", on_output="print")  # type: ignore[arg-type]


def test_the_async_session_awaits_a_coroutine_callback_or_calls_a_plain_one(launcher):
    code = "import time\nprint('first')\ntime.sleep(0.5)\nprint('second')\n'ok'"

    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with AsyncSession(launcher, io=None) as s:
            got = Recorder()

            async def consume(text: str) -> None:
                await asyncio.sleep(0)
                got(text)

            ticking = asyncio.ensure_future(ticker())
            assert await s.eval(code, on_output=consume) == "ok"
            returned = time.monotonic()
            ticking.cancel()
            assert got.chunks[0] == "first\n" and returned - got.times[0] >= 0.4
            assert got.text + s.last_output == "first\nsecond\n"
            assert ticks > 20  # the loop ran while the eval waited

            plain = Recorder()
            assert await s.eval(code, on_output=plain) == "ok"
            assert plain.chunks[0] == "first\n"
            assert plain.text + s.last_output == "first\nsecond\n"

    asyncio.run(main())


def test_a_soft_timeout_while_the_host_reads_slowly_cuts_no_frame_and_repeats_nothing(
        launcher):
    # The printer spends its time waiting for the host inside the hand-over of a buffer,
    # where the timeout finds it: the hand-over ends first, then the batch.
    got = Recorder()

    def slow(text: str) -> None:
        got(text)
        time.sleep(0.02)

    with session(launcher, timeout=1) as s:
        with pytest.raises(SessionTimeout) as caught:
            s.eval("i = 0\nwhile True:\n    print('y' * 200, i)\n    i += 1", on_output=slow)
        assert caught.value.kind == "soft"
        lines = (got.text + s.last_output).splitlines()
        assert len(lines) > 100
        assert all(line == f"{'y' * 200} {n}" for n, line in enumerate(lines[:-1]))
        assert s.eval("i > 100") is True
