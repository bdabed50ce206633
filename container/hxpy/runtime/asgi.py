"""The ASGI application a serve run's replica runs under uvicorn: each HTTP request becomes
an :class:`Event`, the handler is called with it (and the replica's ``context``), and what it
returns becomes the response (:func:`to_response`). A plain ``def`` handler runs in a worker
thread (:class:`Workers`), so one that blocks holds up no other request; an ``async def``
handler is awaited on the event loop, with no thread hop at all.

Nothing here imports uvicorn: the app is plain ASGI 3, testable with no server at all.

* A request the app cannot take (a body over the limit, a non-HTTP scope) is a 4xx with a
  plain-text reason; a handler may raise :class:`BadRequest` for its own 4xx.
* A handler exception is a 500 whose body is ``{"error": "internal error", "error_id": ID}``;
  the traceback goes to the run's logs under that id, never to the client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import secrets
import threading
import traceback
from typing import Any, Callable

__all__ = ["BadRequest", "Event", "Response", "ServeApp", "Stats", "Workers", "to_response"]

Headers = list[tuple[bytes, bytes]]

DEFAULT_MAX_BODY = 16 << 20  # bytes of request body a replica accepts


class BadRequest(Exception):
    """Raise in a handler to answer ``status`` (a 4xx) with ``message`` as the body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Response:
    """A response with its own status, headers and content type (nuclio's
    ``context.Response``)."""

    def __init__(self, body: Any = b"", headers: dict[str, str] | None = None,
                 content_type: str | None = None, status_code: int = 200) -> None:
        self.body = body
        self.headers = dict(headers or {})
        self.content_type = content_type
        self.status_code = status_code


class Event:
    """One HTTP request, as the handler sees it (nuclio's ``event``).

    Attributes:
        body: the request body (bytes).
        headers: header name (as sent) -> value; a name sent twice keeps the last value.
        method: ``GET``, ``POST``, ...
        path: the URL path.
        fields: the query string's fields (name -> value; the last one of a repeated name).
        content_type: the Content-Type header ('' when none).
        id: this request's number in the replica.
    """

    __slots__ = ("body", "headers", "method", "path", "fields", "content_type", "id",
                 "trigger")

    def __init__(self, body: bytes, headers: dict[str, str], method: str, path: str,
                 fields: dict[str, str]) -> None:
        self.body = body
        self.headers = headers
        self.method = method
        self.path = path
        self.fields = fields
        self.content_type = next((value for name, value in headers.items()
                                  if name.lower() == "content-type"), "")
        self.id = next(_event_ids)  # a counter: a random id would cost a syscall a request
        self.trigger = "http"

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            BadRequest: it is not JSON (the client gets a 400 saying so).
        """
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None

    def __repr__(self) -> str:
        return f"<Event {self.method} {self.path} {len(self.body)} bytes>"


_event_ids = itertools.count(1)


class Stats:
    """Counters of one replica. Only the event loop's thread counts (no lock); the reporter
    reads a snapshot that may be one request behind."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0  # 5xx answers
        self.rejected = 0  # 4xx answers

    def count(self, status: int) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.rejected += 1

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "errors": self.errors, "rejected": self.rejected}


_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]
_BYTES = [(b"content-type", b"application/octet-stream")]


def to_response(value: Any) -> tuple[int, Headers, bytes]:
    """``(status, headers, body)`` for what a handler returned: str (text), bytes, dict or
    list (JSON), None (an empty 200), a :class:`Response`, or ``(body, status)`` /
    ``(body, status, headers)``.

    Raises:
        TypeError: anything else, or a status or headers of the wrong kind.
    """
    if isinstance(value, tuple):
        if len(value) not in (2, 3):
            raise TypeError(f"the handler returned a tuple of {len(value)}; return (body, "
                            "status) or (body, status, headers)")
        return _with(value[0], value[1], value[2] if len(value) == 3 else None, None)
    if isinstance(value, Response):
        return _with(value.body, value.status_code, value.headers, value.content_type)
    return _body(value)


def _with(body: Any, status: Any, headers: Any, content_type: str | None
          ) -> tuple[int, Headers, bytes]:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise TypeError(f"the response status must be an int from 100 to 599, not {status!r}")
    if headers is not None and not isinstance(headers, dict):
        raise TypeError(f"the response headers must be a dict, not {type(headers).__name__}")
    _, base, encoded = _body(body)
    extra = [(str(name).lower().encode("latin-1"), str(val).encode("latin-1"))
             for name, val in (headers or {}).items()]
    if content_type:
        extra.append((b"content-type", content_type.encode("latin-1")))
    named = {name for name, _ in extra}
    return status, [h for h in base if h[0] not in named] + extra, encoded


def _body(value: Any) -> tuple[int, Headers, bytes]:
    if isinstance(value, str):
        return 200, _TEXT, value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 200, _BYTES, bytes(value)
    if value is None:
        return 200, [], b""
    if isinstance(value, (dict, list, int, float, bool)):
        try:
            return 200, _JSON, json.dumps(value).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the handler returned a {type(value).__name__} that is not "
                            f"JSON: {exc}") from None
    raise TypeError(f"the handler returned a {type(value).__name__}; return str, bytes, "
                    "dict, list, None, a Response, or (body, status[, headers])")


