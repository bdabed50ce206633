"""The conversation with one session server: buffered define/exec, one round trip per eval.

A :class:`Session` knows a :class:`~pyhost.launcher.Launcher` only through its interface and
never imports docker. ``define`` and ``exec`` are encoded at once (bad values fail there, before
anything is sent) and buffered; ``eval`` sends the buffer and the expression as ONE batch frame
and waits for the reply in a loop that also answers the calls the container makes back to the
host while the batch runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from hxpy import protocol, wire

from .conversation import (
    call_reply,
    decode_message,
    died_error,
    encode_define,
    encode_eval,
    encode_exec,
    hard_timeout_error,
    remote_error,
)
from .errors import (
    MarshalError,
    ProtocolError,
    PyHostError,
    SessionClosed,
    SessionTimeout,
)
from .launcher import DEFAULT_IO, DefaultIO, Instance, Launcher, LaunchSpec
from .opening import Opened, open_server
from .pool import pool_key, take_warm
from .transport import Transport

__all__ = ["Session", "SessionStats"]

log = logging.getLogger("pyhost")

DEFAULT_TIMEOUT = 300.0
DEFAULT_GRACE = 0.5

_live: weakref.WeakSet[Session] = weakref.WeakSet()
_live_lock = threading.Lock()


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


HostHandler = Callable[..., Any]


class _Pending(threading.local):
    """Ops and their out-of-band buffers waiting for the next eval, per thread: a define in
    one thread never rides on another thread's eval."""

    def __init__(self) -> None:
        self.ops: list[bytes] = []
        self.buffers: list[memoryview] = []


