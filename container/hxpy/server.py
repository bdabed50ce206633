"""The in-container server: ``python -m hxpy``.

One host connection per container. The server binds its socket before importing anything
heavy (numpy and pandas load only when a value needs them, logging when something logs),
accepts connections until one says hello with the right key and protocol version, then stops
listening and serves that host alone: batches of define/exec/eval against one persistent
namespace. It exits when the host connection drops, so no container outlives its session.

Configuration comes from the environment (the host launcher sets it):

``HXPY_KEY_FROM``     where the session key the hello must carry comes from: ``stdin`` (one
                    line on standard input, which is then closed) or ``file:PATH``; never
                    the environment, so ``docker inspect`` and ``/proc/<pid>/environ`` do
                    not show it
``HXPY_LISTEN``       ``unix:/run/hxpy/hxpy.sock`` (default) or ``tcp:0.0.0.0:8888``
``HXPY_MAX_FRAME``    maximum frame size in bytes (default 1 GiB)
``HXPY_OUTPUT_CAP``   captured stdout+stderr per batch, in bytes (default 1 MiB)
``HXPY_SPIN_US``      microseconds to poll for the next batch before sleeping (default 50;
                    0 never polls; see ``hxpy.wire.FrameReader``)
``HXPY_HELLO_TIMEOUT`` seconds a new connection has to send its whole hello (default 10);
                    a client that is slower is refused and the server listens on
``HXPY_LOG_LEVEL``    server log level (default WARNING), logged to the container's stderr
``HXPY_FAULT``        test-only fault mode: ``crash``, ``hang``, ``garbage``, ``oversize``
``HXPY_SECRETS_DIR``  a directory of secret files (a Swarm task's ``/run/secrets``): each
                    file ``NAME`` becomes the environment variable ``NAME`` at start

Other secrets come over the channel after the handshake (a ``secrets`` message) and are put
into ``os.environ`` in this process; ``/proc/<pid>/environ`` shows only the environment the
process started with, so they never appear there.
"""

from __future__ import annotations

import _socket  # not socket, for a cold start: hxpy.startup says why
import math
import os
import select
import sys
import threading
import time

from . import PROTOCOL_VERSION, __version__, codec, protocol, sources, wire
from .capture import CHUNK, CappedOutput
from .lazy import when_imported
from .listening import DEFAULT_LISTEN
from .logs import INFO, WARNING, configure_logging, own_log
from .pipes import FdCatcher, Pipes, server_pipes
from .startup import (
    MAX_KEY_BYTES,
    accept,
    listen,
    listener_path,
    load_secrets,
    max_frame_for_hello,
    read_hello,
    read_key,
)

# Only what listening, the handshake and an eval need is imported at start: a cold start
# waits for every import (tests/unit/test_server_imports.py keeps the list). logging,
# linecache, traceback, typing and the Haystack types come when something needs them
# (hxpy.logs, hxpy.sources, hxpy.codec); socket and signal not at all (their C modules do).
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal
    from types import ModuleType
    from typing import Any, Callable
else:  # the C module signal.py wraps, building enums at import (as socket.py does)
    import _signal as signal

__all__ = [
    "DEFAULT_HELLO_TIMEOUT",
    "DEFAULT_LISTEN",
    "DEFAULT_OUTPUT_CAP",
    "MAX_KEY_BYTES",
    "HostCallError",
    "Server",
    "SoftTimeout",
    "Terminated",
    "accept",
    "call_host",
    "listen",
    "listener_path",
    "load_secrets",
    "main",
    "max_frame_for_hello",
    "read_key",
]

DEFAULT_OUTPUT_CAP = 1 << 20
DEFAULT_HELLO_TIMEOUT = 10.0  # seconds a new connection has to send its whole hello


class SoftTimeout(BaseException):
    """Raised inside user code when its batch outlives the soft timeout.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` in user code does not
    swallow it.
    """


