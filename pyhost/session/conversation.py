"""The I/O-free half of a session: what to send, and what a reply means.

:class:`Conversation` holds everything a session is that is not I/O: the buffered ops, the
init, the host handlers, the timeout, the counters and the last output; it encodes a batch
and reads the replies. The blocking :class:`~pyhost.session.blocking.Session` and the asyncio
:class:`~pyhost.session.aio.AsyncSession` derive from it and add only their I/O, so the two
cannot drift apart. A driver's round trip is only I/O: ``_begin`` gives the batch to send,
``_received`` says what each incoming message means (a call to answer, output to hand to
the eval's ``on_output``, or the reply), ``_finish`` turns the reply into a value or an error,
and ``_broken`` a failed connection into an error. (A generator of I/O steps read more
uniformly, but measured 3-5 us more host CPU per round trip over a real socket.)
"""

from __future__ import annotations

import keyword
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from hxpy import codec, protocol, wire

from ..errors import (
    MarshalError,
    ProtocolError,
    PyHostError,
    PythonError,
    SessionClosed,
    SessionDied,
    SessionTimeout,
)
from ..launchers.base import ExitStatus, Instance, Launcher
from .handshake import Opened
from .options import SessionOptions
from .output import OutputCallback, OutputListener

__all__ = ["IO_ERRORS", "NO_REPLY", "REPLY_PREFIXES", "TERMINATED", "Batch", "Conversation",
           "SessionStats", "call_reply", "encode_define", "encode_eval", "encode_exec",
           "remote_error", "terminated"]

log = logging.getLogger("pyhost")

Encoded = tuple[bytes, list[memoryview]]  # a msgpack body and its out-of-band buffers
HostHandler = Callable[..., Any]
InitFn = Callable[[Any], Any]
_C = TypeVar("_C", bound="Conversation")


@dataclass
class SessionStats:
    """Counters of one session, across restarts."""

    batches: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    last_latency: float = 0.0
    total_latency: float = 0.0
    restarts: int = 0
    host_calls: int = 0

    @property
    def mean_latency(self) -> float:
        return self.total_latency / self.batches if self.batches else 0.0


# What a transport raises when the connection fails; TimeoutError (an OSError) comes first.
IO_ERRORS = (TimeoutError, wire.FrameTooLarge, wire.PeerClosed, OSError)

# How the body of a reply to a batch begins, after its map header (the server writes "type"
# first): the only messages that may be larger than ``max_call_frame``.
REPLY_PREFIXES = tuple(bytes([0x80 | count]) + b"\xa4type" + codec.encode(kind)
                       for count in range(1, 16) for kind in (protocol.RESULT, protocol.ERROR))


NO_REPLY: dict[str, Any] = {}  # Batch.reply until the reply came (an empty map is a reply)


class Batch:
    """One batch on its way: what to send, its deadline, the listener to its output if it
    streams it, and the reply once it came."""

    __slots__ = ("id", "body", "buffers", "size", "started", "deadline", "reply", "listener")

    def __init__(self, batch_id: int, body: bytes, buffers: list[memoryview], size: int,
                 started: float, deadline: float | None,
                 listener: OutputListener | None = None) -> None:
        self.id = batch_id
        self.body = body
        self.buffers = buffers
        self.size = size
        self.started = started
        self.deadline = deadline
        self.reply = NO_REPLY
        self.listener = listener

    def wait(self) -> float | None:
        """Seconds left until the hard deadline (None: no deadline)."""
        deadline = self.deadline
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Pending(threading.local):
    """Ops and their out-of-band buffers waiting for the next eval, per thread: a define in
    one thread never rides on another thread's eval."""

    def __init__(self) -> None:
        self.ops: list[bytes] = []
        self.buffers: list[memoryview] = []


