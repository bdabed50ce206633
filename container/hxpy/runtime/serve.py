"""A serve run's replica: the handler served over HTTP by uvicorn, in the session's batch.

The host sends the serve description (``define("__serve__", serve)``) and evaluates
``serve(__serve__)``, which blocks for the replica's life: uvicorn runs the
:class:`~hxpy.runtime.asgi.ServeApp` in this (the server's main) thread; the handler runs in
worker threads; a reporter thread sends what the replica prints and logs
(:data:`~hxpy.runtime.calls.SERVE_LOGS`) and its counters
(:data:`~hxpy.runtime.calls.SERVE_HEALTH`) to the host over ``call_host``, the session's own
channel. The eval returns when uvicorn stops (SIGTERM, SIGINT); the host ends a replica by
removing its container.

During the eval the session's timeout must be off (the host sends none) and the session's
capture is replaced by the replica's own log buffer, drained by the reporter, so a replica
that runs for weeks never fills the batch's capped output.

``uvicorn`` is imported only here, inside :func:`serve`: hxpy imports without it.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable

from ..capture import CappedText
from . import calls
from .asgi import BadRequest, Event, Response, ServeApp
from .loader import check_python, import_function, read_signature, write_sources
from .proxies import Project, Run

__all__ = ["BadRequest", "Context", "LogBuffer", "Reporter", "Response", "buffer_tail",
           "load_replica", "serve"]

DEFAULT_PORT = 8080
LOG_CAP = 1 << 20  # characters the log buffer keeps between two flushes


class LogBuffer(CappedText):
    """A text stream several threads write into and the reporter drains (thread-safe); it
    keeps at most ``cap`` characters between two drains and counts the rest."""

    def __init__(self, cap: int = LOG_CAP) -> None:
        super().__init__(cap)

    def write(self, text: str) -> int:
        self.keep(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def take(self) -> str:
        text, dropped = self.take_kept()
        if dropped:
            text += f"\n[... {dropped} characters of logs dropped ...]\n"
        return text


class Context:
    """What the handler and ``init_function`` get as ``context`` (nuclio's).

    Attributes:
        logger: a :class:`logging.Logger` whose records go to the run's logs.
        user_data: a namespace ``init_function`` fills for the handler.
        project, run: the run's own (each method one call to the host).
        replica: this replica's index.
        Response: the class of a response with status, headers and content type.
    """

    Response = Response

    def __init__(self, logger: logging.Logger, project: Project, run: Run,
                 replica: int) -> None:
        self.logger = logger
        self.user_data = SimpleNamespace()
        self.project = project
        self.run = run
        self.replica = replica
        self.worker_id = replica


class Reporter(threading.Thread):
    """Sends the replica's logs (every ``period`` seconds, when there are any) and health
    (every ``health_period`` seconds, and at once when it becomes ready) to the host."""

    def __init__(self, call: Callable[..., Any], replica: int, buffer: LogBuffer,
                 health: Callable[[], dict[str, Any]], period: float = 0.5,
                 health_period: float = 1.0) -> None:
        super().__init__(name="hxpy-serve-reporter", daemon=True)
        self._call, self._replica, self._buffer, self._health = call, replica, buffer, health
        self._period, self._health_period = period, health_period
        self._stopping = threading.Event()
        self._ready_sent = False

    def run(self) -> None:
        next_health = 0.0
        while not self._stopping.wait(0.05 if not self._ready_sent else self._period):
            now = time.monotonic()
            self.flush_logs()
            health = self._health()
            if now >= next_health or (health.get("ready") and not self._ready_sent):
                self._send(calls.SERVE_HEALTH, health)
                self._ready_sent = self._ready_sent or bool(health.get("ready"))
                next_health = now + self._health_period

    def flush_logs(self) -> None:
        text = self._buffer.take()
        if text:
            self._send(calls.SERVE_LOGS, text)

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)
        self.flush_logs()

    def _send(self, method: str, value: Any) -> None:
        try:
            self._call(method, self._replica, value)
        except Exception as exc:  # the host refused: say so where a human may look
            print(f"hxpy serve: {method} failed: {exc}", file=sys.__stderr__)


def load_replica(job: dict[str, Any], call: Callable[..., Any], buffer: LogBuffer
                 ) -> tuple[Callable[[Event], Any], Context, bool]:
    """Load the handler, make the context, run ``init_function`` once: the function that
    answers one event, the context, and whether the handler is ``async def`` (its answer
    is then awaited).

    Raises:
        whatever ``init_function`` raises; TypeError: a handler or init_function that does
        not fit.
    """
    check_python(job.get("python"))
    directory = write_sources(job["files"], job.get("directory"))
    handler = import_function(directory, job["module"], job["function"])
    logger = logging.getLogger(f"hxpy.serve.{job['run_id']}.{job.get('replica', 0)}")
    logger.handlers[:] = [_handler(buffer)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    context = Context(logger, Project(job["project"], call), Run(job["run_id"], call),
                      int(job.get("replica", 0)))
    init = job.get("init_function")
    if init:
        module, _, name = init.rpartition(":")
        initializer = import_function(directory, module or job["module"], name)
        initializer(context, **(job.get("init_parameters") or {}))
    names, required, _ = read_signature(handler)
    missing = [name for name in required if name not in ("context", "event")]
    if missing:
        raise TypeError(f"the handler's argument(s) {', '.join(missing)} have no value: a "
                        "serve handler takes context and event")
    if names[:2] == ["context", "event"] or names == ["context"]:
        def handle(event: Event) -> Any:
            return handler(context, event)
    elif "context" in names:
        def handle(event: Event) -> Any:
            return handler(context=context, event=event)
    else:
        def handle(event: Event) -> Any:
            return handler(event=event)
    return handle, context, inspect.iscoroutinefunction(handler)


def _handler(buffer: LogBuffer) -> logging.Handler:
    handler = logging.StreamHandler(buffer)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


def serve(job: dict[str, Any], call: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Serve the handler until uvicorn stops; the replica's counters.

    ``job`` holds the function (``files``, ``module``, ``function``), ``project``,
    ``run_id``, ``replica``, ``init_function`` / ``init_parameters``, ``port`` (the
    container port; where it binds is ``HXPY_BIND_<port>`` when the launcher sets it, else
    ``0.0.0.0:<port>``) and ``workers``.

    Raises:
        RuntimeError: uvicorn is missing, or could not listen (the reason is in the logs).
        whatever ``init_function`` raises.
    """
    if call is None:
        from ..server import call_host

        call = call_host
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError("serve needs uvicorn in the session image (Debian's "
                           "python3-uvicorn, or pip install uvicorn)") from None
    buffer = LogBuffer()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buffer  # type: ignore[assignment]
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers[:] = [_handler(buffer)]
    uvicorn_log.propagate = False
    replica = int(job.get("replica", 0))
    port = int(job.get("port") or DEFAULT_PORT)
    host, _, bind_port = os.environ.get(f"HXPY_BIND_{port}", f"0.0.0.0:{port}").rpartition(":")
    server: Any = None
    app: ServeApp | None = None

    def health() -> dict[str, Any]:
        stats = app.stats.snapshot() if app is not None else {}
        return {"ready": bool(server is not None and server.started), **stats}

    reporter = Reporter(call, replica, buffer, health)
    reporter.start()
    try:
        handle, context, awaitable = load_replica(job, call, buffer)

        def log_error(error_id: str, text: str) -> None:
            context.logger.error("error %s in the handler:\n%s", error_id, text.rstrip())

        app = ServeApp(handle, log_error, workers=int(job.get("workers") or 4),
                       awaitable=awaitable)
        config = uvicorn.Config(app, host=host, port=int(bind_port), log_config=None,
                                access_log=False, lifespan="off", log_level="warning",
                                server_header=False)
        server = uvicorn.Server(config)
        try:
            server.run()
        except SystemExit:  # uvicorn exits when it cannot bind; its reason is in the logs
            raise RuntimeError(f"uvicorn could not serve on {host}:{bind_port}: "
                               f"{buffer_tail(buffer)}") from None
        return health()
    finally:
        reporter.stop()
        if app is not None:
            app.workers.shutdown()
        sys.stdout, sys.stderr = saved


def buffer_tail(buffer: LogBuffer) -> str:
    """What was logged since the last flush (it is also sent to the host)."""
    text = buffer.take()
    buffer.write(text)
    return text.strip().splitlines()[-1] if text.strip() else "see the run's logs"
