"""Capped capture of what user code prints during a batch."""

from __future__ import annotations

import io

__all__ = ["TRUNCATION_MARKER", "CappedOutput"]

TRUNCATION_MARKER = "\n[... output truncated by hxpy: {dropped} more characters not shown ...]\n"


class CappedOutput(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and counts the rest.

    Past the cap each write costs O(1), so printing a gigabyte cannot exhaust memory.
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self._cap = cap
        self._parts: list[str] = []
        self._kept = 0
        self._dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        room = self._cap - self._kept
        if room <= 0:
            self._dropped += len(text)
        elif len(text) <= room:
            self._parts.append(text)
            self._kept += len(text)
        else:
            self._parts.append(text[:room])
            self._kept += room
            self._dropped += len(text) - room
        return len(text)

    def take(self) -> tuple[str, bool]:
        """The kept text (with a truncation marker when some was dropped) and whether it was;
        the stream is empty again afterwards."""
        if not self._kept and not self._dropped:  # the common case: nothing was printed
            return "", False
        text = "".join(self._parts)
        dropped = self._dropped
        self._parts.clear()
        self._kept = self._dropped = 0
        if dropped:
            return text + TRUNCATION_MARKER.format(dropped=dropped), True
        return text, False
