"""The one codec both sides share: Python values <-> msgpack bytes, no I/O.

Plain values (None, bool, int, float, str, bytes, list, dict with str keys) are msgpack's own
types. Everything else crosses as a msgpack *ext* value whose code comes from :class:`ExtCode`,
the single registry of ext codes (documented in ``docs/protocol.md`` and
``docs/marshalling.md``). Nothing is ever pickled: a value with no encoding raises
:class:`MarshalError` naming its type and where it sits.

Encoders are found, for a value of type ``T``, in this order:

1. ``ext_encoder(T, code)``: an exact-type registration;
2. ``ext_encoder_when(test, code)``: predicates over the value, in registration order;
3. ``family_encoder(test)``: predicates over the *type*, whose answer is cached per type. They
   cover numpy and pandas (found through ``sys.modules``, so neither is ever imported here);
4. the encoder of the nearest registered base class, else msgpack's own type for a subclass
   of one (an ``OrderedDict`` packs as a dict, an ``IntEnum`` as an int, a tuple as a list).

The Haystack table itself is registered by :mod:`hxpy.exttypes`, which this module imports
the first time a value needs it (an ext value to encode or decode, a dict key that is not a
plain str, an error to locate), so ``import hxpy.codec`` is all a user of the codec needs,
and a server whose values are all plain never loads it (a cold start waits for each import).
"""

from __future__ import annotations

import threading

import msgpack

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any, Callable, Optional, Union

    from .extcodes import ExtCode

    # An encoder takes a value and returns the ext payload; a decoder takes the payload back.
    Encoder = Callable[[Any], bytes]
    Decoder = Callable[[bytes], Any]
    # A converter returns something msgpack packs natively (often a msgpack.ExtType).
    Converter = Callable[[Any], Any]
    # An inspector says why a value cannot be encoded, or which members to look at next.
    Members = Iterable[tuple[Any, str]]
    Inspector = Callable[[Any, str], tuple[Optional[str], Optional[Members]]]

__all__ = [
    "ExtCode",
    "MAX_EXT_DEPTH",
    "MarshalError",
    "Unmarshallable",
    "decode",
    "encode",
    "encode_parts",
    "ext_decoder",
    "ext_encoder",
    "ext_encoder_when",
    "ext_inspector",
    "family_encoder",
    "locate_unmarshallable",
    "out_of_band",
    "pack_payload",
    "take_buffer",
    "unpack_payload",
]


class MarshalError(TypeError):
    """A value cannot be marshalled; the message says what and where."""


class Unmarshallable(Exception):
    """Raised by an encoder that refuses a value.

    Attributes:
        obj: the refused value.
        reason: the text after ``"<path>: "`` in the final :class:`MarshalError`; by default
            ``"<type> is not marshallable"``.
    """

    def __init__(self, obj: Any, reason: Optional[str] = None) -> None:
        self.obj = obj
        self.reason = reason or f"{type(obj).__name__} is not marshallable"
        super().__init__(self.reason)


_encoders: dict[type, tuple[ExtCode, Encoder]] = {}
_encoders_by_module: list[tuple[Callable[[Any], bool], ExtCode, Encoder]] = []
_families: list[tuple[Callable[[type], bool], Converter]] = []
_family_cache: dict[type, Converter] = {}
_decoders: dict[int, Decoder] = {}
_inspectors: list[tuple[Callable[[type], bool], Inspector]] = []

_table_loaded = False  # hxpy.exttypes has registered the Haystack table


def _load_table() -> None:
    """Import :mod:`hxpy.exttypes`, which registers the Haystack table. Every thread that
    finds the table missing imports it: the import lock makes a second one wait until the
    table is whole."""
    global _table_loaded
    from . import exttypes  # noqa: F401  (registers, into the tables above)

    _table_loaded = True


# msgpack's own nesting limit; the key walk and the error search stop there too (cycles).
_MAX_DEPTH = 511


def __getattr__(name: str) -> Any:
    # ExtCode, the registry of ext codes, lives in hxpy.extcodes and is imported when first
    # asked for here: enum's import is a cold start's cost, and plain values need no code.
    if name == "ExtCode":
        from .extcodes import ExtCode

        return ExtCode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ext_encoder(cls: type, code: ExtCode) -> Callable[[Encoder], Encoder]:
    """Register ``fn`` as the ext encoder for type ``cls`` (and its otherwise unclaimed
    subclasses)."""

    def register(fn: Encoder) -> Encoder:
        _encoders[cls] = (code, fn)
        _family_cache.clear()
        return fn

    return register


def ext_encoder_when(test: Callable[[Any], bool], code: ExtCode) -> Callable[[Encoder], Encoder]:
    """Register an encoder chosen by a predicate over the value."""

    def register(fn: Encoder) -> Encoder:
        _encoders_by_module.append((test, code, fn))
        return fn

    return register


