"""What one run may do to the host, enforced on the host: the bytes it may add to the store,
the uploads it may hold open, the size of its logs; and the masking of secret values in what
the runtime keeps.

A hostile handler can send whatever its container can compute, so every bound is counted
here, on the host, as the data arrives; the container's own caps are a courtesy.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigurationError

__all__ = ["DEFAULT_LOG_CAP", "DEFAULT_OPEN_UPLOADS", "DEFAULT_STORE_QUOTA", "RunLimits",
           "env_seconds", "format_size", "masker", "parse_size"]

DEFAULT_STORE_QUOTA = 10 << 30  # bytes a run may add to the store
DEFAULT_LOG_CAP = 64 << 20  # bytes of a run's log kept whole (past it: its head and tail)
DEFAULT_OPEN_UPLOADS = 16  # uploads a run may hold open (begun, not yet logged)

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_FACTORS = {None: 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
            "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


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


def env_seconds(variable: str, default: float) -> float:
    """Seconds from the environment variable ``variable`` (``default`` when unset or empty).

    Raises:
        ConfigurationError: it is not a finite number of seconds over 0.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigurationError(f"{variable}={text!r}: give a number of seconds over 0")
    return seconds


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
        log_cap: bytes of a run's log kept whole; past them its first MiB (half of a small
            cap), a marker, and its last part (``log_cap=``; default 64 MiB;
            :mod:`.run_log`).
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
            limits = cls(limits.store_quota, parse_size("log_cap", log_cap, minimum=4096),
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
