"""What user code prints during a batch: kept (capped) for the reply, or streamed as it comes.

One :class:`CappedOutput` is a session's ``sys.stdout`` and ``sys.stderr`` for its whole life
(a stream user code keeps, a logging handler made in one batch, writes into later batches).
By default it keeps what is printed, capped, for the batch's reply. While a batch that asked
for it runs, it is in streaming mode instead: what is printed waits in a backlog that a
flusher thread hands to a sender, one OUTPUT frame at a time:

* at a line's end (or ``flush()``) when lines come slowly, but at most one frame per
  :data:`MIN_GAP`, so a fast printer's lines are joined into few frames;
* when :data:`CHUNK` characters are waiting, at once;
* a partial line at the latest :data:`MAX_DELAY` after it was written.

While user code runs only the flusher thread sends, never a thread that prints, so the
soft timeout's signal (which interrupts the main thread) cannot cut a frame in half; at the
end, :meth:`CappedOutput.end_stream` sends what is left beyond one chunk, from a thread no
longer in user code. Writers wait while :data:`BACKLOG` characters are unsent, so a fast
printer cannot fill the container's memory.

A write takes no lock (a lock costs more than the rest of a write, and print() writes twice
per line): writers only append to a deque, which the GIL keeps whole; only the flusher takes
from it while streaming, holding the send lock, which :meth:`CappedOutput.end_stream` takes
too. The counters that time the frames may miss a racing write's size; nothing is lost.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from typing import Callable

__all__ = ["BACKLOG", "CHUNK", "MAX_DELAY", "MIN_GAP", "TRUNCATION_MARKER", "CappedOutput",
           "configure_logging", "encodable", "utf8_pieces"]

log = logging.getLogger("hxpy")

TRUNCATION_MARKER = "\n[... output truncated by hxpy: {dropped} more characters not shown ...]\n"
MAX_DELAY = 0.2     # seconds a partial line may wait
MIN_GAP = 0.02      # seconds between two frames when lines come fast
CHUNK = 64 * 1024   # characters (and UTF-8 bytes) of one frame's text, at most
BACKLOG = 1 << 20   # unsent characters before a writer waits for the flusher

_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with lone surrogates (bytes decoded with ``surrogateescape``, or made by hand)
    replaced by U+FFFD, so UTF-8 can encode it; O(1) for ASCII."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def utf8_pieces(text: str, limit: int) -> list[str]:
    """``text`` (encodable) cut into pieces of at most ``limit`` UTF-8 bytes, between
    characters."""
    if len(text) <= limit and (text.isascii() or len(text.encode("utf-8")) <= limit):
        return [text]
    data = text.encode("utf-8")
    pieces = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


Sender = Callable[[str], None]


class CappedOutput(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and counts the rest, or, between
    :meth:`start_stream` and :meth:`end_stream`, hands what is written to a sender.

    Past the cap each write costs O(1), so printing a gigabyte cannot exhaust memory. User
    code may print from any thread.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self._cap = cap
        # Capped mode: the kept text. Streaming mode: the unsent text, the first part read
        # from ``_offset`` on (a large write is sent a chunk at a time, not copied each time).
        self._parts: deque[str] = deque()
        self._kept = 0
        self._dropped = 0
        self._sender: Sender | None = None  # streaming when set
        self._send_lock: threading.Lock | None = None
        self._chunk = CHUNK
        self._offset = 0
        self._written = 0      # characters written while streaming (by writers)
        self._taken = 0        # of which sent (by the flusher)
        self._full_at = CHUNK  # _written when a chunk waits: _taken + _chunk
        self._line = False     # a line ended (or flush()) since the last frame
        self._since = 0.0      # when the oldest unsent text was written
        self._sent_at = 0.0    # when the last frame was taken
        self._due = 0.0        # nonzero while the flusher sleeps: wake it on news
        self._news = threading.Event()    # wakes the flusher
        self._drained = threading.Event()  # wakes writers waiting for a full backlog
        self._flusher: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):  # a forked child has no flusher: it keeps output
            os.register_at_fork(after_in_child=self._after_fork)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if type(text) is not str and not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        size = len(text)
        if not size:
            return 0
        if self._sender is None:
            kept = self._kept
            if kept + size <= self._cap:
                self._parts.append(text)
                self._kept = kept + size
            elif kept >= self._cap:  # past the cap: O(1)
                self._dropped += size
            else:
                self._keep_some(text)
            return size
        parts = self._parts
        news = not parts
        if news:
            self._since = time.monotonic()
        parts.append(text)
        written = self._written = self._written + size
        if not self._line and "\n" in text:
            self._line = news = True
        if written >= self._full_at:  # a chunk waits
            news = True
            if written - self._taken >= BACKLOG:
                self._wait_for_room()
        if news and self._due:
            self._news.set()
        return size

    def flush(self) -> None:
        """Streaming: send what is waiting as if a line had ended."""
        if self._sender is not None and self._parts:
            self._line = True
            if self._due:
                self._news.set()

    def take(self) -> tuple[str, bool]:
        """The kept text (with a truncation marker when some was dropped) and whether it was;
        the stream is empty again afterwards."""
        if not self._parts and not self._dropped:  # the common case: nothing was printed
            return "", False
        text = encodable(self._pop(len(self._parts)))
        dropped = self._dropped
        self._kept = self._dropped = 0
        if dropped:
            return text + TRUNCATION_MARKER.format(dropped=dropped), True
        return text, False

    # -- streaming ------------------------------------------------------------------------

    def start_stream(self, sender: Sender, send_lock: threading.Lock,
                     chunk: int = CHUNK) -> bool:
        """Hand what is written from now on to ``sender``, in pieces of at most ``chunk``
        UTF-8 bytes, from the flusher thread holding ``send_lock``; what was kept (printed
        between batches) goes first. False when the flusher cannot start (user code used up
        the container's threads): the output is then kept for the reply, as without
        streaming."""
        if self._flusher is None:
            flusher = threading.Thread(target=self._flush_forever, name="hxpy-output",
                                       daemon=True)
            try:
                flusher.start()
            except RuntimeError:
                log.warning("no thread for streamed output; it comes with the reply")
                return False
            self._flusher = flusher
        if self._dropped:
            self._parts.append(TRUNCATION_MARKER.format(dropped=self._dropped))
        self._written = sum(map(len, list(self._parts)))
        self._taken = self._offset = self._kept = self._dropped = 0
        self._chunk = max(chunk, 4)
        self._full_at = self._chunk
        self._line = bool(self._parts)
        self._since = time.monotonic()
        self._sent_at = 0.0
        self._send_lock = send_lock
        self._sender = sender
        self._news.set()
        return True

    def end_stream(self) -> None:
        """Stop streaming: what was not handed to the sender yet is sent now, but for its
        last chunk, which is kept for the reply (:meth:`take`); later writes are capped
        again. The caller must not be interruptible by the soft timeout (it sends).

        Waits for a frame the flusher is sending: a reply sent after this comes after every
        frame.
        """
        sender, send_lock = self._sender, self._send_lock
        assert sender is not None and send_lock is not None
        with send_lock:
            self._sender = self._send_lock = None
            try:  # a reply stays small, under the host's cap of what it keeps
                while self._parts and self._written - self._taken > self._chunk:
                    self._send_chunk(sender)
            except Exception:
                log.debug("streamed output dropped", exc_info=True)
        parts = self._parts
        if self._offset and parts:
            parts[0] = parts[0][self._offset:]
        self._offset = 0
        self._kept = max(self._written - self._taken, 0)
        self._drained.set()

    # -- internals --------------------------------------------------------------------------

    def _keep_some(self, text: str) -> None:
        room = self._cap - self._kept
        if room <= 0:
            self._dropped += len(text)
            return
        self._parts.append(text[:room])
        self._kept += room
        self._dropped += len(text) - room

    def _pop(self, count: int) -> str:
        """The first ``count`` parts, joined; writes racing this stay behind them."""
        popleft = self._parts.popleft
        return "".join([popleft() for _ in range(count)])

    def _wait_for_room(self) -> None:
        """Wait (interruptibly: a soft timeout ends it) until the flusher took some text, or
        streaming ended."""
        sender = self._sender
        while self._written - self._taken >= BACKLOG and self._sender is sender:
            self._drained.clear()
            self._news.set()
            self._drained.wait(0.05)  # the timeout covers a wake-up lost to a race

    def _due_at(self) -> float:
        """When the waiting text should be sent (inf: nothing waits)."""
        if not self._parts or self._sender is None:
            return float("inf")
        if self._written >= self._full_at:
            return 0.0
        if self._line:
            return self._sent_at + MIN_GAP
        return max(self._since + MAX_DELAY, self._sent_at + MIN_GAP)

    def _take_unsent(self, limit: int) -> str:
        """Up to ``limit`` characters of the unsent text, oldest first (the flusher only)."""
        parts = self._parts
        head = parts[0]
        if self._offset or len(head) > limit:  # a large write: the next slice of it
            piece = head[self._offset:self._offset + limit]
            self._offset += len(piece)
            if self._offset >= len(head):
                parts.popleft()
                self._offset = 0
            self._took(len(piece))
            return piece
        # Whole writes: as many as there are (but a few) when they fit, else one by one.
        count = len(parts)
        if self._written - self._taken <= limit and count > 1:
            text = self._pop(count)
        else:
            pieces = []
            need = limit
            popleft = parts.popleft
            while parts and len(parts[0]) <= need:
                piece = popleft()
                pieces.append(piece)
                need -= len(piece)
            text = "".join(pieces)
        self._took(len(text))
        return text

    def _took(self, size: int) -> None:
        self._taken += size
        self._full_at = self._taken + self._chunk

    def _sleep_until_due(self) -> None:
        """Return when the waiting text is due (see the module docstring)."""
        while True:
            # Announce the sleep before looking, so a write after the look wakes it.
            self._due = 1.0
            self._news.clear()
            now = time.monotonic()
            due = self._due_at()
            if due <= now:
                self._due = 0.0
                return
            self._due = due
            self._news.wait(None if due == float("inf") else due - now)

    def _flush_forever(self) -> None:
        while True:
            self._sleep_until_due()
            sender, send_lock = self._sender, self._send_lock
            if sender is None or send_lock is None:
                continue
            with send_lock:
                if self._sender is not sender:  # the batch ended meanwhile
                    continue
                try:
                    self._send_chunk(sender)
                except Exception:  # the host is gone (the process is ending): drop it
                    log.debug("streamed output dropped", exc_info=True)

    def _send_chunk(self, sender: Sender) -> None:
        text = self._take_unsent(self._chunk)
        self._sent_at = self._since = time.monotonic()
        self._line = bool(self._parts)  # the rest of a large write: soon
        self._drained.set()
        for piece in utf8_pieces(encodable(text), self._chunk):
            sender(piece)

    def _after_fork(self) -> None:
        self._sender = self._send_lock = self._flusher = None
        self._news = threading.Event()
        self._drained = threading.Event()
        self._due = 0.0


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: the batch's capture while user code
    runs, the container's stderr otherwise."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(own_log: logging.Logger, level: str) -> None:
    """The server's own log (``own_log``) goes to the container's stderr, at ``level``; what
    user code logs (the root logger, Python's default WARNING) goes where its prints go:
    into the batch's output, streamed or returned with the reply."""
    own = logging.StreamHandler(sys.__stderr__)
    own.setFormatter(logging.Formatter("hxpy %(levelname)s %(message)s"))
    own_log.addHandler(own)
    own_log.setLevel(level)
    own_log.propagate = False
    logging.basicConfig(level=logging.WARNING, stream=_CurrentStderr())  # type: ignore[arg-type]
