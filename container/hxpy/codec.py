"""The one codec both sides share: Python values <-> msgpack bytes, no I/O.

Plain values (None, bool, int, float, str, bytes, list, dict with str keys) are msgpack's own
types. Everything else crosses as a msgpack *ext* value whose code comes from :class:`ExtCode`,
the single registry of ext codes (documented in ``docs/protocol.md`` and
``docs/marshalling.md``). Nothing is ever pickled: a value with no encoding raises
:class:`MarshalError` naming its type and where it sits.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

import msgpack

__all__ = [
    "ExtCode",
    "MarshalError",
    "decode",
    "encode",
    "ext_decoder",
    "ext_encoder",
    "locate_unmarshallable",
]


class MarshalError(TypeError):
    """A value cannot be marshalled; the message says what and where."""


class ExtCode(enum.IntEnum):
    """Msgpack ext type codes; never renumber one that has shipped."""

    MARKER = 1
    NA = 2
    REMOVE = 3
    REF = 4
    URI = 5
    NUMBER = 6
    DATE = 7
    TIME = 8
    DATETIME = 9
    COORD = 10
    XSTR = 11
    SYMBOL = 12
    GRID = 13
    NDARRAY = 14
    TUPLE = 15  # reserved: tuples are sent as lists, as Haystack has no tuple


# An encoder takes a value and returns the ext payload; a decoder takes the payload back.
Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]

_encoders: dict[type, tuple[ExtCode, Encoder]] = {}
_encoders_by_module: list[tuple[Callable[[Any], bool], ExtCode, Encoder]] = []
_decoders: dict[int, Decoder] = {}


def ext_encoder(cls: type, code: ExtCode) -> Callable[[Encoder], Encoder]:
    """Register ``fn`` as the ext encoder for exact type ``cls``."""

    def register(fn: Encoder) -> Encoder:
        _encoders[cls] = (code, fn)
        return fn

    return register


def ext_encoder_when(test: Callable[[Any], bool], code: ExtCode) -> Callable[[Encoder], Encoder]:
    """Register an encoder chosen by a predicate (for families such as numpy types)."""

    def register(fn: Encoder) -> Encoder:
        _encoders_by_module.append((test, code, fn))
        return fn

    return register


def ext_decoder(code: ExtCode) -> Callable[[Decoder], Decoder]:
    """Register ``fn`` as the decoder for ext ``code``."""

    def register(fn: Decoder) -> Decoder:
        _decoders[int(code)] = fn
        return fn

    return register


class _Unmarshallable(Exception):
    """Raised inside ``default`` to stop packing; carries the offending object."""

    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        self.obj = obj


def _default(obj: Any) -> Any:
    entry = _encoders.get(type(obj))
    if entry is None:
        for test, code, fn in _encoders_by_module:
            if test(obj):
                entry = (code, fn)
                break
    if entry is not None:
        code, fn = entry
        return msgpack.ExtType(int(code), fn(obj))
    if isinstance(obj, tuple):
        return list(obj)
    raise _Unmarshallable(obj)


def _ext_hook(code: int, data: bytes) -> Any:
    decoder = _decoders.get(code)
    if decoder is None:
        raise MarshalError(f"unknown ext type code {code}")
    return decoder(data)


def encode(obj: Any, where: str = "value") -> bytes:
    """Encode ``obj`` to msgpack bytes.

    Args:
        obj: the value.
        where: how to name ``obj`` in an error message, e.g. ``"x"`` for ``define('x')``.

    Raises:
        MarshalError: ``obj`` holds something with no encoding; the message names its type and
            its path inside ``obj``.
    """
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True, datetime=False)
    except MarshalError:
        raise
    except (_Unmarshallable, TypeError, ValueError, OverflowError) as exc:
        raise MarshalError(locate_unmarshallable(obj, where) or f"{where}: {exc}") from None


def decode(data: bytes | bytearray | memoryview, max_size: int | None = None) -> Any:
    """Decode msgpack bytes made by :func:`encode`.

    Raises:
        MarshalError: the bytes are not valid msgpack or hold an unknown ext code.
    """
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True,
                               use_list=True, timestamp=0)
    except MarshalError:
        raise
    except Exception as exc:  # msgpack raises several unrelated classes
        raise MarshalError(f"cannot decode message: {type(exc).__name__}: {exc}") from None


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _why_not(obj: Any) -> str | None:
    """Why ``obj`` itself (not its members) cannot be encoded, or None if it can."""
    if obj is None or isinstance(obj, (bool, float, str, bytes, bytearray)):
        return None
    if isinstance(obj, int):
        if _INT_MIN <= obj <= _INT_MAX:
            return None
        return "int does not fit in 64 bits"
    if isinstance(obj, (list, tuple, dict)):
        return None
    try:
        _default(obj)
    except _Unmarshallable:
        return f"{type(obj).__name__} is not marshallable"
    except Exception as exc:
        return f"{type(obj).__name__}: {exc}"
    return None


def locate_unmarshallable(obj: Any, where: str = "value") -> str | None:
    """The first thing inside ``obj`` that cannot be encoded, as ``"path: reason"``.

    Walks depth first; used only after a failed :func:`encode`, so the fast path never pays.
    """
    stack: list[tuple[Any, str]] = [(obj, where)]
    while stack:
        value, path = stack.pop()
        reason = _why_not(value)
        if reason is not None:
            return f"{path}: {reason}"
        if isinstance(value, dict):
            for key in reversed(list(value)):
                if not isinstance(key, str):
                    return f"{path}: dict key {key!r} is {type(key).__name__}, not str"
                stack.append((value[key], f"{path}[{key!r}]"))
        elif isinstance(value, (list, tuple)):
            for index in reversed(range(len(value))):
                stack.append((value[index], f"{path}[{index}]"))
    return None
