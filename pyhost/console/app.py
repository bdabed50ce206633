"""The console's ASGI application, and who may use it.

* Bound to a loopback address, it asks no token, but it answers only requests whose
  ``Host`` is a loopback name (a page of another site that rebinds its name to 127.0.0.1
  gets 400, not the catalog).
* Bound to any other address, every request needs the token (printed at start, or given):
  ``?token=`` once (it is then kept in an HttpOnly, SameSite=Strict cookie and dropped from
  the URL), or an ``Authorization: token ...`` header. Compared in constant time; without it
  the answer is 401.
* The one action, Stop, is a POST carrying the page's CSRF value (a secret of this server
  process, which another site cannot read) from a page of the same origin.
* Every page is sent with a Content-Security-Policy that allows this server's own script
  and style only: even a string that escaped the templates' escaping could not run.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from pygments.formatters import HtmlFormatter
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError, NotInCatalog
from . import entity_pages, pages, render, run_pages
from .state import Console

__all__ = ["Console", "create_app", "is_loopback"]

COOKIE = "pyhost_console_token"
HERE = Path(__file__).parent
_LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make a form's Origin "null"
    (b"x-frame-options", b"DENY"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(console: Console, host: str = "127.0.0.1") -> Starlette:
    """The console for ``console.runtime``, as bound to ``host``.

    Raises:
        ValueError: ``host`` is not a loopback address and there is no token.
    """
    if console.token is None and not is_loopback(host):
        raise ValueError(f"the console on {host} (not a loopback address) needs a token")
    routes = [
        Route("/", pages.projects, name="projects"),
        Route("/projects/{project}", pages.project, name="project"),
        Route("/projects/{project}/runs", pages.runs, name="runs"),
        Route("/projects/{project}/functions/{name}", pages.function, name="function"),
        Route("/projects/{project}/{plural:str}", entity_pages.entities, name="entities"),
        Route("/runs/{run_id}", run_pages.run, name="run"),
        Route("/runs/{run_id}/log", run_pages.log_text, name="run_log"),
        Route("/runs/{run_id}/log/follow", run_pages.log_events, name="run_log_follow"),
        Route("/runs/{run_id}/stop", run_pages.stop, methods=["POST"], name="run_stop"),
        Route("/entities/{entity_type}/{entity_id}", entity_pages.entity, name="entity"),
        Route("/entities/{entity_type}/{entity_id}/files/{path:path}", entity_pages.download,
              name="download"),
        Route("/highlight.css", _highlight_css, name="highlight_css"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(_Guard, console=console)]
    if console.token is None:  # loopback: a rebound name is not one of ours
        middleware.insert(0, Middleware(TrustedHostMiddleware,
                                        allowed_hosts=sorted({*_LOOPBACK_NAMES, host})))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        NotInCatalog: render.not_found, ConfigurationError: render.bad_request})
    app.state.console = console
    return app


def _highlight_css(request: Request) -> Response:
    """The colours of highlighted source (Pygments' default style), made here."""
    return Response(HtmlFormatter(cssclass="highlight").get_style_defs(".highlight"),
                    media_type="text/css")


class _Guard:
    """The token, then the security headers on every answer."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = self.console.token
        if token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if _same(query.get("token"), token):  # once: into a cookie, out of the URL
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                answer: Response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""),
                                                    303)
                answer.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                await answer(scope, receive, self._secured(send))
                return
            if not _same(_given_token(Headers(scope=scope)), token):
                answer = PlainTextResponse(
                    "401: this console needs its token: open the URL it printed at start "
                    "(…/?token=...), or send 'Authorization: token ...'", 401)
                await answer(scope, receive, self._secured(send))
                return
        await self.app(scope, receive, self._secured(send))

    @staticmethod
    def _secured(send: Send) -> Send:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        return secured


def _given_token(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() in ("token", "bearer") and value:
        return value.strip()
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
