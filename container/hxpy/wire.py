"""Framing: a frame is a 4-byte big-endian length followed by that many bytes of msgpack.

Bytes in, bytes out, plus two tiny blocking helpers over a socket. The maximum frame size is
checked on both sides *before* anything is allocated for the body, so a peer cannot make us
reserve memory by announcing a huge length.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from . import codec

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameTooLarge",
    "HEADER",
    "PeerClosed",
    "check_size",
    "frame",
    "recv_exactly",
    "recv_frame",
    "recv_into_exactly",
    "recv_message",
    "send_message",
]

DEFAULT_MAX_FRAME = 1 << 30  # 1 GiB
HEADER = struct.Struct(">I")


class FrameTooLarge(ValueError):
    """A frame (to send or announced by the peer) is larger than the agreed maximum."""


class PeerClosed(ConnectionError):
    """The peer closed the connection (cleanly between frames, or in the middle of one)."""


def check_size(size: int, max_size: int, direction: str) -> None:
    """Raise :class:`FrameTooLarge` if ``size`` exceeds ``max_size``."""
    if size > max_size:
        raise FrameTooLarge(
            f"{direction} frame of {size} bytes exceeds the maximum frame size of {max_size} bytes"
        )


def frame(payload: bytes, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Prefix ``payload`` with its length; one buffer, so one ``sendall``."""
    check_size(len(payload), max_size, "outgoing")
    return HEADER.pack(len(payload)) + payload


def recv_exactly(sock: socket.socket, size: int) -> bytearray:
    """Read exactly ``size`` bytes into one buffer; :class:`PeerClosed` if the peer closes."""
    buf = bytearray(size)
    recv_into_exactly(sock, memoryview(buf), 0)
    return buf


def recv_into_exactly(sock: socket.socket, view: memoryview, got: int) -> None:
    """Fill ``view`` from ``sock``, its first ``got`` bytes being already there."""
    size = len(view)
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise PeerClosed(f"connection closed after {got} of {size} bytes")
        got += n


def recv_frame(sock: socket.socket, max_size: int = DEFAULT_MAX_FRAME) -> bytearray:
    """Read one frame body from ``sock``.

    Raises:
        PeerClosed: the peer closed the connection.
        FrameTooLarge: the announced length exceeds ``max_size``; nothing was allocated.
    """
    try:
        (size,) = HEADER.unpack(recv_exactly(sock, HEADER.size))
    except PeerClosed as exc:
        raise PeerClosed("connection closed") from exc
    check_size(size, max_size, "incoming")
    return recv_exactly(sock, size)


def send_message(sock: socket.socket, message: dict[str, Any],
                 max_size: int = DEFAULT_MAX_FRAME) -> None:
    """Encode ``message`` and send it as one frame."""
    sock.sendall(frame(codec.encode(message, where="message"), max_size))


def recv_message(sock: socket.socket, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any]:
    """Receive one frame and decode it to a message map.

    Raises:
        codec.MarshalError: the body is not a msgpack map with a ``type``.
    """
    message = codec.decode(recv_frame(sock, max_size))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise codec.MarshalError("a frame must hold a msgpack map with a 'type' string")
    return message