def family_encoder(test: Callable[[type], bool]) -> Callable[[Converter], Converter]:
    """Register ``fn`` for every type ``T`` with ``test(T)``; the match is cached per type.

    ``fn(value)`` returns what msgpack packs natively: a plain value or a ``msgpack.ExtType``.
    It may raise :class:`Unmarshallable` to refuse the value with a reason.
    """

    def register(fn: Converter) -> Converter:
        _families.append((test, fn))
        _family_cache.clear()
        return fn

    return register


def ext_decoder(code: ExtCode) -> Callable[[Decoder], Decoder]:
    """Register ``fn`` as the decoder for ext ``code``."""

    def register(fn: Decoder) -> Decoder:
        _decoders[int(code)] = fn
        return fn

    return register


def ext_inspector(test: Callable[[type], bool]) -> Callable[[Inspector], Inspector]:
    """Register how :func:`locate_unmarshallable` looks inside a container type.

    ``fn(value, path)`` returns ``(reason, members)``: a reason when the value itself cannot be
    encoded, else the ``(member, member_path)`` pairs to search next (or None for a leaf). A
    member may be an :class:`Unmarshallable` instance, which reports its reason at its path.
    """

    def register(fn: Inspector) -> Inspector:
        _inspectors.append((test, fn))
        return fn

    return register


# Subclasses of msgpack's own types, packed as their base type (strict_types stops msgpack
# from doing it silently, so that a Uri, a str subclass, reaches its ext encoder).
_NATIVE_BASES: tuple[tuple[type, Converter], ...] = (
    (dict, dict), (list, list), (tuple, list), (str, str.__str__), (bytes, bytes),
    (int, int), (float, float),
)


def _inherited(cls: type) -> Optional[Converter]:
    for base in cls.__mro__[1:]:
        entry = _encoders.get(base)
        if entry is not None:
            code, fn = int(entry[0]), entry[1]
            return lambda obj: msgpack.ExtType(code, fn(obj))
    for base, converter in _NATIVE_BASES:
        if issubclass(cls, base):
            return converter
    return None


def _family(cls: type) -> Optional[Converter]:
    converter = _family_cache.get(cls)
    if converter is None:
        for test, fn in _families:
            if test(cls):
                converter = fn
                break
        else:
            converter = _inherited(cls)
        if converter is not None:
            _family_cache[cls] = converter
    return converter


def _default(obj: Any) -> Any:
    if not _table_loaded:
        _load_table()
    cls = type(obj)
    entry = _encoders.get(cls)
    if entry is not None:
        return msgpack.ExtType(int(entry[0]), entry[1](obj))
    for test, code, fn in _encoders_by_module:
        if test(obj):
            return msgpack.ExtType(int(code), fn(obj))
    converter = _family(cls)
    if converter is None:
        raise Unmarshallable(obj)
    return converter(obj)


def _ext_hook(code: int, data: bytes) -> Any:
    decoder = _decoders.get(code)
    if decoder is None and not _table_loaded:
        _load_table()
        decoder = _decoders.get(code)
    if decoder is None:
        raise MarshalError(f"unknown ext type code {code}")
    # Counted here, where nesting happens, not around every unpack: a message with no ext
    # value (most of them) pays nothing for it.
    depth = _unpacking.depth
    if depth >= MAX_EXT_DEPTH:
        raise MarshalError(f"ext values nested more than {MAX_EXT_DEPTH} deep")
    _unpacking.depth = depth + 1
    try:
        return decoder(data)
    finally:
        _unpacking.depth = depth


class _BadKeys(Exception):
    """A dict with a key that is not a str (msgpack would pack it; Haystack forbids it)."""


_CONTAINERS = (dict, list, tuple)
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def _is_key(key_type: type) -> bool:
    # A str subclass with an ext encoder (Uri) would become an ext key, which msgpack maps
    # cannot take back.
    if not _table_loaded:
        _load_table()
    return issubclass(key_type, str) and not any(base in _encoders for base in key_type.__mro__)


def _check_keys(obj: Any) -> None:
    """Raise :class:`_BadKeys` if a dict inside ``obj`` (through dicts, lists, tuples) has a
    key that is not a str, or the nesting is deeper than msgpack allows (a cycle).

    The walk visits containers only; members are screened by type in C (``map(type, ...)``).
    """
    if not isinstance(obj, _CONTAINERS):
        return
    stack = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= _MAX_DEPTH:
            raise _BadKeys()
        if isinstance(value, dict):
            key_types = set(map(type, value))
            if key_types and not (key_types == {str} or all(map(_is_key, key_types))):
                raise _BadKeys()
            members: Iterable[Any] = value.values()
        else:
            members = value
        member_types = set(map(type, members)) - _PLAIN
        if any(issubclass(t, _CONTAINERS) and t is not msgpack.ExtType for t in member_types):
            depth += 1
            stack.extend((m, depth) for m in members if isinstance(m, _CONTAINERS))


