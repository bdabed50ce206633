"""Message types and the handshake rules shared by the host and the server.

Every frame holds one msgpack map with a ``type``; ``docs/protocol.md`` gives each layout.
This module only names things and checks the hello, so both sides agree by construction.
"""

from __future__ import annotations

import struct

try:  # what hmac.compare_digest is, without hmac's import of hashlib and OpenSSL (3.6 MB of
    # a server's resident memory, measured, for one comparison at the handshake)
    from _operator import _compare_digest as compare_digest
except ImportError:  # another Python: the public name
    from hmac import compare_digest  # type: ignore[no-redef]

import msgpack

from . import PROTOCOL_VERSION

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "BATCH",
    "CALL",
    "CALL_ERROR",
    "CALL_RESULT",
    "ERROR",
    "HELLO",
    "OUTPUT",
    "PROTOCOL_VERSION",
    "REFUSED",
    "RESULT",
    "SECRETS",
    "WELCOME",
    "check_hello",
    "error_info",
    "pack_batch",
    "pack_define",
    "pack_eval",
    "pack_output",
    "pack_result",
]

# host -> server
HELLO = "hello"
BATCH = "batch"
SECRETS = "secrets"  # the session's secrets, once, right after the handshake
CALL_RESULT = "call_result"
CALL_ERROR = "call_error"
# server -> host
WELCOME = "welcome"
REFUSED = "refused"
RESULT = "result"
ERROR = "error"
CALL = "call"
OUTPUT = "output"  # text printed during a batch that asked for it (``stream``), while it runs

# ``kind`` of an ERROR reply
KIND_PYTHON = "python"      # user code raised
KIND_MARSHAL = "marshal"    # the value could not be encoded or decoded
KIND_TIMEOUT = "timeout"    # the soft timeout interrupted user code
KIND_PROTOCOL = "protocol"  # the request itself was malformed


def check_hello(message: Any, key: str) -> str | None:
    """Why ``message`` is not an acceptable hello for ``key``, or None when it is.

    The key is compared in constant time so a client cannot learn it byte by byte.
    """
    if not isinstance(message, dict) or message.get("type") != HELLO:
        return "the first message must be a hello"
    if message.get("version") != PROTOCOL_VERSION:
        return (f"protocol version {message.get('version')!r} is not supported; "
                f"this server speaks version {PROTOCOL_VERSION}")
    offered = message.get("key")
    if not isinstance(offered, str) or not compare_digest(offered.encode(), key.encode()):
        return "wrong session key"
    return None


def error_info(exc: BaseException, traceback_text: str) -> dict[str, str]:
    """The ``error`` member of an ERROR or CALL_ERROR message."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    return {"type": name, "message": str(exc), "traceback": traceback_text}


# The messages sent once per eval are spliced from constant pieces and values that are already
# encoded, rather than packed as a map each time: the round trip is mostly this overhead.
_BATCH_HEAD = b"\x84" + msgpack.packb("type") + msgpack.packb(BATCH) + msgpack.packb("id")
_STREAMED_BATCH_HEAD = b"\x85" + _BATCH_HEAD[1:]
_STREAM = msgpack.packb("stream") + b"\xc3"
_OUTPUT_HEAD = (b"\x83" + msgpack.packb("type") + msgpack.packb(OUTPUT)
                + msgpack.packb("batch"))
_TEXT = msgpack.packb("text")
_RESULT_HEAD = b"\x85" + msgpack.packb("type") + msgpack.packb(RESULT) + msgpack.packb("id")
_DEFINE_HEAD = b"\x93" + msgpack.packb("define")
_EVAL_HEAD = b"\x92" + msgpack.packb("eval")
_TIMEOUT = msgpack.packb("timeout")
_OPS = msgpack.packb("ops")
_OUTPUT = msgpack.packb("output")
_TRUNCATED = msgpack.packb("truncated")
_VALUE = msgpack.packb("value")


def pack_batch(batch_id: int, timeout: float | None, ops: list[bytes],
               stream: bool = False) -> bytes:
    """A BATCH message from ops that are already encoded (each one a packed list).

    Values are encoded once, when ``define`` is called, so errors surface there and the
    batch is only spliced together here. ``stream`` asks the server for OUTPUT messages while
    the batch runs; without it the message is byte for byte what it always was.
    """
    head, flag = (_STREAMED_BATCH_HEAD, _STREAM) if stream else (_BATCH_HEAD, b"")
    return b"".join((head, _pack_small(batch_id), _TIMEOUT, _pack_small(timeout), flag,
                     _OPS, _array_header(len(ops)), *ops))


def pack_output(batch_id: Any, text: str) -> bytes:
    """An OUTPUT message: ``text`` printed by batch ``batch_id`` (text UTF-8 can encode)."""
    return b"".join((_OUTPUT_HEAD, _pack_small(batch_id), _TEXT, msgpack.packb(text)))


def pack_define(name: str, encoded_value: bytes) -> bytes:
    """The op ``["define", name, value]`` around a value that is already encoded."""
    head = _define_heads.get(name)
    if head is None:
        head = _remember(_define_heads, name, _DEFINE_HEAD + msgpack.packb(name))
    return head + encoded_value


def pack_eval(source: str) -> bytes:
    """The op ``["eval", source]``."""
    op = _eval_ops.get(source)
    if op is None:
        op = _remember(_eval_ops, source, _EVAL_HEAD + msgpack.packb(source))
    return op


# Sessions define the same names and evaluate the same expressions over and over.
_define_heads: dict[str, bytes] = {}
_eval_ops: dict[str, bytes] = {}


def _remember(cache: dict[str, bytes], key: str, packed: bytes) -> bytes:
    if len(cache) >= 1024:
        cache.clear()
    cache[key] = packed
    return packed


def pack_result(batch_id: Any, output: str, truncated: bool, encoded_value: bytes) -> bytes:
    """A RESULT message around a value that is already encoded."""
    return b"".join((_RESULT_HEAD, _pack_small(batch_id), _OUTPUT,
                     msgpack.packb(output) if output else b"\xa0",
                     _TRUNCATED, b"\xc3" if truncated else b"\xc2", _VALUE, encoded_value))


_UINT32 = struct.Struct(">BI")
_FLOAT64 = struct.Struct(">Bd")


def _pack_small(value: Any) -> bytes:
    """msgpack of an id or a timeout, without building a Packer for it."""
    if value is None:
        return b"\xc0"
    if type(value) is int and 0 <= value < 1 << 32:
        return bytes((value,)) if value < 128 else _UINT32.pack(0xCE, value)
    if type(value) is float:
        return _FLOAT64.pack(0xCB, value)
    packed: bytes = msgpack.packb(value)
    return packed


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return struct.pack(">BH", 0xDC, count)
    return struct.pack(">BI", 0xDD, count)
