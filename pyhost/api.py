"""``py()`` and the process-wide helpers around it: persistent sessions, warm pools, close."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from typing import Any

from .launcher import DEFAULT_IO, Launcher
from .pool import WarmPool, close_all_pools, register
from .session import Session, live_sessions

__all__ = ["close_all", "py", "sessions", "warm_pool"]

log = logging.getLogger("pyhost")

_default_launcher: Launcher | None = None
_persistent: dict[str, Session] = {}
_lock = threading.Lock()


def default_launcher() -> Launcher:
    """The process-wide Docker launcher, made on first use."""
    global _default_launcher
    with _lock:
        if _default_launcher is None:
            from .docker_launcher import DockerLauncher

            _default_launcher = DockerLauncher()
            _close_on_sigterm()
        return _default_launcher


def py(*, launcher: Launcher | None = None, image: str | None = None,
       io: str | os.PathLike[str] | None = DEFAULT_IO, io_host_path: str | None = None,
       io_volume: str | None = None, timeout: float | None = 300.0, log_level: str = "WARNING",
       env: dict[str, str] | None = None, mem_limit: str | int | None = "1g",
       cpus: float | None = None, network: str | None = None,
       publish_address: str = "127.0.0.1", persist: str | None = None,
       **options: Any) -> Session:
    """Open a session: a sandboxed Python whose container starts at the first ``eval``.

    Where the engine is decides how the session is reached (see "Deployment" in the README):
    a local engine mounts a Unix socket into a container with no network; with ``network=``
    (pyhost itself in a container, Docker-in-Docker) the session joins that network and is
    reached over TCP; a remote engine (``DOCKER_HOST=tcp://`` or ``ssh://``) publishes the
    session's port on ``publish_address``.

    Args:
        launcher: where containers run (default: the Docker engine of ``DOCKER_HOST``).
        image: session image (default: the locally built ``hxpy:latest``).
        io: directory mounted read-write at ``/io`` (created if missing); None for none. On a
            remote engine the default ``./io`` is left out, and a directory passed here is
            an error (use ``io_volume``).
        io_host_path: the io directory as the engine host sees it, when that differs (by
            default it is found through this container's mounts when pyhost runs in one).
        io_volume: a Docker volume mounted at ``/io`` instead of a directory (made by the
            engine if missing); works with remote engines.
        timeout: seconds each eval may run (None: no limit).
        log_level: the server's log level (its logs go to the container's output).
        env: extra environment variables for the server.
        mem_limit: memory limit, e.g. ``"1g"`` (no swap beyond it).
        cpus: CPU limit, e.g. ``1.5``.
        network: a user-defined Docker network that this process's container is on too; the
            session joins it instead of ``none`` (use an ``internal`` network).
        publish_address: for a remote engine, the IPv4 address of the engine host the
            session's port is published on (loopback by default; ``0.0.0.0`` publishes on
            every address and connects to the engine's host name).
        persist: a key: every ``py(persist=key)`` in this process returns the same live
            session, which ``eval`` does not close (the options of the first call win).
        **options: ``max_frame``, ``output_cap``, ``grace``, and ``spin``: seconds each end
            polls for the other's next message before it sleeps (default 50 µs; 0 never
            polls). In a hot loop of small evals the answer usually comes within the poll,
            which saves a sleep and a wake-up per message; a slow peer turns polling off by
            itself (see ``hxpy.wire.FrameReader``).

    The options are checked when the container starts, at the first ``eval``.

    Raises:
        ValueError: both ``io`` and ``io_volume`` were given, or ``publish_address`` is not
            an IPv4 address.
        PyHostError: ``network`` names no network of the engine; ``io`` (or, without
            ``network``, the socket directory) cannot be mounted by the engine: a directory in
            this container's own filesystem, or any local directory for a remote engine.
    """
    def make() -> Session:
        return Session(launcher or default_launcher(), image=image, io=io,
                       io_host_path=io_host_path, io_volume=io_volume, timeout=timeout,
                       log_level=log_level, env=env, mem_limit=mem_limit, cpus=cpus,
                       network=network, publish_address=publish_address, persist=persist,
                       **options)

    if persist is None:
        return make()
    with _lock:
        session = _persistent.get(persist)
    if session is not None and not session.closed:
        return session
    session = make()
    with _lock:
        existing = _persistent.get(persist)
        if existing is not None and not existing.closed:
            return existing
        _persistent[persist] = session
    return session


def sessions() -> list[Session]:
    """Open sessions of this process: those with a running container, and persistent ones."""
    with _lock:
        persistent = [s for s in _persistent.values() if not s.closed]
    live = live_sessions()
    return live + [s for s in persistent if s not in live]


def close_all() -> None:
    """Close every session and warm pool of this process."""
    close_all_pools()
    for session in sessions():
        session.close()
    with _lock:
        _persistent.clear()


def warm_pool(size: int, **options: Any) -> WarmPool:
    """Keep ``size`` started, handshaken servers for ``py(**options)``.

    ``py()`` with the same options then takes a ready server instead of starting one. Servers
    are never reused: each is handed to one session, and the pool starts another.
    """
    template = py(**options)
    pool = WarmPool(size, template._pool_key(),
                    lambda: template._open_fresh(secrets.token_hex(6)))
    return register(pool)


def _close_on_sigterm() -> None:
    """Close sessions on SIGTERM, then let the previous disposition act.

    Installed only from the main thread and only over the default handler or one of the
    application's (which is chained), never over SIG_IGN.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        log.info("SIGTERM: closing %d session(s)", len(sessions()))
        try:
            close_all()
        finally:
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