def _packb(obj: Any) -> bytes:
    # One Packer per nesting level and thread (ext encoders pack their payloads while an outer
    # pack runs), made once: msgpack.packb would build a Packer on every call.
    depth = _packers.depth
    stack = _packers.stack
    if depth == len(stack):
        stack.append(msgpack.Packer(default=_default, use_bin_type=True, strict_types=True,
                                    datetime=False))
    _packers.depth = depth + 1
    try:
        packed: bytes = stack[depth].pack(obj)  # a Packer resets itself when pack() raises
    finally:
        _packers.depth = depth
    return packed


class _Packers(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.stack: list[msgpack.Packer] = []


_packers = _Packers()


def pack_payload(obj: Any) -> bytes:
    """Pack ``obj`` with the codec's hooks, for use inside an ext encoder.

    Errors are not translated here: the outer :func:`encode` turns them into a
    :class:`MarshalError` with a path.
    """
    _check_keys(obj)
    return _packb(obj)


def unpack_payload(data: Union[bytes, bytearray, memoryview]) -> Any:
    """Unpack msgpack made by :func:`pack_payload`, for use inside an ext decoder.

    Raises:
        MarshalError: ext values (grids in grids) are nested more than
            :data:`MAX_EXT_DEPTH` deep (counted by the ext hook).
    """
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True,
                           use_list=True, timestamp=0)


# Each ext value that holds codec values (a grid) is unpacked by a nested unpackb, which takes
# about 40 KiB of C stack: a few bytes per level, nested a few hundred deep, overflowed the
# stack and killed the process. Haystack data nests grids a few levels at most.
MAX_EXT_DEPTH = 32


class _Unpacking(threading.local):
    depth = 0


_unpacking = _Unpacking()


# Out-of-band buffers: raw array data at least this large travels beside the msgpack body (see
# hxpy.wire) instead of inside it, so neither side copies it.
OUT_OF_BAND_FROM = 64 * 1024

class _OutOfBand(threading.local):
    """Per thread: the buffers of the encode or decode running now (None: all in band)."""

    sink: Optional[list[memoryview]] = None
    buffers: Optional[Iterator[memoryview]] = None


_oob = _OutOfBand()
# Values that can hold no array, so they skip the out-of-band and key bookkeeping.
_SCALARS = frozenset({int, float, str, bool, type(None), bytes})
# One packer shared by every thread for those: packing a scalar is one C call that calls
# back into no Python code, so no other thread runs during it (it holds the GIL throughout).
_pack_scalar = msgpack.Packer(use_bin_type=True, strict_types=True, datetime=False).pack


def out_of_band(data: memoryview) -> bool:
    """Offer ``data`` (bytes, format ``B``) to go out of band, from inside an ext encoder.

    Returns True when it was taken: the payload must then say so, and its decoder gets the
    bytes back with :func:`take_buffer`. False means: put the bytes in the payload.
    """
    sink = _oob.sink
    if sink is None or data.nbytes < OUT_OF_BAND_FROM:
        return False
    sink.append(data)
    return True


def take_buffer(nbytes: int) -> memoryview:
    """The next out-of-band buffer of the message being decoded, which must be ``nbytes``
    long; for ext decoders whose payload says its data went out of band.

    Raises:
        ValueError: no buffer is left, or it has another length.
    """
    buffers = _oob.buffers
    buffer = next(buffers, None) if buffers is not None else None
    if buffer is None:
        raise ValueError("the value refers to an out-of-band buffer the message does not have")
    if buffer.nbytes != nbytes:
        raise ValueError(f"out-of-band buffer of {buffer.nbytes} bytes, expected {nbytes}")
    return buffer


def encode(obj: Any, where: str = "value") -> bytes:
    """Encode ``obj`` to msgpack bytes, everything in band.

    Args:
        obj: the value.
        where: how to name ``obj`` in an error message, e.g. ``"x"`` for ``define('x')``.

    Raises:
        MarshalError: ``obj`` holds something with no encoding; the message names its type and
            its path inside ``obj``.
    """
    return _encode(obj, where, None)


def encode_parts(obj: Any, where: str = "value") -> tuple[bytes, list[memoryview]]:
    """Encode ``obj`` with its large array data out of band.

    Returns:
        The msgpack body and the buffers it refers to, in order. The buffers are views of the
        caller's arrays, not copies: they must not change until they are sent.

    Raises:
        MarshalError: as :func:`encode`.
    """
    sink: list[memoryview] = []
    return _encode(obj, where, sink), sink


