"""A run's log as it is written: whole up to its cap, then its head, a marker and its last
part; followed from an offset by any reader; masked line by line; bounded by the quota."""

from __future__ import annotations

import re

from pyhost.runtime.run_log import HEAD, LogFollower, RunLog, read_log

CAP = HEAD + (1 << 20)  # 2 MiB: the head and 1 MiB of tail


def lines(first: int, count: int) -> str:
    return "".join(f"line {i:08d}\n" for i in range(first, first + count))  # 14 bytes


def test_a_log_under_its_cap_is_kept_whole_and_read_while_written(tmp_path):
    log = RunLog(tmp_path, CAP)
    log.write("one\ntw")
    assert read_log(tmp_path, CAP) == "one\n"  # the partial line is held back
    log.write("o\n")
    log.write("three")
    log.close()
    assert read_log(tmp_path, CAP) == "one\ntwo\nthree"


def test_past_its_cap_the_head_a_marker_and_the_last_part_are_kept(tmp_path):
    log = RunLog(tmp_path, CAP)
    count = (6 << 20) // 14  # 6 MiB written, the cap is 2 MiB
    for first in range(0, count, 10000):
        log.write(lines(first, min(10000, count - first)))
    log.close()
    text = read_log(tmp_path, CAP)
    head, marker, tail = re.split(r"\n(\[\.\.\. \d+ bytes of logs dropped by pyhost "
                                  r"\(log_cap=\w+\) \.\.\.\])\n", text)
    assert head.startswith("line 00000000\n") and len(head.encode()) <= HEAD
    assert tail.endswith(f"line {count - 1:08d}\n")
    dropped = int(re.search(r"(\d+) bytes", marker)[1])
    assert dropped + len(head.encode()) + len(tail.encode()) == count * 14
    assert CAP - HEAD - 100 < len(tail.encode()) <= CAP - HEAD
    on_disk = sum(path.stat().st_size for path in tmp_path.iterdir())
    assert on_disk <= 2.5 * CAP


def test_a_follower_sees_everything_in_order_and_is_told_what_it_missed(tmp_path):
    log = RunLog(tmp_path, CAP)
    close, lagging = LogFollower(tmp_path, CAP), LogFollower(tmp_path, CAP)
    seen = []
    total = 0
    for first in range(0, 600000, 20000):  # 8.4 MiB
        log.write(lines(first, 20000))
        total += 20000
        seen.append(close.read())
    log.close()
    seen.append(close.read())
    assert "".join(seen) == lines(0, total)
    late = lagging.read()
    assert late.startswith(lines(0, 10))
    assert re.search(r"\[\.\.\. \d+ bytes of logs dropped", late)
    assert late.endswith(f"line {total - 1:08d}\n")
    assert lagging.read() == ""


def test_secrets_are_masked_even_when_a_chunk_cuts_them(tmp_path):
    log = RunLog(tmp_path, CAP, mask=lambda text: text.replace("hunter2", "***"))
    log.write("token=hun")
    log.write("ter2 ok\nbye")
    log.close()
    assert read_log(tmp_path, CAP) == "token=*** ok\nbye"


def test_the_store_quota_stops_the_log_with_a_line_saying_so(tmp_path):
    room = [100]

    def allow(size: int) -> int:
        kept = min(size, room[0])
        room[0] -= kept
        return kept

    log = RunLog(tmp_path, CAP, allow=allow)
    log.write(lines(0, 20))
    log.write(lines(20, 20))
    log.close()
    text = read_log(tmp_path, CAP)
    assert text.startswith(lines(0, 7)) and "store quota is used up" in text
    assert "line 00000020" not in text


def test_invalid_text_is_stored_with_replacement_characters(tmp_path):
    log = RunLog(tmp_path, CAP)
    log.write("bad \udcff byte\n")
    log.close()
    assert read_log(tmp_path, CAP) == "bad ? byte\n"


def test_a_log_the_filesystem_refuses_is_lost_without_failing_its_run(tmp_path, caplog):
    # A full disk in tests/faults/test_full_store.py; here a file that cannot be opened.
    log = RunLog(tmp_path / "logs", 1 << 20)
    (tmp_path / "logs" / "logs.txt").mkdir(parents=True)  # the log is made by its first line
    log.write("a line\nanother\n")
    log.write("more\n")
    assert log.lost == len("a line\nanother\nmore\n")
    assert caplog.text.count("cannot be written") == 1  # said once


def test_a_run_that_prints_nothing_makes_no_log_directory(tmp_path):
    log = RunLog(tmp_path / "logs", 1 << 20)
    log.flush()
    assert not (tmp_path / "logs").exists()
    assert read_log(tmp_path / "logs", 1 << 20) == ""  # a missing log reads as empty
    log.write("first\n")
    assert (tmp_path / "logs" / "logs.txt").read_text() == "first\n"


def test_a_log_another_writer_began_goes_on_past_what_that_one_wrote(tmp_path):
    """A log's size is read when its writer first stores something, not when it is made:
    the bytes another writer (an earlier attempt) stored by then count toward the cap."""
    cap = 4096
    first, second = RunLog(tmp_path / "logs", cap), RunLog(tmp_path / "logs", cap)
    first.write("a" * 2999 + "\n")
    second.write("b" * 2999 + "\n")
    assert (tmp_path / "logs" / "logs.txt").stat().st_size == cap  # the rest went past it
    text = read_log(tmp_path / "logs", cap)
    assert text.startswith("a" * 2048) and text.endswith("b" * 2047 + "\n")
    assert "[... 1904 bytes of logs dropped by pyhost" in text