class Terminated(BaseException):
    """Raised inside user code when the host ends the session with SIGTERM (a run stopped),
    so that its ``finally`` blocks and context managers run before the server exits. A
    BaseException: ``except Exception`` does not swallow it; user code that sets SIGTERM's
    handler itself (or swallows this) is killed after the host's grace period."""


TERMINATED_EXIT = 128 + signal.SIGTERM  # as a process ended by the signal's default action


class HostCallError(Exception):
    """The host answered a container -> host call with an error."""


_current: Server | None = None


def call_host(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` on the host from user code, over the session's own channel.

    Only valid while a batch runs (the host is then waiting and can answer). Any thread may
    call it; calls take turns (one in flight at a time).

    Raises:
        HostCallError: the host has no such method, or it raised.
        RuntimeError: no batch is running.
    """
    if _current is None or _current.batch_id is None:
        raise RuntimeError("call_host() is only available while the host runs a batch")
    return _current.call_host(method, list(args), kwargs)


class Server:
    """Serves one host connection: batches against one namespace."""

    def __init__(self, key: str, max_frame: int = wire.DEFAULT_MAX_FRAME,
                 output_cap: int = DEFAULT_OUTPUT_CAP, fault: str = "",
                 spin: float = wire.DEFAULT_SPIN,
                 hello_timeout: float = DEFAULT_HELLO_TIMEOUT) -> None:
        self.key = key
        self.hello_timeout = hello_timeout
        self.max_frame = max_frame
        self.spin = spin
        self.output_cap = output_cap
        self.fault = fault
        self.namespace: dict[str, Any] = {"__name__": "__hxpy__", "__builtins__": __builtins__}
        self.conn: _socket.socket | None = None
        # The session's messages go over pipes the host sent with its hello, when it did
        # (hxpy.pipes); the connection then only tells that the host is gone.
        self.pipes: Pipes | None = None
        self.out: _socket.socket | Pipes | None = None
        self.reader: wire.FrameReader | None = None
        self.batch_id: int | None = None
        self._in_user_code = False
        self._timer_fired = False
        self._deadline = math.inf  # when the running (or last) batch must end
        self._timer_at = 0.0  # when the armed SIGALRM timer fires; 0: not armed
        self._calls = 0
        # One call in flight: a reply is read by the thread that sent the call, so calls from
        # several threads (a serve's request workers and log flusher) take turns.
        self._call_lock = threading.Lock()
        # One frame at a time on the connection: replies, calls and streamed output are sent
        # from different threads.
        self._send_lock = threading.Lock()
        # Compiled code by source: sessions run the same code over and over.
        self._evals: dict[str, tuple[Any, Any]] = {}
        self._execs: dict[str, Any] = {}
        # One capture for the whole session: a stream user code keeps (a logging handler made
        # in one batch) still writes into the output of later batches.
        self._output = CappedOutput(output_cap)

    # -- connection -------------------------------------------------------------------

    def accept(self, listener: _socket.socket) -> _socket.socket:
        """Accept connections until one says a valid hello; stop listening after it."""
        while True:
            conn = accept(listener)
            fds = FdCatcher(conn)
            try:
                hello = read_hello(conn, self.max_frame, self.hello_timeout, fds)
                reason = protocol.check_hello(hello, self.key)
            except Exception as exc:  # whatever a stranger sent, the server listens on
                reason = f"bad hello: {exc}"
            if reason is None:
                # Text columns as two buffers only for a host that reads them without a
                # Python object per cell (it has pyarrow); lists for every other host.
                # Told to hxpy.columns when it is imported: only a DataFrame needs it.
                columns = hello.get("columns")
                if isinstance(columns, list) and "text" in columns:
                    when_imported("hxpy.columns", _send_text_columns)
                if hello.get("pipes") is True:
                    self.pipes = server_pipes(fds.take_fds(), bulk=conn)
                fds.close_fds()
                break
            fds.close_fds()
            own_log(WARNING, "refused a client: %s", reason)
            try:
                wire.send_message(conn, {"type": protocol.REFUSED, "reason": reason})
            except OSError:
                pass
            conn.close()
        address = listener_path(listener)
        listener.close()
        if address:
            os.unlink(address)
        if self.fault == "crash":
            os._exit(3)
        if self.fault == "garbage":
            conn.sendall(wire.HEADER.pack(5) + b"\xc1\xc1\xc1\xc1\xc1")
        wire.send_message(conn, {
            "type": protocol.WELCOME, "version": PROTOCOL_VERSION, "hxpy": __version__,
            "python": sys.version.split()[0], "pid": os.getpid(),
            "pipes": self.pipes is not None,
        })
        return conn

    def serve(self, conn: _socket.socket) -> None:
        """Answer batches until the host goes away."""
        global _current
        self.conn = conn
        self.out = self.pipes or conn  # what messages go out through
        self.reader = wire.FrameReader(self.out, self.max_frame, spin=self.spin)  # type: ignore[arg-type]
        _current = self
        _exit_when_peer_hangs_up(conn)
        signal.signal(signal.SIGALRM, self._on_timer)
        # The server is the container's PID 1, which the kernel spares SIGTERM unless it
        # handles it: without this, a stop would always wait out its grace period.
        signal.signal(signal.SIGTERM, self._on_term)
        while True:
            try:
                body, buffers = self.reader.read()
            except wire.PeerClosed:
                return
            except wire.FrameTooLarge as exc:
                self._reply_error(None, protocol.KIND_PROTOCOL, exc, "")
                return
            try:
                message = codec.decode(body, buffers)
            except codec.MarshalError as exc:
                self._reply_error(None, protocol.KIND_MARSHAL, exc, "")
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            request_id = _request_id(message)
            if type(kind) is not str:  # a peer's value: an array's == would not say yes or no
                self._reply_error(None, protocol.KIND_PROTOCOL, ValueError(
                    "a message must be a map with a 'type' string"), "")
            elif request_id is None and message.get("id") is not None:
                self._reply_error(None, protocol.KIND_PROTOCOL, ValueError(
                    f"a {kind!r} message's id must be an int or nil"), "")
            elif kind == protocol.BATCH:
                self.run_batch(message)
            elif kind == protocol.SECRETS:
                self.set_secrets(message)
            else:
                self._reply_error(request_id, protocol.KIND_PROTOCOL,
                                  ValueError(f"unexpected message type {kind!r:.100}"), "")

    def set_secrets(self, message: dict[str, Any]) -> None:
        """Put the host's secrets into ``os.environ`` (this process only: they are not in
        the environment it started with) and acknowledge with an empty result."""
        values = message.get("values")
        if not isinstance(values, dict) or not all(
                isinstance(name, str) and name.isidentifier() and isinstance(value, str)
                and "\0" not in value for name, value in values.items()):
            self._reply_error(message.get("id"), protocol.KIND_PROTOCOL,
                              ValueError("secrets: a map of identifier -> str without NUL"), "")
            return
        os.environ.update(values)
        self._send({"type": protocol.RESULT, "id": message.get("id"), "output": "",
                    "truncated": False, "value": len(values)})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.out is not None
        body, buffers = codec.encode_parts(message, where="reply")
        with self._send_lock:
            wire.send(self.out, body, buffers, self.max_frame)  # type: ignore[arg-type]

    def _output_sender(self, batch_id: Any) -> Callable[[str], None]:
        """What sends a piece of batch ``batch_id``'s output as an OUTPUT frame (called by
        the capture, from the thread that filled or flushed its buffer, holding the send
        lock)."""
        out, max_frame = self.out, self.max_frame
        assert out is not None

        def send(text: str) -> None:
            wire.send(out, protocol.pack_output(batch_id, text), (), max_frame)  # type: ignore[arg-type]

        return send

    # -- batches ----------------------------------------------------------------------

    def run_batch(self, message: dict[str, Any]) -> None:
        """Run every op of a batch; reply with the last eval's value or the first error.

        An exception from user code, SystemExit and KeyboardInterrupt included, becomes an
        error reply and the session goes on.

        What is printed goes into the session's capture. Whatever reached the capture since
        the last reply (a thread or a logging handler of user code, between batches) goes with
        this reply, so nothing printed is lost. A batch with ``stream`` set has it sent as
        OUTPUT frames while it runs instead (``hxpy.capture``), uncapped; the reply then
        carries only what was not sent yet.
        """
        batch_id = message.get("id")
        self.batch_id = batch_id
        streaming = message.get("stream") is True and self._output.start_stream(
            self._output_sender(batch_id), self._send_lock, _output_chunk(self.max_frame))
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._output.stream
        value: Any = None
        failure: tuple[str, BaseException, str] | None = None
        terminated = False
        try:
            if self.fault == "hang":
                while True:
                    time.sleep(3600)
            self._timer_fired = False
            self._arm(message.get("timeout"))
            self._in_user_code = True
            value = self._run_ops(message.get("ops", ()))
        except SoftTimeout as exc:
            failure = (protocol.KIND_TIMEOUT, exc, _user_traceback(exc))
        except Terminated as exc:  # answered as an error (with what it printed), then exit
            failure, terminated = (protocol.KIND_PYTHON, exc, _user_traceback(exc)), True
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # As in IPython, exit(), sys.exit(), an argparse error or Ctrl-C ends the cell, not
            # the session: losing the namespace to them is never what the user meant.
            # os._exit, SIGTERM, SIGKILL or the host hanging up still end it.
            failure = (protocol.KIND_PYTHON, exc, _user_traceback(exc))
        finally:
            self._in_user_code = False
            if streaming:
                self._output.end_stream()
            sys.stdout, sys.stderr = saved
            self.batch_id = None
        if failure is not None:
            self._reply_error(batch_id, *failure)
            if terminated:
                own_log(INFO, "SIGTERM: user code ended; exiting")
                os._exit(TERMINATED_EXIT)
            return
        self._send_result(batch_id, value)

    def _send_result(self, batch_id: Any, value: Any) -> None:
        try:
            encoded, buffers = codec.encode_parts(value, where="eval result")
        except codec.MarshalError as exc:
            self._reply_error(batch_id, protocol.KIND_MARSHAL, exc, "")
            return
        text, truncated = self._output.take()
        body = protocol.pack_result(batch_id, text, truncated, encoded)
        size = wire.message_size(body, buffers)
        if size > self.max_frame:
            self._reply_error(batch_id, protocol.KIND_MARSHAL, wire.FrameTooLarge(
                f"eval result: the reply of {size} bytes exceeds the maximum frame size "
                f"of {self.max_frame} bytes"), "", (text, truncated))
            return
        if self.fault == "oversize":
            self.out.sendall(wire.HEADER.pack(0x7FFFFFF0))  # type: ignore[union-attr]
            return
        # acquire/release, not ``with``: measured 0.2 us against 0.55 us per reply here.
        self._send_lock.acquire()
        try:
            wire.send(self.out, body, buffers, self.max_frame)  # type: ignore[arg-type]
        finally:
            self._send_lock.release()

    def _run_ops(self, ops: Any) -> Any:
        """Run ``ops`` in order; the value of the last one (None unless it is an eval)."""
        namespace = self.namespace
        value = None
        for op in ops:
            name = op[0] if type(op) is list and op else None
            if name == "define":
                namespace[op[1]] = op[2]
                value = None
            elif name == "eval":
                value = self._eval(op[1])
            elif name == "exec":
                exec(self._compile(op[1]), namespace)
                value = None
            elif name is None:
                raise ValueError(f"malformed op {op!r}")
            else:
                raise ValueError(f"unknown op {name!r}")
        return value

    def _eval(self, source: str) -> Any:
        compiled = self._evals.get(source)
        if compiled is None:
            compiled = _remember(self._evals, source, self._compile_eval(source))
        statements, expression = compiled
        if statements is not None:
            exec(statements, self.namespace)
        return None if expression is None else eval(expression, self.namespace)

    def _compile_eval(self, source: str) -> tuple[Any, Any]:
        """(statements, expression) code objects for an eval source.

        A plain expression is the common case. Otherwise, as a notebook cell does, run the
        statements and evaluate the last line when it is an expression.
        """
        filename = self._filename(source)
        try:
            return None, compile(source, filename, "eval")
        except SyntaxError:
            import ast

            tree = ast.parse(source, filename)
            last = None
            final = tree.body[-1] if tree.body else None
            if isinstance(final, ast.Expr):
                tree.body.pop()
                last = compile(ast.Expression(final.value), filename, "eval")
            return compile(tree, filename, "exec"), last

    def _compile(self, source: str) -> Any:
        compiled = self._execs.get(source)
        if compiled is None:
            compiled = _remember(self._execs, source,
                                 compile(source, self._filename(source), "exec"))
        return compiled

    def _filename(self, source: str) -> str:
        return sources.register(source)  # so that tracebacks show the offending lines

    def _arm(self, timeout: float | None) -> None:
        """Make SIGALRM come at this batch's deadline.

        Setting a timer is a system call (and, in a VM, often an exit to the hypervisor), so
        it is set only when the armed one would come too late or not at all. One armed for
        an earlier batch comes early and re-arms itself for the rest (see _on_timer): a busy
        session sets its timer about once per timeout, not once per batch.
        """
        if not timeout:
            self._deadline = math.inf
            return
        self._deadline = time.monotonic() + float(timeout)
        if not 0 < self._timer_at <= self._deadline:
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
            self._timer_at = self._deadline

    def _on_timer(self, signum: int, frame: Any) -> None:
        left = self._deadline - time.monotonic()
        if 0 < left < math.inf:  # armed for an earlier batch: wait for this one's deadline
            signal.setitimer(signal.ITIMER_REAL, left)
            self._timer_at = self._deadline
            return
        self._timer_at = 0.0
        if left == math.inf:  # this batch has no timeout
            return
        if self._in_user_code:
            if self._output.busy(frame):  # a buffer of output half handed over: let it be
                signal.setitimer(signal.ITIMER_REAL, 0.001)
                self._timer_at = time.monotonic() + 0.001
                return
            raise SoftTimeout("the batch ran past its timeout and was interrupted")
        self._timer_fired = True

    def _on_term(self, signum: int, frame: Any) -> None:
        if self.batch_id is None:  # between batches: nothing to end cleanly
            os._exit(TERMINATED_EXIT)
        if self._in_user_code and not self._output.busy(frame):
            raise Terminated("the host ended the session (SIGTERM)")
        # In a host call, or a buffer of output half handed over: raised once back in user
        # code (the signal again, a moment later).
        later = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGTERM))
        later.daemon = True
        later.start()

    # -- container -> host calls ----------------------------------------------------------

    def call_host(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Send a CALL to the host and wait for its answer (the host's wait loop serves it).

        Thread-safe: calls from several threads are sent one after the other.
        """
        with self._call_lock:
            return self._call_host(method, args, kwargs)

    def _call_host(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self._calls += 1
        call_id = self._calls
        was_user = self._in_user_code
        self._in_user_code = False  # a timer firing mid-frame must not cut the stream
        try:
            self._send({"type": protocol.CALL, "id": call_id, "batch": self.batch_id,
                        "method": method, "args": args, "kwargs": kwargs})
            assert self.reader is not None
            body, buffers = self.reader.read()
            reply = codec.decode(body, buffers)
            if not isinstance(reply, dict):
                raise HostCallError(f"{method}: the host answered with a {type(reply).__name__}")
        finally:
            self._in_user_code = was_user
        if self._timer_fired and was_user:
            raise SoftTimeout("the batch ran past its timeout and was interrupted")
        if reply.get("type") == protocol.CALL_RESULT and reply.get("id") == call_id:
            return reply.get("value")
        if reply.get("type") == protocol.CALL_ERROR:
            error = reply.get("error") or {}
            raise HostCallError(f"{method}: {error.get('type')}: {error.get('message')}")
        raise HostCallError(f"{method}: unexpected reply {reply.get('type')!r}")

    def _reply_error(self, batch_id: Any, kind: str, exc: BaseException, tb: str,
                     output: tuple[str, bool] | None = None) -> None:
        text, truncated = output if output is not None else self._output.take()
        self._send({"type": protocol.ERROR, "id": batch_id, "kind": kind,
                    "error": protocol.error_info(exc, tb), "output": text,
                    "truncated": truncated})


def _request_id(message: Any) -> int | None:
    """The int id of a request (which replies echo), else None."""
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if type(request_id) is int else None


def _output_chunk(max_frame: int) -> int:
    """UTF-8 bytes of output per OUTPUT frame: the capture's chunk, smaller when the frame
    limit is (a frame adds its type and batch id to the text)."""
    return min(CHUNK, max_frame - 64)


def _send_text_columns(columns: ModuleType) -> None:
    columns.send_text_columns(True)


def _remember(cache: dict[str, Any], source: str, compiled: Any) -> Any:
    if len(cache) >= 256:
        cache.clear()
    cache[source] = compiled
    return compiled


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Where the runtime calls a job's handler: the frames up to it are the runtime's own.
_HANDLER_CALLER = os.path.join(_PACKAGE_DIR, "runtime", "job.py")


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's own code on: the server's frames (and, for a runtime
    job, everything up to the call of its handler) are left out; frames after the first one
    of user code are all kept."""
    try:
        import traceback  # here: a cold start does without it

        te = traceback.TracebackException.from_exception(exc)
    except Exception:  # not the standard module: user code put a traceback.py of its own first
        return f"{type(exc).__name__}: {exc}\n"
    frames = list(te.stack)
    for index, frame in enumerate(frames):
        if os.path.abspath(frame.filename) == _HANDLER_CALLER:
            frames = frames[index + 1:]
            break
    while frames and os.path.abspath(frames[0].filename).startswith(_PACKAGE_DIR):
        frames.pop(0)
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def _exit_when_peer_hangs_up(conn: _socket.socket) -> None:
    """Exit the process as soon as the host's end of ``conn`` closes, even mid-batch."""
    def watch() -> None:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while True:
            for _, events in poller.poll():
                if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                    os._exit(0)

    threading.Thread(target=watch, name="hxpy-hangup", daemon=True).start()


def main(listener: _socket.socket | None = None) -> int:
    """Entry point of ``python -m hxpy``, which passes the ``listener`` it made before
    importing this module (made here when None)."""
    key_from = os.environ.pop("HXPY_KEY_FROM", "")
    if listener is None:  # first thing: the host is already trying to connect
        listener = listen(os.environ.get("HXPY_LISTEN", DEFAULT_LISTEN))
    try:
        key = read_key(key_from)
    except OSError as exc:
        key = ""
        key_from += f" ({exc})"
    if not key:
        print(f"hxpy: no session key from HXPY_KEY_FROM={key_from!r} (stdin or file:PATH); "
              "refusing to serve without one", file=sys.stderr)
        return 2
    load_secrets(os.environ.pop("HXPY_SECRETS_DIR", ""))
    try:
        configure_logging(os.environ.get("HXPY_LOG_LEVEL", "WARNING").upper())
    except ValueError as exc:
        print(f"hxpy: HXPY_LOG_LEVEL: {exc}", file=sys.stderr)
        return 2
    server = Server(
        key,
        max_frame=int(os.environ.get("HXPY_MAX_FRAME", wire.DEFAULT_MAX_FRAME)),
        output_cap=int(os.environ.get("HXPY_OUTPUT_CAP", DEFAULT_OUTPUT_CAP)),
        fault=os.environ.get("HXPY_FAULT", ""),
        spin=float(os.environ.get("HXPY_SPIN_US", wire.DEFAULT_SPIN * 1e6)) / 1e6,
        hello_timeout=float(os.environ.get("HXPY_HELLO_TIMEOUT", DEFAULT_HELLO_TIMEOUT)),
    )
    conn = server.accept(listener)
    own_log(INFO, "host connected; serving")
    server.serve(conn)
    own_log(INFO, "host disconnected; exiting")
    return 0
