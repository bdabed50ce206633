"""The one door to the Docker engine: a shared SDK client, and the one translator of its
errors.

Every call into the docker SDK runs inside :func:`engine_errors`, which turns what the SDK and
``requests`` raise into pyhost's errors (``raise ... from exc``, the cause kept), so no
``docker.errors`` exception reaches a user. Call sites still catch the few answers that mean
something to them (a 404 is "not there", a 409 "already going") before the translator sees
them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests.exceptions

from ...errors import EngineUnavailable, ImageNotFound, short
from .engine_kind import rlimit_advice

__all__ = ["ENGINE_ERRORS", "docker_client", "engine_errors", "engine_said", "inspect_image"]

# What the SDK raises when the engine fails or refuses: its own errors and its transport's.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

_PING_VERSION = "1.41"  # the client the ping is sent with; no request of it is versioned
_UNIX_BASE_URL = "http+docker://localhost"  # what docker-py makes of any unix:// host
_client_lock = threading.Lock()
_client: docker.DockerClient | None = None


@contextlib.contextmanager
def engine_errors(doing: str) -> Iterator[None]:
    """Translate engine errors raised while ``doing`` (e.g. "cannot remove container x").

    Raises:
        ImageNotFound: the engine has no such image (the message says how to build it).
        EngineUnavailable: any other engine or transport failure.
    """
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{doing}: the image is not present ({short(exc)}); run "
                            "`pyhost image build`") from exc
    except docker.errors.APIError as exc:
        said = engine_said(exc)
        raise EngineUnavailable(f"{doing}: {short(said)}{rlimit_advice(said)}") from exc
    except ENGINE_ERRORS as exc:
        raise EngineUnavailable(f"{doing}: {short(exc)}") from exc


def engine_said(exc: docker.errors.APIError) -> str:
    """What the engine answered, without the SDK's request URL (which only pushes the
    engine's words, the cause, further out): ``HTTP 500: crun: error setting rlimits ...``."""
    explanation = str(exc.explanation or "").strip()
    if exc.status_code is None or not explanation:
        return str(exc)
    return f"HTTP {exc.status_code}: {explanation}"


def docker_client() -> docker.DockerClient:
    """One shared SDK client for this process (it is thread-safe and pools connections).

    Raises:
        EngineUnavailable: no engine answers.
    """
    global _client
    with _client_lock:
        if _client is None:
            with engine_errors("no Docker engine answers (run `pyhost engine up`, or set "
                               "DOCKER_HOST to an engine you can reach)"):
                _client = _connect()
        return _client


def _connect() -> docker.DockerClient:
    """A client speaking ``DOCKER_API_VERSION``, or the version the engine's ping names: the
    SDK's own negotiation costs a ``/version`` round trip more (about 15 ms a process, which
    every supervisor of a detached run would pay)."""
    wanted = os.environ.get("DOCKER_API_VERSION") or None
    client = _local_untrusting(docker.from_env(timeout=60, version=wanted or _PING_VERSION))
    answer = client.api.get(client.api.base_url + "/_ping")  # not versioned
    answer.raise_for_status()
    engine = answer.headers.get("Api-Version")
    if wanted or engine == _PING_VERSION:
        return client
    client.close()
    return _local_untrusting(docker.from_env(timeout=60, version=engine or "auto"))


def _local_untrusting(client: docker.DockerClient) -> docker.DockerClient:
    """On a Unix socket, stop ``requests`` reading the environment at every request.

    With ``trust_env`` (the default), each request walks all of ``os.environ`` twice for
    proxy settings and looks for a ``.netrc``: about 0.4 ms of CPU a request, four requests
    to a cold open. On a Unix socket none of it can apply: docker-py's Unix adapter ignores
    proxies, there is no TLS to find a CA bundle for, and the engine takes no HTTP auth. A
    TCP or SSH engine keeps the environment (a proxy may be how it is reached).
    """
    if client.api.base_url == _UNIX_BASE_URL:
        client.api.trust_env = False
    return client


def inspect_image(client: docker.DockerClient, reference: str) -> dict[str, Any] | None:
    """The engine's description of an image, or None when it has no such image.

    Raises:
        EngineUnavailable: the engine failed or refused.
    """
    with engine_errors(f"the engine failed to inspect {reference}"):
        try:
            return dict(client.api.inspect_image(reference))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):  # malformed or unknown reference: not present
                return None
            raise