class Conversation:
    """What both sessions share; see the module docstring. Not made directly."""

    def __init__(self, launcher: Launcher, options: SessionOptions) -> None:
        self.id = secrets.token_hex(6)
        self.options = options
        self._launcher = launcher
        launcher.check(options.checked_spec)  # bad options fail here, not at eval
        self._timeout = options.timeout
        self._pending = _Pending()
        self._init_fn: InitFn | None = None
        self._handlers: dict[str, HostHandler] = {}
        self._instance: Instance | None = None
        self._key = ""
        self._transport: Any = None  # the driver's: a Transport or an AsyncTransport
        self._closed = False
        self._starts = 0
        self._batch_ids = 0
        self.stats = SessionStats()
        self.last_output = ""
        self.last_output_truncated = False
        self.server_info: dict[str, Any] = {}

    # -- chain ---------------------------------------------------------------------------

    def define(self: _C, name: str, value: Any) -> _C:
        """Bind ``name`` to ``value`` in the session namespace (sent with the next eval).

        Raises:
            ValueError: ``name`` is not a Python identifier.
            MarshalError: ``value`` cannot be marshalled, or is over ``max_frame``; nothing
                is sent.
        """
        self._check_open()
        op, buffers = encode_define(name, value)
        size = wire.message_size(op, buffers)
        if size > self.options.max_frame:
            raise MarshalError(f"define({name!r}): the value takes {size} bytes, over the "
                               f"maximum frame size of {self.options.max_frame} bytes; "
                               "nothing was sent")
        pending = self._pending
        pending.ops.append(op)
        pending.buffers.extend(buffers)
        return self

    def exec(self: _C, code: str) -> _C:
        """Run statements in the session namespace (sent with the next eval)."""
        self._check_open()
        self._pending.ops.append(encode_exec(code))
        return self

    def timeout(self: _C, seconds: float | None) -> _C:
        """Set how long each eval may run; None waits forever.

        Raises:
            ValueError: ``seconds`` is not positive.
        """
        if seconds is not None and (isinstance(seconds, bool) or
                                    not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ValueError(f"timeout must be positive or None, not {seconds!r}")
        self._timeout = seconds
        return self

    def init(self: _C, fn: InitFn) -> _C:
        """Call ``fn(session)`` each time a container starts for this session, before its
        first batch; what it defines and execs goes first.

        A session holds ONE init: calling ``init`` again replaces it. A persistent session
        handed an init with every message (``py(persist=k).init(fn)...``) thus runs the
        latest one once per container start, however many messages it served.
        """
        if not callable(fn):
            raise TypeError(f"init() takes a callable, not {type(fn).__name__}")
        self._init_fn = fn
        return self

    def handle(self: _C, method: str, fn: HostHandler) -> _C:
        """Answer ``hxpy.server.call_host(method, ...)`` from the container with ``fn``."""
        self._handlers[method] = fn
        return self

    # -- state ---------------------------------------------------------------------------

    @property
    def container_id(self) -> str | None:
        """The id of the running container (or server), once started."""
        return self._instance.id if self._instance else None

    @property
    def ports(self) -> dict[int, tuple[str, int]]:
        """Container port -> ``(host, port)`` where this process reaches it, for the
        ``ports`` option's ports; empty until the server runs."""
        instance = self._instance
        return dict(instance.ports) if instance is not None else {}

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._instance else "not started")
        return f"<{type(self).__name__} {self.id} {state}>"

    # -- for the drivers -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session {self.id} is closed")

    def _take_pending(self) -> tuple[list[bytes], list[memoryview]]:
        pending = self._pending
        ops, buffers = pending.ops, pending.buffers
        if ops:
            pending.ops, pending.buffers = [], []
            return ops, buffers
        return [], []

    def _started(self, opened: Opened) -> tuple[list[bytes], list[memoryview]]:
        """Take in a new server; run init; the ops init buffered (they go first)."""
        restarting = self._starts > 0
        self._starts += 1
        self._instance = opened.instance
        self._key = opened.key  # never sent anywhere again; tests check it leaks nowhere
        self.server_info = opened.server_info
        if restarting:
            self.stats.restarts += 1
            log.warning("session %s: restarted (restart %d)", self.id, self.stats.restarts)
        if self._init_fn is None:
            return [], []
        saved = self._take_pending()
        self._init_fn(self)
        init = self._take_pending()
        self._pending.ops, self._pending.buffers = saved
        return init

    def _begin(self, ops: list[bytes], buffers: list[memoryview],
               on_output: OutputCallback | None = None) -> Batch:
        """The batch for ``ops``: encoded, checked, its deadline set; with ``on_output``, it
        asks the server to stream what user code prints.

        Raises:
            MarshalError: the batch is over ``max_frame`` (nothing was sent).
        """
        self._batch_ids += 1
        batch_id = self._batch_ids
        body = protocol.pack_batch(batch_id, self._timeout, ops, on_output is not None)
        size = wire.message_size(body, buffers)
        if size > self.options.max_frame:
            raise MarshalError(f"the batch is {size} bytes, over the maximum frame size of "
                               f"{self.options.max_frame} bytes; nothing was sent")
        started = time.monotonic()
        # The hard deadline: the timeout plus a grace for the server's own (soft) timeout to
        # answer first.
        deadline = (None if self._timeout is None
                    else started + self._timeout + self.options.grace)
        return Batch(batch_id, body, buffers, size, started, deadline,
                     None if on_output is None else OutputListener(on_output, self.id))

    def _received(self, batch: Batch, received: tuple[Any, list[memoryview]]) -> Encoded | None:
        """Take in a message that came during ``batch``: for a call from the container, the
        encoded answer to send back; otherwise None: output is handed to the batch's
        ``on_output`` (an awaitable it returns is left in its listener), the reply is kept in
        ``batch.reply``.

        Raises:
            ProtocolError: the message is unreadable or unexpected (the session must end).
        """
        message = self._decode(received)
        kind = message.get("type")
        if kind == protocol.CALL or kind == protocol.OUTPUT:  # before the reply
            size = len(received[0])  # the body: buffers were received into their arrays
            if size > self.options.max_call_frame:  # one whose "type" did not come first
                raise ProtocolError(f"session {self.id}: a {kind} from the container with a "
                                    f"body of {size} bytes, over max_call_frame="
                                    f"{self.options.max_call_frame}")
            if kind == protocol.OUTPUT:
                self._deliver(batch, message)
                return None
            self.stats.host_calls += 1
            return call_reply(self._handlers, message, self.id)
        batch.reply = message
        return None

    def _deliver(self, batch: Batch, message: dict[str, Any]) -> None:
        """Hand an OUTPUT message's text to the batch's ``on_output``; a callback that raises
        is logged (once per eval) and the eval goes on.

        Raises:
            ProtocolError: output the batch did not ask for, or for another batch.
        """
        text = message.get("text")
        listener = batch.listener
        if listener is None or not _is_id(message.get("batch"), batch.id) \
                or not isinstance(text, str):
            raise ProtocolError(f"session {self.id}: unexpected output for batch "
                                f"{message.get('batch')!r:.100} while waiting for {batch.id}"
                                + ("" if listener else " (which did not ask for output)"))
        listener.hand(text)

    def _finish(self, batch: Batch) -> Any:
        """The value the batch's reply carries, or the error it reports.

        Raises:
            PythonError, MarshalError, SessionTimeout (soft): the server's error reply.
            ProtocolError: the reply breaks the protocol (the session must end).
        """
        message = batch.reply
        kind = message.get("type")
        self.stats.bytes_out += batch.size  # counted once answered: it was sent whole
        reply_id = message.get("id")
        if reply_id is not None and not _is_id(reply_id, batch.id):
            raise ProtocolError(f"session {self.id}: reply for batch {reply_id!r:.100} "
                                f"while waiting for {batch.id}")
        latency = time.monotonic() - batch.started
        self.stats.batches += 1
        self.stats.last_latency = latency
        self.stats.total_latency += latency
        self._record_output(message)
        if kind == protocol.RESULT:
            return message.get("value")
        if kind == protocol.ERROR:
            raise remote_error(message, self.id, self._timeout)
        raise ProtocolError(f"session {self.id}: unexpected message type {kind!r}")

    def _detach(self) -> Instance | None:
        """Close the connection and forget the server; the server, for removal."""
        transport, instance = self._transport, self._instance
        self._transport = self._instance = None
        if transport is not None:
            transport.close()
        return instance

    def _remove(self, instance: Instance, why: str) -> None:
        """Remove a detached server (a blocking call); a failure is logged, not raised."""
        try:
            instance.cleanup()
        except PyHostError as exc:
            log.error("session %s: cleanup after %s failed: %s", self.id, why, exc)
        log.info("session %s: container %s removed (%s)", self.id, instance.id[:12], why)

    def _decode(self, received: tuple[Any, list[memoryview]]) -> dict[str, Any]:
        body, buffers = received
        self.stats.bytes_in += wire.message_size(body, buffers)
        try:
            message = codec.decode(body, buffers)
        except codec.MarshalError as exc:
            raise ProtocolError(f"session {self.id}: unreadable frame: {exc}") from exc
        if not isinstance(message, dict) or type(message.get("type")) is not str:
            raise ProtocolError(f"session {self.id}: a frame must hold a map with a 'type' "
                                f"string, got {_shape(message)}")
        return message

    @staticmethod
    def _wants_status(exc: BaseException) -> bool:
        """Whether to ask how the server ended before stopping it (not after a timeout or an
        oversized frame: it is killed for those, and the reason is known)."""
        return not isinstance(exc, (TimeoutError, wire.FrameTooLarge))

    def _record_output(self, message: dict[str, Any]) -> None:
        output = message.get("output") or ""
        cap = self.options.output_cap
        if not isinstance(output, str):
            output = ""
        if len(output) > cap + 200:  # the server's cap, enforced here too: head and tail
            half = cap // 2
            output = (output[:half] + f"\n[... {len(output) - 2 * half} characters of output "
                      "dropped by the host ...]\n" + output[len(output) - half:])
            message["output"], message["truncated"] = output, True
        self.last_output = output
        self.last_output_truncated = message.get("truncated") is True
        if self.last_output:
            log.info("session %s output:\n%s", self.id, self.last_output.rstrip())

    def _broken(self, exc: BaseException, status: ExitStatus | None) -> PyHostError:
        """The error for a connection that failed with ``exc`` during a batch (the driver
        has stopped the server; ``status`` is how it ended, if known)."""
        if isinstance(exc, TimeoutError):
            log.warning("session %s: hard timeout after %s s; container killed", self.id,
                        self._timeout)
            return SessionTimeout(
                f"session {self.id}: the batch ran past its {self._timeout} s timeout and did "
                f"not yield within {self.options.grace} s; the container was killed "
                "(hard timeout)", kind="hard", seconds=self._timeout)
        if isinstance(exc, wire.FrameTooLarge):
            return ProtocolError(f"session {self.id}: {exc} (a call from the container has a "
                                 f"body of at most max_call_frame="
                                 f"{self.options.max_call_frame} bytes, "
                                 f"a reply at most max_frame={self.options.max_frame})")
        if self._closed:
            return SessionClosed(f"session {self.id} was closed during a batch")
        if status is None:
            log.error("session %s: connection lost during a batch", self.id)
            return SessionDied(f"session {self.id}: the connection to the server broke during "
                               "a batch")
        if status.engine:
            log.error("session %s: the container went with its engine: %s", self.id,
                      status.engine)
            return SessionDied(f"session {self.id}: the container is gone with the engine that "
                               f"ran it: {status.describe()}", status.exit_code,
                               status.oom_killed, engine_lost=True)
        log.error("session %s: container died during a batch: %s", self.id,
                  status.describe().splitlines()[0])
        return SessionDied(f"session {self.id}: the container died during a batch: "
                           f"{status.describe()}", status.exit_code, status.oom_killed)