class Workers:
    """Threads that run a plain ``def`` handler for the event loop, fed by one queue.

    A request costs one queue put and one ``call_soon_threadsafe``. ``run_in_executor``
    chains a concurrent.futures Future to an asyncio one through callbacks and a lock, which
    measured about 75 µs more per request on a 2-core VM (5.9k against 8.8k requests/s).
    The threads start with the first request and end with :meth:`shutdown`.
    """

    def __init__(self, count: int, name: str = "hxpy-serve") -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, call: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        """``call(arg)`` in a worker thread; a future of the running loop for its result
        (or its exception, though the app's ``call`` answers every failure itself)."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"{self._name}-{index}",
                                              daemon=True) for index in range(self._count)]
            for thread in self._threads:
                thread.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((call, arg, future, loop))
        return future

    def shutdown(self) -> None:
        """Let each thread end once the requests queued before this are answered."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            call, arg, future, loop = job
            try:
                outcome, failed = call(arg), False
            except BaseException as exc:  # a broken contract must not leave a request hanging
                outcome, failed = exc, True
            try:
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:  # the loop has closed: the server is going away
                return


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():  # cancelled meanwhile (the client went away)
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class ServeApp:
    """The ASGI app of one replica (see the module docstring).

    Args:
        call: calls the handler with one :class:`Event`; runs in a worker thread, or, when
            ``awaitable``, returns what the event loop awaits.
        log_error: records an error id and a traceback in the run's logs.
        workers: threads the handler may run in at once.
        max_body: bytes of request body accepted (more: 413).
        awaitable: the handler is ``async def``.
    """

    def __init__(self, call: Callable[[Event], Any], log_error: Callable[[str, str], None],
                 workers: int = 4, max_body: int = DEFAULT_MAX_BODY,
                 awaitable: bool = False) -> None:
        self._call = call
        self._awaitable = awaitable
        self._log_error = log_error
        self._max_body = max_body
        self.workers = Workers(workers)
        self.stats = Stats()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":  # websockets: refused before accept
            await send({"type": "websocket.close", "code": 1003})
            return
        body = await self._read_body(scope, receive)
        if body is None:
            return
        if isinstance(body, tuple):
            status, headers, payload = body
        else:
            event = Event(body, _headers(scope), scope["method"], scope["path"],
                          _fields(scope.get("query_string") or b""))
            if self._awaitable:
                status, headers, payload = await self._answer_awaited(event)
            else:
                status, headers, payload = await self.workers.submit(self._answer, event)
        self.stats.count(status)
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, event: Event) -> tuple[int, Headers, bytes]:
        """In a worker thread: the handler's answer as a response. Even a ``SystemExit``
        from the handler is a 500: nothing may escape a worker thread unanswered."""
        try:
            return to_response(self._call(event))
        except BaseException as exc:
            return self._failure(exc)

    async def _answer_awaited(self, event: Event) -> tuple[int, Headers, bytes]:
        """On the event loop: an ``async def`` handler's answer as a response."""
        try:
            return to_response(await self._call(event))
        except Exception as exc:
            return self._failure(exc)

    def _failure(self, exc: BaseException) -> tuple[int, Headers, bytes]:
        """A :class:`BadRequest`'s 4xx, or a 500 with an error id (the traceback logged)."""
        if isinstance(exc, BadRequest):
            status = exc.status if 400 <= exc.status <= 499 else 400
            return status, _TEXT, str(exc).encode("utf-8")
        error_id = secrets.token_hex(6)
        self._log_error(error_id, _handler_traceback(exc))
        body = json.dumps({"error": "internal error", "error_id": error_id})
        return 500, _JSON, body.encode("utf-8")

    async def _read_body(self, scope: dict[str, Any], receive: Callable[..., Any]
                         ) -> bytes | tuple[int, Headers, bytes] | None:
        """The request body; a 4xx to answer instead; None when the client left."""
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return 400, _TEXT, b"Content-Length is not a number"
            if int(declared) > self._max_body:
                return 413, _TEXT, f"the body is over {self._max_body} bytes".encode()
        parts = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left mid-body: the handler must not see a part
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return 413, _TEXT, f"the body is over {self._max_body} bytes".encode()
            parts.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(parts)


async def _lifespan(receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers") or ()}


def _header(scope: dict[str, Any], wanted: bytes) -> str | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == wanted:
            return str(value.decode("latin-1"))
    return None


def _fields(query: bytes) -> dict[str, str]:
    if not query:
        return {}
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


def _handler_traceback(exc: BaseException) -> str:
    """The traceback from the handler's frame on (the runtime's call of it left out)."""
    tb = exc.__traceback__
    frames = traceback.extract_tb(tb)
    skip = 0
    for index, frame in enumerate(frames):
        if not frame.filename.endswith(("hxpy/runtime/asgi.py", "hxpy/runtime/serve.py")):
            skip = index
            break
    lines = traceback.format_list(frames[skip:]) + traceback.format_exception_only(type(exc),
                                                                                    exc)
    return "Traceback (most recent call last):\n" + "".join(lines)
