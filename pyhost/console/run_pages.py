"""A run's page, its log (whole, or followed live with Server-Sent Events) and its Stop."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from ..errors import ConfigurationError
from ..runtime.run_log import LogFollower, log_tail
from ..runtime.runs import FINAL, Run
from .charts import line_chart
from .render import page
from .state import console_of

__all__ = ["log_events", "log_text", "run", "stop"]

TAIL = 256 * 1024      # bytes of the log a page shows; the whole log is a link away
EVENT_MOST = TAIL      # bytes of log one event carries; more is skipped, with a note
FOLLOW_PERIOD = 0.1    # seconds between two looks at a followed log
_FORM_MOST = 4096      # bytes of a stop form's body
NOTICES = {
    "stopped": "Stopped.",
    "ended": "The run had already ended: nothing was stopped.",
    "elsewhere": "This run executes in a caller's own process; stop it there.",
}


def run(request: Request) -> HTMLResponse:
    """Everything about one run, its log's last part, and (active) a live follow."""
    runtime = console_of(request).runtime
    found = Run(runtime.get("run", request.path_params["run_id"]), runtime)
    status = found.status
    spec = found.spec
    text, start, end = log_tail(found.log_directory(), found.log_cap, TAIL)
    timings = sorted((status.timings or {}).items(), key=lambda item: item[1])
    metrics = found.metrics()
    return page(request, "run.html", run=found, spec=spec, status=status,
                state=status.state, timings=timings, log=text, log_start=start, log_end=end,
                charts=[line_chart(name, series) for name, series in sorted(metrics.items())],
                parameters=spec.get("parameters") or {}, inputs=spec.get("inputs") or {},
                secrets=_secret_names(spec.get("secrets")),
                resources=_resources(spec), service=status.service or {},
                replicas=status.to_dict().get("replicas") or [],
                active=status.state not in FINAL,
                notice=NOTICES.get(request.query_params.get("notice", "")))


def log_text(request: Request) -> PlainTextResponse:
    """The run's whole log as kept (see ``Run.logs``)."""
    runtime = console_of(request).runtime
    found = Run(runtime.get("run", request.path_params["run_id"]), runtime)
    return PlainTextResponse(found.logs(), headers={
        "content-disposition": f'inline; filename="{found.id}.log"'})


def log_events(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``log`` (text, as JSON) from the byte offset ``from`` on, ``state``
    when it changes, ``end`` once the run has ended and its last lines were sent."""
    runtime = console_of(request).runtime
    found = Run(runtime.get("run", request.path_params["run_id"]), runtime)
    try:
        offset = max(int(request.query_params.get("from", "0")), 0)
    except ValueError:
        raise ConfigurationError("from= is a byte offset into the log") from None
    follower = LogFollower(found.log_directory(), found.log_cap, offset)

    async def events() -> AsyncIterator[str]:
        state = None
        while not await request.is_disconnected():
            now = (await run_in_threadpool(runtime.get, "run", found.id)).state
            text = await run_in_threadpool(follower.read)
            if text:
                yield _event("log", _bounded(text))
            if now != state:
                state = now
                yield _event("state", now)
            if now in FINAL:
                rest = await run_in_threadpool(follower.read)
                if rest:
                    yield _event("log", _bounded(rest))
                yield _event("end", now)
                return
            await asyncio.sleep(FOLLOW_PERIOD)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


async def stop(request: Request) -> Response:
    """Stop the run (POST, from a page of this console: its CSRF value and origin)."""
    console = console_of(request)
    body = b""
    async for chunk in request.stream():  # a urlencoded form of one field: a few bytes
        body += chunk
        if len(body) > _FORM_MOST:
            return PlainTextResponse("413: that is no stop form", 413)
    given = dict(parse_qsl(body.decode("latin-1"))).get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(),
                                                             console.csrf.encode()):
        return PlainTextResponse("403: the form's CSRF value is missing or wrong", 403)
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return PlainTextResponse("403: a stop must come from this console's own page", 403)
    found = Run(console.runtime.get("run", request.path_params["run_id"]), console.runtime)
    if found.status.state in FINAL:
        notice = "ended"
    else:
        try:
            await run_in_threadpool(found.stop)
            notice = "stopped"
        except ConfigurationError:
            notice = "elsewhere"
    url = request.url_for("run", run_id=found.id).include_query_params(notice=notice)
    return RedirectResponse(str(url), 303)


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _bounded(text: str) -> str:
    if len(text) <= EVENT_MOST:
        return text
    return (f"[... {len(text) - EVENT_MOST} characters not shown here: the whole log is "
            f"behind the 'whole log' link ...]\n" + text[-EVENT_MOST:])


def _secret_names(secrets: Any) -> list[str]:
    """Secrets by name alone (a run records no value; a mapping is shown by its keys)."""
    if isinstance(secrets, dict):
        return sorted(str(name) for name in secrets)
    if isinstance(secrets, (list, tuple)):
        return sorted(str(name) for name in secrets)
    return []


def _resources(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: spec[name] for name in ("resources", "node_selector", "affinity",
                                          "tolerations", "replicas", "launcher", "image",
                                          "python_version") if spec.get(name)}
