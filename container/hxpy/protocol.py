"""Message types and the handshake rules shared by the host and the server.

Every frame holds one msgpack map with a ``type``; ``docs/protocol.md`` gives each layout.
This module only names things and checks the hello, so both sides agree by construction.
"""

from __future__ import annotations

import hmac
from typing import Any

import msgpack

from . import PROTOCOL_VERSION

__all__ = [
    "BATCH",
    "CALL",
    "CALL_ERROR",
    "CALL_RESULT",
    "ERROR",
    "HELLO",
    "PROTOCOL_VERSION",
    "REFUSED",
    "RESULT",
    "WELCOME",
    "check_hello",
    "error_info",
    "pack_batch",
    "pack_define",
]

# host -> server
HELLO = "hello"
BATCH = "batch"
CALL_RESULT = "call_result"
CALL_ERROR = "call_error"
# server -> host
WELCOME = "welcome"
REFUSED = "refused"
RESULT = "result"
ERROR = "error"
CALL = "call"

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
    if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(), key.encode()):
        return "wrong session key"
    return None


def error_info(exc: BaseException, traceback_text: str) -> dict[str, str]:
    """The ``error`` member of an ERROR or CALL_ERROR message."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    return {"type": name, "message": str(exc), "traceback": traceback_text}


def pack_batch(batch_id: int, timeout: float | None, ops: list[bytes]) -> bytes:
    """A BATCH message from ops that are already encoded (each one a packed list).

    Values are encoded once, when ``define`` is called, so errors surface there and the
    batch is only spliced together here.
    """
    packer = msgpack.Packer(use_bin_type=True)
    head = (packer.pack_map_header(4) + packer.pack("type") + packer.pack(BATCH)
            + packer.pack("id") + packer.pack(batch_id) + packer.pack("timeout")
            + packer.pack(timeout) + packer.pack("ops") + packer.pack_array_header(len(ops)))
    return head + b"".join(ops)


def pack_define(name: str, encoded_value: bytes) -> bytes:
    """The op ``["define", name, value]`` around a value that is already encoded."""
    return b"\x93" + msgpack.packb("define") + msgpack.packb(name) + encoded_value