class Session:
    """One sandboxed Python session; obtain it with :func:`pyhost.py`.

    Chain ``define``/``exec``/``timeout``/``init`` and finish with ``eval``. Without ``with``
    (and unless persistent) ``eval`` closes the session afterwards, as hxPy does; inside
    ``with py() as s:`` the session lives until the block ends.
    """

    def __init__(self, launcher: Launcher, *, image: str | None = None,
                 io: str | os.PathLike[str] | None = DEFAULT_IO, io_host_path: str | None = None,
                 io_volume: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 log_level: str = "WARNING", env: dict[str, str] | None = None,
                 mem_limit: str | int | None = "1g", cpus: float | None = None,
                 network: str | None = None, publish_address: str = "127.0.0.1",
                 max_frame: int = wire.DEFAULT_MAX_FRAME, output_cap: int = 1 << 20,
                 spin: float = wire.DEFAULT_SPIN, grace: float = DEFAULT_GRACE,
                 persist: str | None = None) -> None:
        self.id = secrets.token_hex(6)
        self._launcher = launcher
        self._io, self._spec_options = launch_options(
            image=image, io=io, io_host_path=io_host_path, io_volume=io_volume,
            log_level=log_level, env=env, mem_limit=mem_limit, cpus=cpus, network=network,
            publish_address=publish_address, max_frame=max_frame, output_cap=output_cap,
            spin=spin)
        self._timeout = timeout
        self._grace = grace
        self._max_frame = max_frame
        self.persist = persist
        self._keep = persist is not None
        self._lock = threading.RLock()
        self._pending = _Pending()
        self._init_fns: list[Callable[[Session], Any]] = []
        self._instance: Instance | None = None
        self._transport: Transport | None = None
        self._closed = False
        self._depth = 0
        self._starts = 0
        self._batch_ids = 0
        self._handlers: dict[str, HostHandler] = {}
        self.stats = SessionStats()
        self.last_output = ""
        self.last_output_truncated = False
        self.server_info: dict[str, Any] = {}

    # -- chain ---------------------------------------------------------------------------

    def define(self, name: str, value: Any) -> Session:
        """Bind ``name`` to ``value`` in the session namespace (sent with the next eval).

        Raises:
            ValueError: ``name`` is not a Python identifier.
            MarshalError: ``value`` cannot be marshalled; nothing is sent.
        """
        self._check_open()
        op, buffers = encode_define(name, value)
        size = wire.message_size(op, buffers)
        if size > self._max_frame:
            raise MarshalError(f"define({name!r}): the value takes {size} bytes, over the "
                               f"maximum frame size of {self._max_frame} bytes; nothing was sent")
        pending = self._pending
        pending.ops.append(op)
        pending.buffers.extend(buffers)
        return self

    def exec(self, code: str) -> Session:
        """Run statements in the session namespace (sent with the next eval)."""
        self._check_open()
        self._pending.ops.append(encode_exec(code))
        return self

    def timeout(self, seconds: float | None) -> Session:
        """Set how long each eval may run; None waits forever."""
        if seconds is not None and seconds <= 0:
            raise ValueError(f"timeout must be positive or None, not {seconds!r}")
        self._timeout = seconds
        return self

    def init(self, fn: Callable[[Session], Any]) -> Session:
        """Call ``fn(session)`` each time a container starts for this session, before its
        first batch; what it defines and execs goes first."""
        self._init_fns.append(fn)
        return self

    def handle(self, method: str, fn: HostHandler) -> Session:
        """Answer ``hxpy.server.call_host(method, ...)`` from the container with ``fn``."""
        self._handlers[method] = fn
        return self

    def eval(self, expr: str) -> Any:
        """Send the buffered ops and ``expr``; return the value of ``expr``.

        Raises:
            PythonError: the code raised in the container (the session stays usable).
            MarshalError: the value cannot be brought back (the session stays usable).
            SessionTimeout: the batch ran past the timeout.
            SessionDied: the container ended under us.
            SessionClosed: the session was closed.
        """
        self._check_open()
        last = encode_eval(expr)
        ops, buffers = self._take_pending()
        ops.append(last)
        with self._lock:
            self._depth += 1
            try:
                if self._transport is None:
                    init_ops, init_buffers = self._start()
                    ops, buffers = init_ops + ops, init_buffers + buffers
                return self._roundtrip(ops, buffers)
            finally:
                self._depth -= 1
                if not self._keep and self._depth == 0:
                    self.close()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def container_id(self) -> str | None:
        """The id of the running container, once started."""
        return self._instance.id if self._instance else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End the session and remove its container; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop("close")
        with _live_lock:
            _live.discard(self)

    def kill(self) -> None:
        """Kill the container at once, even while another thread waits in eval."""
        self._closed = True
        instance = self._instance
        if instance is not None:
            instance.kill()
        with self._lock:
            self._stop("kill")
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Session:
        self._keep = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._instance else "not started")
        return f"<Session {self.id} {state}>"

    # -- internals -----------------------------------------------------------------------

    def _take_pending(self) -> tuple[list[bytes], list[memoryview]]:
        pending = self._pending
        ops, buffers = pending.ops, pending.buffers
        if ops:
            pending.ops, pending.buffers = [], []
            return ops, buffers
        return [], []

    def _put_back(self, ops: list[bytes], buffers: list[memoryview]) -> None:
        self._pending.ops, self._pending.buffers = ops, buffers

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session {self.id} is closed")

    def _start(self) -> tuple[list[bytes], list[memoryview]]:
        """Start (or take from a warm pool) a server; run init; return init's buffered ops."""
        restarting = self._starts > 0
        self._starts += 1
        opened = take_warm(self._pool_key()) if not restarting else None
        if opened is None:
            opened = self._open_fresh(self.id)
        self._instance, self._transport = opened.instance, opened.transport
        self.server_info = opened.server_info
        with _live_lock:
            _live.add(self)
        if restarting:
            self.stats.restarts += 1
            log.warning("session %s: restarted (restart %d)", self.id, self.stats.restarts)
        saved = self._take_pending()
        for fn in self._init_fns:
            fn(self)
        init = self._take_pending()
        self._put_back(*saved)
        return init

    def _open_fresh(self, session_id: str) -> Opened:
        """Start and handshake a new server with this session's options."""
        spec = LaunchSpec(session_id=session_id, key="", io_dir=self._io,
                          **self._spec_options)
        return open_server(self._launcher, spec, self._max_frame)

    def _pool_key(self) -> tuple[Any, ...]:
        return pool_key(self._launcher, self._io, self._spec_options)

    def _receive(self, transport: Transport, timeout: float | None, during: str) -> dict[str, Any]:
        """One message, with every lower-layer failure translated."""
        try:
            body, buffers = transport.recv(timeout)
        except TimeoutError:
            raise  # the caller knows which deadline passed
        except wire.FrameTooLarge as exc:
            self._stop("oversized frame")
            raise ProtocolError(f"session {self.id}: {exc} during {during}") from exc
        except (wire.PeerClosed, ConnectionError, OSError) as exc:
            raise self._died(during) from exc
        self.stats.bytes_in += wire.message_size(body, buffers)
        return decode_message(body, buffers, self.id, during)

    def _roundtrip(self, ops: list[bytes], buffers: list[memoryview]) -> Any:
        assert self._transport is not None
        transport = self._transport
        self._batch_ids += 1
        batch_id = self._batch_ids
        body = protocol.pack_batch(batch_id, self._timeout, ops)
        size = wire.message_size(body, buffers)
        if size > self._max_frame:
            raise MarshalError(f"the batch is {size} bytes, over the maximum frame size of "
                               f"{self._max_frame} bytes; nothing was sent")
        started = time.monotonic()
        # The hard deadline: the timeout plus a grace for the server's own (soft) timeout to
        # answer first.
        deadline = None if self._timeout is None else started + self._timeout + self._grace
        try:
            transport.send(body, buffers)
        except OSError as exc:
            raise self._died("sending a batch") from exc
        self.stats.bytes_out += size
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                message = self._receive(transport, wait, "a batch")
            except TimeoutError:
                raise self._hard_timeout() from None
            kind = message.get("type")
            if kind != protocol.CALL:
                break
            self._answer_call(transport, message)
        if message.get("id") not in (batch_id, None):
            raise ProtocolError(f"session {self.id}: reply for batch {message.get('id')} "
                                f"while waiting for {batch_id}")
        latency = time.monotonic() - started
        self.stats.batches += 1
        self.stats.last_latency = latency
        self.stats.total_latency += latency
        self._record_output(message)
        if kind == protocol.RESULT:
            return message.get("value")
        if kind == protocol.ERROR:
            error = remote_error(message, self.id, self._timeout)
            if isinstance(error, ProtocolError):
                self._stop("protocol error")
            raise error
        raise ProtocolError(f"session {self.id}: unexpected message type {kind!r}")

    def _record_output(self, message: dict[str, Any]) -> None:
        self.last_output = message.get("output") or ""
        self.last_output_truncated = bool(message.get("truncated"))
        if self.last_output:
            log.info("session %s output:\n%s", self.id, self.last_output.rstrip())

    def _answer_call(self, transport: Transport, message: dict[str, Any]) -> None:
        self.stats.host_calls += 1
        transport.send(*call_reply(self._handlers, message, self.id))

    def _hard_timeout(self) -> SessionTimeout:
        log.warning("session %s: hard timeout after %s s; killing container %s", self.id,
                    self._timeout, self.container_id and self.container_id[:12])
        self._stop("hard timeout")
        return hard_timeout_error(self.id, self._timeout, self._grace)

    def _died(self, during: str) -> PyHostError:
        if self._closed:
            self._stop("closed")
            return SessionClosed(f"session {self.id} was closed during {during}")
        instance = self._instance
        status = instance.wait(1.0) if instance is not None else None
        self._stop("died")
        return died_error(self.id, during, status)

    def _stop(self, why: str) -> None:
        """Drop the connection and remove the container (the next eval may start anew)."""
        transport, instance = self._transport, self._instance
        self._transport = None
        self._instance = None
        if transport is not None:
            transport.close()
        if instance is not None:
            try:
                instance.cleanup()
            except PyHostError as exc:
                log.error("session %s: cleanup after %s failed: %s", self.id, why, exc)
            log.info("session %s: container %s removed (%s)", self.id, instance.id[:12], why)


def launch_options(*, io: str | os.PathLike[str] | None, log_level: str,
                   env: dict[str, str] | None, **options: Any) -> tuple[str | None, dict[str, Any]]:
    """The io directory (absolute) and the other :class:`LaunchSpec` fields of a session's
    options; shared by the blocking and the asyncio session."""
    io_dir = None if io is None else os.path.abspath(os.fspath(io))
    return io_dir, dict(options, io_required=not isinstance(io, DefaultIO),
                        env=dict(env or {}), log_level=log_level.upper())


def live_sessions() -> list[Session]:
    """Sessions with a running container in this process."""
    with _live_lock:
        return list(_live)


@atexit.register
def _close_live_sessions() -> None:
    for session in live_sessions():
        try:
            session.close()
        except Exception:  # exiting: report nothing, remove what we can
            pass
