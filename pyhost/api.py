"""``py()`` and the process-wide helpers around it: persistent sessions, warm pools, close."""

from __future__ import annotations

import secrets
from typing import Any

from .launchers import get_launcher
from .launchers.base import Launcher
from .session import registry
from .session.blocking import Session
from .session.options import SessionOptions
from .session.pool import WarmPool, close_all_pools, register

__all__ = ["close_all", "py", "sessions", "warm_pool"]


def py(options: SessionOptions | None = None, *, launcher: Launcher | str = "docker",
       **kwargs: Any) -> Session:
    """Open a session: a sandboxed Python whose container starts at the first ``eval``.

    Where the engine is decides how the session is reached (see "Deployment" in the README):
    a local engine mounts a Unix socket into a container with no network; with ``network=``
    (pyhost itself in a container, Docker-in-Docker) the session joins that network and is
    reached over TCP; a remote engine (``DOCKER_HOST=tcp://`` or ``ssh://``) publishes the
    session's port on ``publish_address``.

    Args:
        options: a :class:`~pyhost.session.options.SessionOptions`; keyword arguments
            change it (or the defaults).
        launcher: where servers run: ``"docker"`` (the sandbox, default), ``"process"`` (a
            local process, NOT a sandbox: development and tests), ``"pkg.module:Class"``, or
            a :class:`~pyhost.launchers.base.Launcher`.
        **kwargs: any field of ``SessionOptions``: ``image``, ``io``, ``io_host_path``,
            ``io_volume``, ``timeout``, ``log_level``, ``env``, ``mem_limit``, ``cpus``,
            ``network``, ``publish_address``, ``max_frame``, ``output_cap``, ``spin``,
            ``grace``, ``persist`` (each documented there).

    Options are checked here, before anything starts; what needs the engine (does the
    network exist, can it mount ``io``) is checked when the container starts, at the first
    ``eval``, before anything is made for it.

    Raises:
        ConfigurationError: an option is unknown, out of range, or one the launcher cannot
            honour (e.g. both ``io`` and ``io_volume``; ``publish_address`` not IPv4;
            ``network="host"``).
    """
    def make() -> Session:
        return Session(launcher, SessionOptions.from_kwargs(options, **kwargs))

    registry.close_on_sigterm()
    key = kwargs.get("persist", options.persist if options else None)
    if key is None:
        return make()
    return registry.persistent(key, make)


def sessions() -> list[Session]:
    """Open sessions of this process: those with a running container, and persistent ones."""
    return registry.sessions()


def close_all() -> None:
    """Close every session and warm pool of this process."""
    close_all_pools()
    registry.close_all()


def warm_pool(size: int, options: SessionOptions | None = None, *,
              launcher: Launcher | str = "docker", **kwargs: Any) -> WarmPool:
    """Keep ``size`` started, handshaken servers for ``py(options, **kwargs)``.

    ``py()`` with the same options then takes a ready server instead of starting one. Servers
    are never reused: each is handed to one session, and the pool starts another.
    """
    template = Session(get_launcher(launcher), SessionOptions.from_kwargs(options, **kwargs))
    pool = WarmPool(size, template._pool_key(),
                    lambda: template._open_fresh(secrets.token_hex(6)))
    return register(pool)
