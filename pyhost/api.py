"""``py()``: the one call most users need."""

from __future__ import annotations

import os
from typing import Any

from .launcher import Launcher
from .session import Session

__all__ = ["py"]

_default_launcher: Launcher | None = None


def default_launcher() -> Launcher:
    """The process-wide Docker launcher, made on first use."""
    global _default_launcher
    if _default_launcher is None:
        from .docker_launcher import DockerLauncher

        _default_launcher = DockerLauncher()
    return _default_launcher


def py(*, launcher: Launcher | None = None, image: str | None = None,
       io: str | os.PathLike[str] | None = "io", io_host_path: str | None = None,
       timeout: float | None = 300.0, log_level: str = "WARNING",
       env: dict[str, str] | None = None, mem_limit: str | int | None = "1g",
       cpus: float | None = None, network: str | None = None, **options: Any) -> Session:
    """Open a session: a sandboxed Python whose container starts at the first ``eval``.

    Args:
        launcher: where containers run (default: the local Docker engine).
        image: session image (default: the locally built ``hxpy:latest``).
        io: host directory mounted read-write at ``/io`` (created if missing); None for none.
        io_host_path: the io directory as the engine sees it, when that differs.
        timeout: seconds each eval may run (None: no limit).
        log_level: the server's log level (its logs go to the container's output).
        env: extra environment variables for the server.
        mem_limit: memory limit, e.g. ``"1g"`` (no swap beyond it).
        cpus: CPU limit, e.g. ``1.5``.
        network: a Docker network to join instead of ``none`` (not available yet).
        **options: ``max_frame``, ``output_cap``, ``grace``.

    Raises:
        NotImplementedError: ``network`` was given.
    """
    return Session(launcher or default_launcher(), image=image, io=io,
                   io_host_path=io_host_path, timeout=timeout, log_level=log_level, env=env,
                   mem_limit=mem_limit, cpus=cpus, network=network, **options)
