"""A run's log in the store, written while the run runs and read (or followed) by any process.

Layout, in the run's ``logs/`` directory: ``logs.txt`` takes the first ``cap`` bytes, as
they come; past the cap, the rest goes to ``tail-<offset>.txt`` segments of
``(cap - HEAD) // 2`` bytes each, named by the byte offset of their first byte in the whole
log, of which the last three are kept (so the last ``cap - HEAD`` bytes always are). Every
file is only ever appended to, so a reader at an offset never sees bytes change under it.
What :func:`read_log` shows of a log past its cap is its first ``HEAD`` bytes (half of a
small cap), one marker line saying how much was dropped, and its last ``cap - HEAD``
bytes. Writes cost O(their size), however long the log: a handler printing a gigabyte
leaves at most 2.5 times the cap on disk and nothing of it in memory.

A follower keeps its byte offset in the whole log (:class:`LogFollower`): it reads
``logs.txt`` and then the segments in order, and where the bytes it was at are gone (a
segment dropped while it lagged) it says so in a marker line and goes on from the oldest
kept.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from .limits import format_size

__all__ = ["HEAD", "LOG_FILE", "LogFollower", "RunLog", "log_tail", "read_log"]

LOG_FILE = "logs.txt"
HEAD = 1 << 20  # bytes of a log past its cap that are kept from its start
_SEGMENT = re.compile(r"^tail-(\d{20})\.txt$")
_log = logging.getLogger("pyhost.runtime")
_DROPPED = "\n[... {dropped} bytes of logs dropped by pyhost (log_cap={cap}) ...]\n"


class RunLog:
    """The writing end (one per run, thread-safe). ``mask`` is applied to each complete line
    (and to a partial line once ``flush``/``close`` writes it), so a secret is never cut in
    two by a chunk boundary; ``allow(n)`` says how many of ``n`` more bytes may be stored (the
    run's store quota)."""

    def __init__(self, directory: Path, cap: int, mask: Callable[[str], str] = str,
                 allow: Callable[[int], int] | None = None) -> None:
        self.directory = directory
        self._cap = _cap(cap)
        self._segment_size = _segment_size(self._cap)
        self._mask = mask
        self._allow = allow
        self._partial = ""  # an unterminated last line, held back for masking
        self._lock = threading.Lock()
        self.lost = 0  # bytes the filesystem refused (a full disk): the run goes on without
        # Made by the first bytes stored: a run that prints nothing costs no directory, nor
        # a look at it, and a reader treats a missing log as empty.
        self._made = False
        self._written = 0  # bytes of the whole log: read when it is made (another attempt's)
        self._refused = False

    @functools.cached_property
    def path(self) -> Path:
        """The log's first file (``logs.txt``), made when first needed: a run that prints
        nothing needs none (a Path is a tenth of a small local run's log set-up)."""
        return self.directory / LOG_FILE

    def write(self, text: str) -> None:
        """Append ``text``; complete lines are stored at once."""
        with self._lock:
            text = self._partial + text
            cut = text.rfind("\n") + 1
            self._partial = text[cut:]
            if len(self._partial) > 65536:  # a very long line is not held back forever
                cut, self._partial = len(text), ""
            if cut:
                self._store(self._mask(text[:cut]))

    def flush(self) -> None:
        """Store the unterminated last line too."""
        with self._lock:
            if self._partial:
                self._store(self._mask(self._partial))
                self._partial = ""

    def close(self) -> None:
        self.flush()

    def _store(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        if self._allow is not None and not self._refused:
            allowed = self._allow(len(data))
            if allowed < len(data):
                self._refused = True
                data = data[:allowed] + b"\n[... the run's store quota is used up: no more " \
                                        b"logs kept ...]\n"
        elif self._refused:
            return
        if data and not self._made:
            try:
                self._written = _total(self.directory)  # a log another attempt began goes on
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._lose(len(data), exc)
                return
            self._made = True
        while data:
            if self._written < self._cap:
                room = self._cap - self._written
                target = self.path
            else:
                past = self._written - self._cap
                start = self._cap + past - past % self._segment_size
                room = start + self._segment_size - self._written
                target = self.directory / f"tail-{start:020d}.txt"
                if not target.exists():
                    _drop_old_segments(self.directory, keep=2)  # the new one makes three
            chunk, data = data[:room], data[room:]
            try:
                with open(target, "ab") as out:
                    out.write(chunk)
            except OSError as exc:  # what the disk took of it is counted by the next _total
                self._lose(len(chunk) + len(data), exc)
                self._written = _total(self.directory)
                return
            self._written += len(chunk)

    def _lose(self, size: int, exc: OSError) -> None:
        # A log is worth less than the run it tells of: a log that cannot be written (the
        # store's disk full) must not fail the run or lose how it ended. Said once, here.
        if not self.lost and size:
            _log.warning("the log of %s cannot be written (%s); %d bytes of it, and what "
                         "follows while this lasts, are lost", self.directory, exc, size)
        self.lost += size


def read_log(directory: Path, cap: int) -> str:
    """The log as kept: whole up to ``cap``; past it, its first ``HEAD`` bytes (half of a
    cap under 2 MiB), a marker saying how many bytes were dropped, and its last bytes up to
    the cap."""
    cap = _cap(cap)
    total = _total(directory)
    if total <= cap:
        return _read_range(directory, cap, 0, total).decode("utf-8", errors="replace")
    head_size = _head(cap)
    start = total - (cap - head_size)
    head = _read_range(directory, cap, 0, head_size)
    tail = _read_range(directory, cap, start, total)
    marker = _DROPPED.format(dropped=start - head_size, cap=format_size(cap))
    return (head.decode("utf-8", errors="ignore") + marker +
            tail.decode("utf-8", errors="ignore"))


def log_tail(directory: Path, cap: int, limit: int) -> tuple[str, int, int]:
    """The last ``limit`` bytes of the log kept (fewer when less is on disk), where they
    start and where the log ends (a :class:`LogFollower` from there reads what comes
    next)."""
    cap = _cap(cap)
    total = _total(directory)
    start = max(total - limit, _oldest_kept(directory, cap) if total > cap else 0)
    data = _read_range(directory, cap, start, total)
    return data.decode("utf-8", errors="ignore"), start, total


class LogFollower:
    """Reads a log from a byte offset on, as it grows (any process)."""

    def __init__(self, directory: Path, cap: int, offset: int = 0) -> None:
        self.directory = directory
        self.cap = _cap(cap)
        self.offset = offset
        self._pending = b""

    def read(self) -> str:
        """What was written since the last read (whole UTF-8 characters only)."""
        total = _total(self.directory)
        data = self._pending
        if self.offset < self.cap:  # logs.txt is never dropped
            end = min(total, self.cap)
            data += _read_range(self.directory, self.cap, self.offset, end)
            self.offset = max(self.offset, end)
        oldest = _oldest_kept(self.directory, self.cap)
        if self.cap <= self.offset < oldest:  # dropped while this reader lagged
            data += _DROPPED.format(dropped=oldest - self.offset,
                                    cap=format_size(self.cap)).encode()
            self.offset = oldest
        if self.offset < total:
            data += _read_range(self.directory, self.cap, self.offset, total)
            self.offset = total
        text = data.decode("utf-8", errors="ignore")
        used = len(text.encode("utf-8"))
        if 0 < len(data) - used < 4 and not data[used:].isascii():  # a character cut in two
            self._pending = data[used:]
            return data[:used].decode("utf-8", errors="replace")
        self._pending = b""
        return data.decode("utf-8", errors="replace")


def _cap(cap: int) -> int:
    return max(cap, 4096)


def _head(cap: int) -> int:
    """Bytes kept from the start of a log past ``cap``: ``HEAD``, or half of a small cap."""
    return min(HEAD, cap // 2)


def _segment_size(cap: int) -> int:
    return max((cap - _head(cap)) // 2, 1024)


def _total(directory: Path) -> int:
    """Bytes written to the whole log."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0  # no directory, no log (the first line makes both): one system call
    segments = _segments(directory, names)
    if segments:
        return segments[-1][0] + _size(segments[-1][1])
    return _size(directory / LOG_FILE)


def _oldest_kept(directory: Path, cap: int) -> int:
    """The first byte offset past the head still on disk (0: nothing dropped)."""
    segments = _segments(directory)
    if not segments or segments[0][0] <= cap:
        return 0
    return segments[0][0]


def _read_range(directory: Path, cap: int, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the whole log, from ``logs.txt`` and the segments (what is
    no longer kept is skipped)."""
    parts = []
    if start < min(end, cap):
        parts.append(_read_file(directory / LOG_FILE, start, min(end, cap) - start))
    for offset, segment in _segments(directory):
        lo, hi = max(start, offset), min(end, offset + _segment_size(cap))
        if lo < hi:
            parts.append(_read_file(segment, lo - offset, hi - lo))
    return b"".join(parts)


def _read_file(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(size)
    except FileNotFoundError:  # a segment dropped meanwhile
        return b""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _segments(directory: Path, names: list[str] | None = None) -> list[tuple[int, Path]]:
    found = []
    if names is None:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
    for name in names:
        match = _SEGMENT.match(name)
        if match:
            found.append((int(match[1]), directory / name))
    return sorted(found)


def _drop_old_segments(directory: Path, keep: int) -> None:
    for _, path in _segments(directory)[:-keep] if keep else _segments(directory):
        path.unlink(missing_ok=True)