def _encode(obj: Any, where: str, sink: Optional[list[memoryview]]) -> bytes:
    if type(obj) in _SCALARS:
        try:
            return _pack_scalar(obj)
        except (OverflowError, UnicodeEncodeError):
            pass  # an int beyond 64 bits, a str with a lone surrogate: the general path says so
    outer = _oob.sink
    _oob.sink = sink
    try:
        _check_keys(obj)
        return _packb(obj)
    except MarshalError:
        raise
    except Exception as exc:  # msgpack, numpy and pandas raise several unrelated classes
        if isinstance(exc, Unmarshallable):
            fallback = exc.reason
        elif isinstance(exc, _BadKeys):
            fallback = "a dict key is not a str"
        else:
            fallback = f"{type(exc).__name__}: {exc}"
        _oob.sink = None
        try:
            located = locate_unmarshallable(obj, where)
        except Exception:  # the search is best effort; the first failure still gets reported
            located = None
        raise MarshalError(located or f"{where}: {fallback}") from None
    finally:
        _oob.sink = outer


def decode(data: bytes | bytearray | memoryview,
           buffers: Sequence[memoryview] = ()) -> Any:
    """Decode msgpack bytes made by :func:`encode` or :func:`encode_parts`.

    Args:
        data: the msgpack body.
        buffers: the out-of-band buffers sent with it, in order; all must be used.

    Raises:
        MarshalError: the bytes are not valid msgpack, hold an unknown ext code, or do not
            match the buffers.
    """
    outer = _oob.buffers
    if not buffers and outer is None:  # the common case: everything in band
        try:
            return unpack_payload(data)
        except MarshalError:
            raise
        except Exception as exc:
            raise MarshalError(f"cannot decode message: {type(exc).__name__}: {exc}") from None
    remaining = iter(buffers)
    _oob.buffers = remaining
    try:
        value = unpack_payload(data)
    except MarshalError:
        raise
    except Exception as exc:  # msgpack and the ext decoders raise several unrelated classes
        raise MarshalError(f"cannot decode message: {type(exc).__name__}: {exc}") from None
    finally:
        _oob.buffers = outer
    if next(remaining, None) is not None:
        raise MarshalError(f"cannot decode message: it came with {len(buffers)} out-of-band "
                           "buffers and uses fewer")
    return value


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _dict_members(value: dict[Any, Any], path: str) -> Iterator[tuple[Any, str]]:
    for key, member in value.items():
        yield member, f"{path}[{key!r}]"


def _inspect(obj: Any, path: str) -> tuple[Optional[str], Optional[Members]]:
    """Why ``obj`` itself cannot be encoded, and else which members to search."""
    if obj is None or isinstance(obj, (bool, float, str, bytes, bytearray, memoryview)):
        return None, None
    if isinstance(obj, int):
        if _INT_MIN <= obj <= _INT_MAX:
            return None, None
        return "int does not fit in 64 bits", None
    if isinstance(obj, Unmarshallable):
        return obj.reason, None
    if isinstance(obj, dict):
        for key in obj:
            if not (isinstance(key, str) and _is_key(type(key))):
                return f"dict key {key!r} is {type(key).__name__}, not str", None
        return None, _dict_members(obj, path)
    if isinstance(obj, (list, tuple)):
        return None, ((member, f"{path}[{index}]") for index, member in enumerate(obj))
    for test, inspector in _inspectors:
        if test(type(obj)):
            return inspector(obj, path)
    try:
        _default(obj)
    except Unmarshallable as exc:
        return exc.reason, None
    except Exception as exc:
        return f"{type(obj).__name__}: {exc}", None
    return None, None


def locate_unmarshallable(obj: Any, where: str = "value") -> str | None:
    """The first thing inside ``obj`` that cannot be encoded, as ``"path: reason"``.

    Walks depth first, into dicts, lists, tuples and the types with an :func:`ext_inspector`
    (grids, DataFrames, ...); used only after a failed :func:`encode`, so the fast path never
    pays for it.
    """
    if not _table_loaded:
        _load_table()
    reason, members = _inspect(obj, where)
    if reason is not None:
        return f"{where}: {reason}"
    stack: list[Iterator[tuple[Any, str]]] = [iter(members)] if members is not None else []
    while stack:
        for value, path in stack[-1]:
            reason, members = _inspect(value, path)
            if reason is not None:
                return f"{path}: {reason}"
            if members is not None:
                if len(stack) >= _MAX_DEPTH:
                    return (f"{path}: nested more than {_MAX_DEPTH} levels deep "
                            "(is there a cycle?)")
                stack.append(iter(members))
                break
        else:
            stack.pop()
    return None

