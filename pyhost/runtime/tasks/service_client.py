"""``run.invoke()``: one HTTP call to a serve run's service, spread over its replicas (round
robin), over keep-alive connections (urllib3's pool, shared by the process).

A replica that cannot be reached (restarting, just killed) is skipped for the next one; the
call fails only when none answers. urllib3's errors never leave this module.
"""

from __future__ import annotations

import itertools
import json as jsonlib
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import urllib3
import urllib3.exceptions

from ...errors import ConfigurationError, ServiceUnavailable

__all__ = ["ServiceResponse", "forget", "invoke", "live_urls", "remember"]

_pool: urllib3.PoolManager | None = None
_pool_lock = threading.Lock()
_turns = itertools.count()
# The services this process supervises: run id -> the URLs of its listening replicas.
_live: dict[str, Callable[[], list[str]]] = {}
_live_lock = threading.Lock()


def remember(run_id: str, urls: Callable[[], list[str]]) -> None:
    """Note a service this process supervises (its URLs are then read live)."""
    with _live_lock:
        _live[run_id] = urls


def forget(run_id: str) -> None:
    with _live_lock:
        _live.pop(run_id, None)


def live_urls(run_id: str) -> list[str] | None:
    """The URLs of a service this process supervises; None for another process's."""
    with _live_lock:
        urls = _live.get(run_id)
    return None if urls is None else urls()


class ServiceResponse:
    """A service's answer: ``status``, ``headers`` (a dict), ``body`` (bytes), ``text``,
    ``json()``, and ``url`` (the replica that answered)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: it is not JSON.
        """
        return jsonlib.loads(self.body)

    def __repr__(self) -> str:
        return f"<ServiceResponse {self.status} from {self.url}>"


def invoke(run_id: str, urls: list[str], method: str | None = None, path: str = "/", *,
           json: Any = None, body: bytes | str | None = None,
           headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
           timeout: float = 30.0) -> ServiceResponse:
    """Call the service of run ``run_id`` at one of ``urls`` (the next in turn); see
    :meth:`pyhost.runtime.Run.invoke`.

    Raises:
        ConfigurationError: both ``json`` and ``body``, or a path without a leading '/'.
        ServiceUnavailable: no replica answered.
    """
    if json is not None and body is not None:
        raise ConfigurationError("invoke(): pass json= or body=, not both")
    if not path.startswith("/"):
        raise ConfigurationError(f"invoke(path={path!r}): a path starts with '/'")
    sent_headers = dict(headers or {})
    payload: bytes | None = body.encode("utf-8") if isinstance(body, str) else body
    if json is not None:
        payload = jsonlib.dumps(json).encode("utf-8")
        sent_headers.setdefault("Content-Type", "application/json")
    method = (method or ("POST" if payload is not None else "GET")).upper()
    target = path + (f"?{urlencode(params)}" if params else "")
    if not urls:
        raise ServiceUnavailable(f"run {run_id} has no replica listening")
    start = next(_turns)
    failures = []
    for attempt in range(len(urls)):
        url = urls[(start + attempt) % len(urls)]
        try:
            answer = _manager().request(method, url + target, body=payload,
                                        headers=sent_headers, retries=False,
                                        timeout=urllib3.Timeout(connect=5.0, read=timeout),
                                        preload_content=True)
        except (urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.ConnectTimeoutError) as exc:
            failures.append(f"{url}: {type(exc).__name__}")  # never sent: the next one
            continue
        except urllib3.exceptions.ProtocolError as exc:
            # The connection broke after the request may have reached the handler: only a
            # request that may be repeated goes to the next replica.
            if method not in _IDEMPOTENT:
                raise ServiceUnavailable(f"run {run_id}: {url}{target}: the connection broke "
                                         f"({exc}); the {method} may have been handled, so "
                                         "it is not sent again") from exc
            failures.append(f"{url}: {type(exc).__name__}")
            continue
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"run {run_id}: {url}{target}: {exc}") from exc
        return ServiceResponse(answer.status, dict(answer.headers), answer.data, url)
    raise ServiceUnavailable(f"run {run_id}: no replica answered ({'; '.join(failures)})")


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _manager() -> urllib3.PoolManager:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = urllib3.PoolManager(num_pools=32, maxsize=8, block=False)
        return _pool
