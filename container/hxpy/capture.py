"""What user code prints during a batch: kept (capped) for the reply, or streamed as it comes.

One :class:`CappedOutput` captures a session's output for its whole life (a stream user
code keeps, a logging handler made in one batch, writes into later batches). Its
:attr:`~CappedOutput.stream` is what user code sees as ``sys.stdout`` and ``sys.stderr``: a
real :class:`io.TextIOWrapper` over a :class:`io.BufferedWriter` over the capture itself,
so a ``print`` costs what it costs on a terminal's stdout (encoding and buffering in C), and
``sys.stdout.buffer`` takes bytes (invalid UTF-8 is read with replacement characters). The
capture sees the bytes a buffer at a time, under the buffer's lock, so in order:

* by default it keeps them, capped, for the batch's reply;
* while a batch that asked for it runs, it sends them at once as OUTPUT frames of at most
  one chunk, from whichever thread filled the buffer; a pump thread flushes the buffer
  every :data:`MIN_GAP`, so a line printed alone (or a partial one) goes within that. A
  writer waits while the host has not read what it sent: a fast printer cannot fill the
  container's memory.

A buffer being handed over must not be cut by the soft timeout's exception (the buffer
would hand the same bytes over again): the server's timer asks :meth:`CappedOutput.busy`
and lets such a write finish first.
"""

from __future__ import annotations

import codecs
import io
import os
import threading
import time

from .logs import DEBUG, WARNING, own_log

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cold start's cost)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable

    Sender = Callable[[str], None]

__all__ = ["CHUNK", "MAX_DELAY", "MIN_GAP", "TRUNCATION_MARKER", "CappedOutput", "CappedText",
           "encodable", "utf8_pieces"]

TRUNCATION_MARKER = "\n[... output truncated by hxpy: {dropped} more characters not shown ...]\n"
MAX_DELAY = 0.2     # seconds printed text may wait before it is sent, at most
MIN_GAP = 0.02      # seconds between two flushes of the buffer by the pump
CHUNK = 64 * 1024   # bytes of the buffer, and UTF-8 bytes of one frame's text at most

_ERRORS = "hxpy-replacement"
_REPLACEMENT = "\ufffd".encode()


def _replace_unencodable(exc: UnicodeError) -> tuple[bytes, int]:
    """Lone surrogates printed become U+FFFD, one for each, as :func:`encodable` makes them
    (as bytes: the UTF-8 encoder takes only ASCII text from a handler)."""
    if isinstance(exc, UnicodeEncodeError):
        return _REPLACEMENT * (exc.end - exc.start), exc.end
    raise exc


codecs.register_error(_ERRORS, _replace_unencodable)


def encodable(text: str) -> str:
    """``text`` with lone surrogates (bytes decoded with ``surrogateescape``, or made by hand)
    replaced by U+FFFD, so UTF-8 can encode it; O(1) for ASCII."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", _ERRORS).decode("utf-8")  # each surrogate: one U+FFFD
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


class CappedText:
    """Text kept up to ``cap`` characters between two takes, the rest counted; several
    threads may keep and one take."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def keep(self, text: str, capped: bool = True) -> None:
        """Keep ``text``, or as much of it as the cap leaves room for (all of it when not
        ``capped``)."""
        with self._lock:
            room = self._cap - self._kept if capped else len(text)
            if room >= len(text):
                self._parts.append(text)
                self._kept += len(text)
            else:
                if room > 0:
                    self._parts.append(text[:room])
                    self._kept += room
                self._dropped += len(text) - max(room, 0)

    def take_kept(self) -> tuple[str, int]:
        """What was kept, and how many characters were dropped; nothing is kept afterwards."""
        with self._lock:
            if not self._parts and not self._dropped:
                return "", 0
            text, dropped = "".join(self._parts), self._dropped
            self._parts.clear()
            self._kept = self._dropped = 0
        return text, dropped


