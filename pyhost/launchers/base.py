"""The launcher interface: lifecycle of session servers, kept apart from the conversation.

A :class:`Launcher` starts a server somewhere (a sandboxed Docker container; a local process
for development; a Swarm task or a Kubernetes pod later) and answers where it listens, whether
it still runs and why it ended; it stops it and removes what it made. The session never
learns what is behind it: it sees a :class:`LaunchSpec` going in and an :class:`Instance`
with an :class:`Endpoint` coming out.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hxpy import wire

from ..errors import ConfigurationError
from .images import ImageBuilder

__all__ = ["KEY_FROM_STDIN", "Endpoint", "ExitStatus", "Instance", "LaunchSpec", "Launcher",
           "PublishedPort", "Volume", "as_mapping", "bind_env", "key_line", "server_env"]

#: ``HXPY_KEY_FROM`` telling the server to read its session key from its standard input: one
#: line (:func:`key_line`), written by the launcher and then closed. The key is never in the
#: server's environment or command line, so neither ``docker inspect`` nor
#: ``/proc/<pid>/environ`` shows it (docs/security.md, "Secrets and the session key").
KEY_FROM_STDIN = "stdin"


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens: ``kind`` is ``"unix"`` (address = path), ``"tcp"`` (address =
    ``(host, port)``) or ``"memory"`` (address = a listener name, for tests)."""

    kind: str
    address: str | tuple[str, int]

    def __str__(self) -> str:
        if isinstance(self.address, tuple):
            host, port = self.address
            return f"tcp://{host}:{port}"
        return f"{self.kind}://{self.address}"


@dataclass(frozen=True)
class Volume:
    """A mount of a session beyond ``/io``: a named engine volume (``source``), read-only
    unless asked, or a scratch ``tmpfs`` of ``size`` (e.g. ``"256m"``)."""

    kind: str  # "volume" or "tmpfs"
    target: str
    source: str = ""
    read_only: bool = True
    size: str | None = None


