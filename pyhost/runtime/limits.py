"""What one run may do to the host, enforced on the host: the bytes it may add to the store,
the uploads it may hold open, the size of its logs; and the masking of secret values in what
the runtime keeps.

A hostile handler can send whatever its container can compute, so every bound is counted
here, on the host, as the data arrives; the container's own caps are a courtesy.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigurationError

__all__ = ["DEFAULT_LOG_CAP", "DEFAULT_OPEN_UPLOADS", "DEFAULT_STORE_QUOTA", "CappedLog",
           "RunLimits", "cap_text", "format_size", "masker", "parse_size"]

DEFAULT_STORE_QUOTA = 10 << 30  # bytes a run may add to the store
DEFAULT_LOG_CAP = 1 << 20  # bytes of a run's logs kept: the first and the last half
DEFAULT_OPEN_UPLOADS = 16  # uploads a run may hold open (begun, not yet logged)

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_FACTORS = {None: 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
            "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
LOG_MARKER = "\n[... {dropped} bytes of logs dropped by pyhost (log_cap={cap}) ...]\n"


def parse_size(setting: str, value: Any, minimum: int = 1) -> int:
    """Bytes from ``"64Mi"``, ``"10Gi"``, ``"1M"`` or an int.

    Raises:
        ConfigurationError: not a size, or under ``minimum`` bytes (named as ``setting``).
    """
    match = None if isinstance(value, bool) else _SIZE.match(str(value).strip())
    if match is None:
        raise ConfigurationError(f"{setting}={value!r}: a size like '64Mi', '10Gi' or a "
                                 "number of bytes")
    size = int(float(match[1]) * _FACTORS[match[2]])
    if size < minimum:
        raise ConfigurationError(f"{setting}={value!r}: at least {format_size(minimum)}")
    return size


def format_size(size: int) -> str:
    """``size`` bytes the way a setting would say it (``64Mi``, ``10Gi``, ``1500``)."""
    for unit, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True)
class RunLimits:
    """The bounds of one run (job or serve), from its settings.

    Attributes:
        store_quota: bytes the run may add to the store, counted across its uploads, its
            tables and its logs (``store_quota=`` of ``fn.run``; default 10 GiB).
        log_cap: bytes of logs kept: the first and the last half, a marker between them
            (``log_cap=``; default 1 MiB). A serve run's log keeps its head and a rolling tail.
        open_uploads: uploads the run may hold open at once (``open_uploads=``; default 16).
    """

    store_quota: int = DEFAULT_STORE_QUOTA
    log_cap: int = DEFAULT_LOG_CAP
    open_uploads: int = DEFAULT_OPEN_UPLOADS

    @classmethod
    def from_settings(cls, store_quota: Any = None, log_cap: Any = None,
                      open_uploads: Any = None) -> RunLimits:
        """The limits ``fn.run(store_quota=, log_cap=, open_uploads=)`` asks for (None: the
        default).

        Raises:
            ConfigurationError: a malformed value, named with its setting.
        """
        limits = cls()
        if store_quota is not None:
            limits = cls(parse_size("store_quota", store_quota), limits.log_cap,
                         limits.open_uploads)
        if log_cap is not None:
            limits = cls(limits.store_quota, parse_size("log_cap", log_cap, minimum=1024),
                         limits.open_uploads)
        if open_uploads is not None:
            if isinstance(open_uploads, bool) or not isinstance(open_uploads, int) or \
                    open_uploads < 1:
                raise ConfigurationError(f"open_uploads={open_uploads!r}: an int >= 1")
            limits = cls(limits.store_quota, limits.log_cap, open_uploads)
        return limits

    def record(self) -> dict[str, Any]:
        """What a run's spec records."""
        return {"store_quota": format_size(self.store_quota),
                "log_cap": format_size(self.log_cap), "open_uploads": self.open_uploads}


def cap_text(text: str, cap: int) -> str:
    """``text`` if its UTF-8 takes at most ``cap`` bytes, else its first and last
    ``cap // 2`` bytes with a marker between them saying how much was dropped."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= cap:
        return text
    half = cap // 2
    head, tail = data[:half], data[len(data) - half:]
    marker = LOG_MARKER.format(dropped=len(data) - 2 * half, cap=format_size(cap))
    return (head.decode("utf-8", errors="ignore") + marker +
            tail.decode("utf-8", errors="ignore"))


class CappedLog:
    """A log file that grows to at most ``cap`` bytes plus a marker: its first ``cap // 2``
    bytes stay, then the last ``cap // 2`` bytes roll (kept in memory, the file's tail
    rewritten on each append past the head). Thread-safe.
    """

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self._cap_text = format_size(cap)
        self._half = cap // 2
        self._head = 0  # bytes of the head written
        self._tail = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()
        path.touch()

    def append(self, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            room = self._half - self._head
            if room > 0:
                with open(self.path, "ab") as out:
                    out.write(data[:room])
                self._head += min(room, len(data))
                data = data[room:]
            if not data:
                return
            self._tail += data
            if len(self._tail) > self._half:
                excess = len(self._tail) - self._half
                del self._tail[:excess]
                self._dropped += excess
            marker = LOG_MARKER.format(dropped=self._dropped, cap=self._cap_text) \
                if self._dropped else ""
            with open(self.path, "r+b") as out:
                out.seek(self._head)
                out.truncate()
                out.write(marker.encode() + bytes(self._tail))

    def size(self) -> int:
        return os.path.getsize(self.path)


def masker(secrets: dict[str, str]) -> Callable[[Any], Any]:
    """A function that replaces each secret value by ``***`` in a text, and recursively in
    the keys and values of dicts, lists and tuples, and in bytes (other values pass
    unchanged)."""
    values = sorted((value for value in secrets.values() if value), key=len, reverse=True)

    def mask(value: Any) -> Any:
        if not values:
            return value
        if isinstance(value, str):
            for secret in values:
                value = value.replace(secret, "***")
            return value
        if isinstance(value, (bytes, bytearray)):
            for secret in values:
                value = value.replace(secret.encode(), b"***")
            return bytes(value)
        if isinstance(value, dict):
            return {mask(key): mask(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(mask(item) for item in value)
        return value

    return mask