class CappedOutput(io.RawIOBase):
    """The bottom of :attr:`stream`: keeps the first ``cap`` characters written and counts
    the rest, or, between :meth:`start_stream` and :meth:`end_stream`, hands them to a
    sender.

    Past the cap a buffer costs its decoding only, so printing a gigabyte cannot exhaust
    memory. User code may print from any thread.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self._kept = CappedText(cap)  # written under the buffer's lock, taken by the server
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._sender: Sender | None = None  # streaming when set
        self._send_lock: threading.Lock | None = None
        self._chunk = CHUNK
        self._ending = False  # end_stream is flushing: the rest is kept uncapped
        self._streaming = threading.Event()  # the pump flushes while it is set
        self._pump: threading.Thread | None = None
        #: What user code writes to: ``sys.stdout`` and ``sys.stderr`` during a batch.
        self.stream = io.TextIOWrapper(io.BufferedWriter(self, CHUNK), encoding="utf-8",
                                       errors=_ERRORS, newline="\n")
        if hasattr(os, "register_at_fork"):  # a forked child has no pump: it keeps output
            os.register_at_fork(after_in_child=self._after_fork)

    @property
    def name(self) -> str:  # the buffer's and the stream's name, as a terminal's has one
        return "<hxpy output>"

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Take a buffer's bytes (called by the buffer, under its lock)."""
        size = memoryview(data).nbytes
        text = self._decoder.decode(data)
        sender = self._sender
        if sender is None:
            self._kept.keep(text, capped=not self._ending)
        else:
            self._send(sender, text)
        return size

    def take(self) -> tuple[str, bool]:
        """The kept text (with a truncation marker when some was dropped) and whether it was;
        what was printed is flushed first, and nothing is kept afterwards."""
        self.stream.flush()
        text, dropped = self._kept.take_kept()
        if dropped:
            return text + TRUNCATION_MARKER.format(dropped=dropped), True
        return text, False

    def busy(self, frame: FrameType | None) -> bool:
        """Whether ``frame`` (where a signal found the main thread) is in a hand-over of a
        buffer, which must not be cut."""
        while frame is not None:
            if frame.f_code is _WRITE_CODE:
                return True
            frame = frame.f_back
        return False

    # -- streaming ------------------------------------------------------------------------

    def start_stream(self, sender: Sender, send_lock: threading.Lock,
                     chunk: int = CHUNK) -> bool:
        """Hand what is printed from now on to ``sender``, in pieces of at most ``chunk``
        UTF-8 bytes, holding ``send_lock``; what was kept (printed between batches) goes
        first. False when the pump cannot start (user code used up the container's
        threads): the output is then kept for the reply, as without streaming."""
        if self._pump is None:
            pump = threading.Thread(target=self._pump_forever, name="hxpy-output",
                                    daemon=True)
            try:
                pump.start()
            except RuntimeError:
                own_log(WARNING, "no thread for streamed output; it comes with the reply")
                return False
            self._pump = pump
        kept, _ = self.take()
        self._chunk = max(chunk, 4)
        self._send_lock = send_lock
        if kept:
            self._send(sender, kept)
        self._sender = sender
        self._streaming.set()
        return True

    def end_stream(self) -> None:
        """Stop streaming: what is still buffered is sent now, but for its last chunk, which
        is kept for the reply (:meth:`take`); later writes are capped again. The caller must
        not be interruptible by the soft timeout (it sends).

        A frame the pump is sending is sent before this returns: a reply sent after this
        comes after every frame.
        """
        sender = self._sender
        assert sender is not None
        self._streaming.clear()
        self._sender = None
        self._ending = True
        try:  # into the kept text, after any frame in flight (the buffer's lock)
            self.stream.flush()
        finally:
            self._ending = False
        text, _ = self._kept.take_kept()  # uncapped while ending: nothing dropped
        pieces = utf8_pieces(text, self._chunk) if text else []
        self._send(sender, "".join(pieces[:-1]))
        if pieces:  # a reply stays small, under the host's cap of what it keeps
            self._kept.keep(pieces[-1], capped=False)

    # -- internals --------------------------------------------------------------------------

    def _send(self, sender: Sender, text: str) -> None:
        if not text:
            return
        assert self._send_lock is not None
        try:
            for piece in utf8_pieces(text, self._chunk):
                with self._send_lock:
                    sender(piece)
        except Exception:  # the host is gone (the process is ending): drop it
            own_log(DEBUG, "streamed output dropped", exc_info=True)

    def _pump_forever(self) -> None:
        while True:
            self._streaming.wait()
            time.sleep(MIN_GAP)
            if self._sender is not None:
                try:
                    self.stream.flush()
                except Exception:
                    own_log(DEBUG, "output not flushed", exc_info=True)

    def _after_fork(self) -> None:
        self._sender = self._send_lock = self._pump = None
        self._streaming = threading.Event()


_WRITE_CODE = CappedOutput.write.__code__