@dataclass(frozen=True)
class PublishedPort:
    """A port a server's own code listens on (a serve replica's HTTP port) and how the host
    reaches it: published on ``host_address`` at ``host_port`` (0: any free port), or, when
    ``host_address`` is None, not published (reached at the server's address on its
    network only)."""

    container_port: int
    host_address: str | None = "127.0.0.1"
    host_port: int = 0


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a launcher needs to start one session server.

    Built from the session's options (``pyhost.session.options.SessionOptions.launch_spec``);
    ``key`` is filled in by the handshake, fresh for each server.
    """

    session_id: str
    key: str = ""
    image: str | None = None
    io_dir: str | None = None
    io_required: bool = True  # False for the default io dir: dropped where it cannot be mounted
    env: Mapping[str, str] = field(default_factory=dict)
    mem_limit: str | int | None = "1g"
    cpus: float | None = None
    pids_limit: int = 256
    tmp_size: str = "64m"
    log_level: str = "WARNING"
    max_frame: int = wire.DEFAULT_MAX_FRAME
    output_cap: int = 1 << 20
    spin: float = wire.DEFAULT_SPIN
    fault: str = ""
    # Understood by the Docker launcher only; any other refuses them in check().
    io_host_path: str | None = None
    io_volume: str | None = None
    network: str | None = None
    publish_address: str = "127.0.0.1"
    volumes: tuple[Volume, ...] = ()
    # Where the server may be placed, in the DigitalHub/Kubernetes shapes: node labels it
    # needs (``{"disk": "ssd"}``), a node affinity, and the tolerations it has. Each launcher
    # translates them, and refuses in check() what it cannot express (one engine has no
    # other node to choose).
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, Any] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    # Ports the user code listens on (serve replicas); the Instance says where each is.
    ports: tuple[PublishedPort, ...] = ()
    # Remove the server's container as soon as it ends (a replica whose supervisor died).
    auto_remove: bool = False
    # name -> value for user code's environment, kept apart from ``env``: never in the
    # container's configuration. The host sends them over the channel after the handshake
    # (docs/protocol.md, "Secrets"), unless the launcher delivered them itself (a cluster's
    # own secrets: Instance.secrets_delivered). Never shown by ``repr``.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ExitStatus:
    """How a server ended.

    ``engine`` is what became of the engine that ran it when that explains the end (it
    restarted, stopped, does not answer), else "".
    """

    exit_code: int | None
    oom_killed: bool = False
    error: str = ""
    logs: str = ""
    engine: str = ""

    def describe(self) -> str:
        parts = [self.engine] if self.engine else []
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
    """One started server.

    ``ports`` maps each :class:`PublishedPort`'s container port to the ``(host, port)``
    where this process reaches it (known once the server runs).
    """

    id: str
    endpoint: Endpoint
    ports: Mapping[int, tuple[str, int]] = MappingProxyType({})
    #: True when the launcher gave the server the spec's secrets itself (as files of the
    #: engine's own secret store); otherwise the handshake sends them over the channel.
    secrets_delivered: bool = False

    def connected(self) -> None:
        """Called once the host's connection passed the handshake, before the host sends
        anything else (so before any user code runs): take back what the server needed only
        to start (the Docker launcher locks the socket directory). Nothing by default.

        Raises:
            EngineUnavailable: what was to be taken back could not be (the session is not
                used then).
        """
        return None

    @abc.abstractmethod
    def poll(self) -> ExitStatus | None:
        """None while it runs; how it ended otherwise."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> ExitStatus | None:
        """Wait up to ``timeout`` for it to end; None if it still runs. A server whose
        engine went away counts as ended (``ExitStatus.engine`` says how), whatever the
        engine last recorded of it."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop it at once (idempotent)."""

    def terminate(self, grace: float) -> None:
        """Ask it to end (SIGTERM: the server ends, user code's ``finally`` blocks run
        first), and kill it if it still runs ``grace`` seconds later; returns once it has
        ended. By default (a launcher that cannot signal), a kill."""
        self.kill()

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Kill it if needed and remove everything made for it (idempotent)."""


class Launcher(ImageBuilder, abc.ABC):
    """Starts :class:`Instance` objects.

    It offers the image-builder protocol too (:class:`~pyhost.launchers.images.ImageBuilder`:
    which Python an image runs, what it can import, building a function's image), by default
    knowing no image and building none.
    """

    #: The name :func:`pyhost.launchers.get_launcher` knows it by.
    name: str = ""

    def check(self, spec: LaunchSpec) -> None:
        """Refuse options this launcher cannot honour, before anything starts.

        Called when a session is made, so a bad option fails at ``py()`` rather than at the
        first ``eval``. Checks that need the engine wait for :meth:`start`, which still makes
        nothing before they pass.

        Raises:
            ConfigurationError: an option is malformed or not understood here.
        """
        return None  # a launcher with nothing to check accepts every spec

    def load_balancer_problem(self) -> str | None:
        """Why this launcher cannot give one address balanced over a service's replicas (a
        serve run's ``service_type="LoadBalancer"``); None when it can."""
        return (f"the {self.name or type(self).__name__} launcher has no load balancer; "
                "LoadBalancer needs a cluster launcher (swarm) whose routing mesh works")

    def wait_until_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for where servers run (an engine) to take new ones
        again after it went away; whether it does. Ready at once by default."""
        return True

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> Instance:
        """Start a server for ``spec``; it may not listen yet when this returns.

        Raises:
            ConfigurationError: an option cannot work with this engine (nothing was made).
            EngineUnavailable, ImageNotFound: the engine cannot start it.
        """


def bind_env(container_port: int) -> str:
    """The variable that tells the server's user code where to listen for a container port
    (``HOST:PORT``); without it, ``0.0.0.0:<container port>``."""
    return f"HXPY_BIND_{int(container_port)}"


def server_env(spec: LaunchSpec, listen: str, key_from: str = KEY_FROM_STDIN
               ) -> dict[str, str]:
    """The environment that configures ``python -m hxpy`` (see ``hxpy.server``).

    It holds nothing secret: the key comes from ``key_from`` (:data:`KEY_FROM_STDIN`, or
    ``file:PATH`` of a file the launcher mounts), and the spec's secrets are sent over the
    channel or mounted as files, never put here.
    """
    env = {
        **spec.env,
        "HXPY_KEY_FROM": key_from,
        "HXPY_LISTEN": listen,
        "HXPY_MAX_FRAME": str(spec.max_frame),
        "HXPY_OUTPUT_CAP": str(spec.output_cap),
        "HXPY_SPIN_US": str(round(spec.spin * 1e6)),
        "HXPY_LOG_LEVEL": spec.log_level,
    }
    if spec.fault:
        env["HXPY_FAULT"] = spec.fault
    return env


def key_line(spec: LaunchSpec) -> bytes:
    """What a launcher writes to the server's standard input for :data:`KEY_FROM_STDIN`."""
    return spec.key.encode("ascii") + b"\n"


def as_mapping(what: str, value: Any) -> Mapping[str, Any]:
    """``value``, once it is a mapping with str keys (else an error naming ``what``): the
    shape of a placement's parts and of the settings that carry them."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ConfigurationError(f"{what} must be a dict with str keys, not {value!r}")
    return value
