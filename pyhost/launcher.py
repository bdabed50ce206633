"""Lifecycle of session servers, kept apart from the conversation with them.

A :class:`Launcher` starts a server somewhere (a Docker container today; a Kubernetes pod
tomorrow) and answers where it listens, whether it still runs and why it ended; it stops it
and cleans up what it made. The session never learns what is behind it.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from hxpy import wire

from .transport import Endpoint

__all__ = ["DEFAULT_IO", "DefaultIO", "ExitStatus", "Instance", "LaunchSpec", "Launcher",
           "Owner"]


class DefaultIO(str):
    """The io directory nobody asked for: where it cannot be mounted (a remote engine) it
    is left out, while a directory the caller named is an error there."""


DEFAULT_IO = DefaultIO("io")


@dataclass(frozen=True)
class Owner:
    """Who made a container: used to find orphans once that process is gone."""

    host: str
    pid: int
    started: float  # process start, so a reused pid is not mistaken for us

    @classmethod
    def current(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()))


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a launcher needs to start one session server."""

    session_id: str
    key: str
    image: str | None = None
    io_dir: str | None = None
    io_host_path: str | None = None
    io_required: bool = True  # False for the default io dir: dropped where it cannot be mounted
    io_volume: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    mem_limit: str | int | None = "1g"
    cpus: float | None = None
    pids_limit: int = 256
    tmp_size: str = "64m"
    network: str | None = None
    publish_address: str = "127.0.0.1"
    log_level: str = "WARNING"
    max_frame: int = 1 << 30
    output_cap: int = 1 << 20
    spin: float = wire.DEFAULT_SPIN
    fault: str = ""


@dataclass(frozen=True)
class ExitStatus:
    """How a server ended."""

    exit_code: int | None
    oom_killed: bool = False
    error: str = ""
    logs: str = ""

    def describe(self) -> str:
        parts = []
        if self.oom_killed:
            parts.append("killed for running out of memory (OOM)")
        if self.exit_code is not None:
            signal_note = ""
            if self.exit_code > 128:
                signal_note = f", signal {self.exit_code - 128}"
            parts.append(f"exit code {self.exit_code}{signal_note}")
        if self.error:
            parts.append(self.error)
        text = "; ".join(parts) or "ended for an unknown reason"
        if self.logs.strip():
            text += "\nlast container output:\n" + self.logs.rstrip()
        return text


class Instance(abc.ABC):
    """One started server."""

    id: str
    endpoint: Endpoint

    @abc.abstractmethod
    def poll(self) -> ExitStatus | None:
        """None while it runs; how it ended otherwise."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> ExitStatus | None:
        """Wait up to ``timeout`` for it to end; None if it still runs."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop it at once (idempotent)."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Kill it if needed and remove everything made for it (idempotent)."""


class Launcher(abc.ABC):
    """Starts :class:`Instance` objects."""

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> Instance:
        """Start a server for ``spec``; it may not listen yet when this returns."""


def _process_start(pid: int) -> float:
    """Start time of ``pid`` in clock ticks since boot (Linux), or 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return float(fields[19])
    except (OSError, IndexError, ValueError):
        return 0.0


def owner_alive(owner: Owner) -> bool:
    """Whether the process that made something still runs (on this host)."""
    if owner.host != socket.gethostname():
        return True  # not ours to judge
    if owner.pid == os.getpid():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return owner.started == 0.0 or _process_start(owner.pid) == owner.started


def monotonic_deadline(seconds: float | None) -> float:
    return float("inf") if seconds is None else time.monotonic() + seconds
