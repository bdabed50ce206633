"""The I/O-free half of a session: encoding ops and reading replies.

Both the blocking :class:`~pyhost.session.Session` and the asyncio
:class:`~pyhost.async_session.AsyncSession` drive their own I/O and ask this module what to
send and what a reply means, so they cannot drift apart.
"""

from __future__ import annotations

import keyword
import logging
from typing import Any, Callable

from hxpy import codec, protocol

from .errors import (
    MarshalError,
    ProtocolError,
    PyHostError,
    PythonError,
    SessionDied,
    SessionTimeout,
)
from .launcher import ExitStatus

__all__ = [
    "Encoded",
    "call_reply",
    "decode_message",
    "died_error",
    "encode_define",
    "encode_eval",
    "encode_exec",
    "hard_timeout_error",
    "remote_error",
]

log = logging.getLogger("pyhost")


Encoded = tuple[bytes, list[memoryview]]  # a msgpack body and its out-of-band buffers


def encode_define(name: str, value: Any) -> Encoded:
    """The encoded op ``define name = value``, its large arrays as out-of-band buffers (views
    of the caller's arrays: they are read when the batch is sent).

    Raises:
        ValueError: ``name`` is not a Python identifier.
        MarshalError: ``value`` cannot be marshalled (the message says what and where).
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"define(): {name!r} is not a valid Python variable name")
    try:
        encoded, buffers = codec.encode_parts(value, where=name)
    except codec.MarshalError as exc:
        raise MarshalError(f"define({name!r}): {exc}") from None
    return protocol.pack_define(name, encoded), buffers


def encode_exec(code: str) -> bytes:
    """The encoded op ``exec code``."""
    if not isinstance(code, str):
        raise TypeError(f"exec() takes source code as str, not {type(code).__name__}")
    return codec.encode(["exec", code])


def encode_eval(expr: str) -> bytes:
    """The encoded op ``eval expr``."""
    if not isinstance(expr, str):
        raise TypeError(f"eval() takes an expression as str, not {type(expr).__name__}")
    return protocol.pack_eval(expr)


def decode_message(body: bytes | bytearray | memoryview, buffers: list[memoryview],
                   session_id: str, during: str) -> dict[str, Any]:
    """A received message (a frame body and its out-of-band buffers) as a map.

    Raises:
        ProtocolError: the body is not a msgpack map.
    """
    try:
        message = codec.decode(body, buffers)
    except codec.MarshalError as exc:
        raise ProtocolError(f"session {session_id}: unreadable frame during {during}: "
                            f"{exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"session {session_id}: a frame must hold a map, got "
                            f"{type(message).__name__}")
    return message


def remote_error(message: dict[str, Any], session_id: str,
                 timeout: float | None) -> PyHostError:
    """The error an ERROR reply means. A ``ProtocolError`` means the session must end."""
    error = message.get("error") or {}
    kind = message.get("kind")
    if kind == protocol.KIND_TIMEOUT:
        log.warning("session %s: soft timeout after %s s", session_id, timeout)
        return SessionTimeout(
            f"session {session_id}: the batch ran past its {timeout} s timeout; user code was "
            "interrupted (soft timeout) and the namespace is kept", kind="soft", seconds=timeout)
    if kind == protocol.KIND_MARSHAL:
        return MarshalError(f"session {session_id}: {error.get('message')}")
    if kind == protocol.KIND_PROTOCOL:
        return ProtocolError(f"session {session_id}: the server rejected a message: "
                             f"{error.get('type')}: {error.get('message')}")
    return PythonError(str(error.get("type")), str(error.get("message")),
                       str(error.get("traceback") or ""), message.get("output") or "")


def call_reply(handlers: dict[str, Callable[..., Any]], message: dict[str, Any],
               session_id: str) -> Encoded:
    """Run the host handler a CALL asks for; the encoded CALL_RESULT or CALL_ERROR."""
    method = message.get("method")
    handler = handlers.get(method) if isinstance(method, str) else None
    try:
        if handler is None:
            raise LookupError(f"the host has no handler for {method!r}")
        value = handler(*(message.get("args") or ()), **(message.get("kwargs") or {}))
        return codec.encode_parts({"type": protocol.CALL_RESULT, "id": message.get("id"),
                                   "value": value}, where=f"{method} result")
    except Exception as exc:
        log.warning("session %s: host call %r failed: %s", session_id, method, exc)
        return codec.encode({"type": protocol.CALL_ERROR, "id": message.get("id"),
                             "error": protocol.error_info(exc, "")}), []


def hard_timeout_error(session_id: str, timeout: float | None, grace: float) -> SessionTimeout:
    return SessionTimeout(
        f"session {session_id}: the batch ran past its {timeout} s timeout and did not yield "
        f"within {grace} s; the container was killed (hard timeout)",
        kind="hard", seconds=timeout)


def died_error(session_id: str, during: str, status: ExitStatus | None) -> SessionDied:
    if status is None:
        log.error("session %s: connection lost during %s", session_id, during)
        return SessionDied(f"session {session_id}: the connection to the server broke during "
                           f"{during}")
    log.error("session %s: container died during %s: %s", session_id, during,
              status.describe().splitlines()[0])
    return SessionDied(f"session {session_id}: the container died during {during}: "
                       f"{status.describe()}", status.exit_code, status.oom_killed)