def _is_id(value: Any, expected: int) -> bool:
    """Whether a peer's ``value`` is the id ``expected`` (an int: never a bool, never an
    array, whose ``==`` answers neither yes nor no)."""
    return type(value) is int and value == expected


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"a map whose type is {value.get('type')!r:.60}"
    return f"a {type(value).__name__}"


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


def remote_error(message: dict[str, Any], session_id: str,
                 timeout: float | None) -> PyHostError:
    """The error an ERROR reply means. A ``ProtocolError`` means the session must end."""
    error = message.get("error")
    if not isinstance(error, dict):
        error = {}
    kind = message.get("kind")
    if type(kind) is not str:  # a peer's value: an array's == would not say yes or no
        kind = None
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
                       _text(error.get("traceback")), _text(message.get("output")))


#: The error a batch answers with when its server was sent SIGTERM: it exits after the reply.
TERMINATED = "hxpy.server.Terminated"


def terminated(exc: PyHostError) -> bool:
    """Whether ``exc`` is the reply of a server sent SIGTERM, which exits after it: by this
    session's own ``kill(grace)``, or from outside (the engine stopping, a ``docker stop``),
    when the session is over as if its container had died."""
    return isinstance(exc, PythonError) and exc.remote_type == TERMINATED


def call_reply(handlers: dict[str, HostHandler], message: dict[str, Any],
               session_id: str) -> Encoded:
    """Run the host handler a CALL asks for; the encoded CALL_RESULT or CALL_ERROR."""
    method = message.get("method")
    handler = handlers.get(method) if isinstance(method, str) else None
    call_id = message.get("id")
    if type(call_id) is not int:  # echoed: a peer's other value may not even encode again
        call_id = None
    try:
        if handler is None:
            raise LookupError(f"the host has no handler for {method!r:.100}")
        value = handler(*(message.get("args") or ()), **(message.get("kwargs") or {}))
        return codec.encode_parts({"type": protocol.CALL_RESULT, "id": call_id,
                                   "value": value}, where=f"{method} result")
    except Exception as exc:
        log.warning("session %s: host call %r failed: %s", session_id, method, exc)
        return codec.encode({"type": protocol.CALL_ERROR, "id": call_id,
                             "error": protocol.error_info(exc, "")}), []
