"""Every session option, once: :class:`SessionOptions`.

``py()``, :class:`~pyhost.session.blocking.Session`, :class:`~pyhost.session.aio.AsyncSession`
and warm pools all take a ``SessionOptions`` (keyword arguments are turned into one); the
launcher gets the :class:`~pyhost.launchers.base.LaunchSpec` built from it. Values are checked
here, when the options are made; what only a launcher understands it checks itself
(``Launcher.check``), also before anything starts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

from hxpy import wire

from ..errors import ConfigurationError
from ..launchers.base import LaunchSpec, PublishedPort, Volume

__all__ = ["DEFAULT_IO", "DefaultIO", "SessionOptions"]


class DefaultIO(str):
    """The io directory nobody asked for: where it cannot be mounted (a remote engine) it
    is left out, while a directory the caller named is an error there."""


DEFAULT_IO = DefaultIO("io")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class SessionOptions:
    """How a session's server is started and spoken to. Immutable; :meth:`replace` makes a
    changed copy.

    Raises:
        ConfigurationError: a value is out of range or of the wrong kind (the message names
            the option).
    """

    image: str | None = None
    """Session image (default: the locally built ``hxpy:latest``, or ``PYHOST_IMAGE``)."""
    io: PathLike | None = DEFAULT_IO
    """Directory mounted read-write at ``/io`` (created if missing); None for none. On a
    remote engine the default ``./io`` is left out, and a directory passed here is an error
    (use ``io_volume``)."""
    io_host_path: str | None = None
    """Docker only: the io directory as the engine host sees it, when that differs (found
    through this container's mounts when pyhost runs in one)."""
    io_volume: str | None = None
    """Docker only: a volume mounted at ``/io`` instead of a directory (works with remote
    engines)."""
    timeout: float | None = 300.0
    """Seconds each eval may run; None: no limit."""
    log_level: str = "WARNING"
    """The server's log level (its logs go to the container's output)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables for the server."""
    mem_limit: str | int | None = "1g"
    """Memory limit, e.g. ``"1g"`` (no swap beyond it)."""
    cpus: float | None = None
    """CPU limit, e.g. ``1.5``."""
    network: str | None = None
    """Docker only: a user-defined network this process's container is on too; the session
    joins it instead of ``none`` and is reached over TCP (Docker-in-Docker)."""
    publish_address: str = "127.0.0.1"
    """Docker only, remote engines: the IPv4 address of the engine host the session's port is
    published on (``0.0.0.0``: every address, reached at the engine's host name)."""
    volumes: tuple[Volume, ...] = ()
    """Docker only: more mounts (:class:`~pyhost.launchers.base.Volume`): named volumes,
    read-only unless asked, or scratch tmpfs."""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Environment variables whose values are secret: set like ``env``, never shown by
    ``repr``; on a swarm they travel as Swarm secrets instead of in the service's spec."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Node labels the server's node must have (``{"disk": "ssd"}``), as Kubernetes and
    DigitalHub say it; a launcher with one place to run (docker, process) refuses it."""
    affinity: Mapping[str, Any] = field(default_factory=dict)
    """A Kubernetes node affinity; the swarm launcher takes what it can say as placement
    constraints and refuses the rest (``docs/scale-out.md``)."""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    """Kubernetes tolerations: they only permit, so a launcher without taints checks them."""
    ports: tuple[PublishedPort, ...] = ()
    """Ports the session's own code listens on (a serve replica's HTTP port): published on
    the engine host (:class:`~pyhost.launchers.base.PublishedPort`); ``session.ports`` says
    where each is reached. The process launcher listens on loopback."""
    auto_remove: bool = False
    """Remove the container as soon as its server ends (it then leaves no exit status)."""
    max_frame: int = wire.DEFAULT_MAX_FRAME
    """Largest message (a frame and its buffers) either end accepts, in bytes."""
    max_call_frame: int = 8 << 20
    """Largest msgpack body of a call from the container to the host (``call_host``: a file
    chunk, a metric, an entity's fields), in bytes: the part decoding copies. A bigger one
    breaks the session with a ``ProtocolError``, refused before the body is allocated. Array
    data and text columns (a table logged from a handler) travel as out-of-band buffers,
    received once into their arrays and bounded, with the body, by ``max_frame``, as the
    replies to the host's own evals are."""
    output_cap: int = 1 << 20
    """Captured stdout+stderr per batch, in bytes; the rest is cut (``last_output_truncated``)."""
    spin: float = wire.DEFAULT_SPIN
    """Seconds each end polls for the other's next message before it sleeps; 0 never polls
    (see ``hxpy.wire.FrameReader``). The asyncio session polls only on the server side."""
    grace: float = 0.5
    """Seconds past the timeout the server's own (soft) timeout has to answer before the
    container is killed (hard timeout)."""
    persist: str | None = None
    """A key: every ``py(persist=key)`` in this process returns the same live session, which
    ``eval`` does not close (the options of the first call win)."""

    def __post_init__(self) -> None:
        _positive_or_none("timeout", self.timeout)
        _positive_or_none("cpus", self.cpus)
        for name in ("max_frame", "max_call_frame", "output_cap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive int, not {value!r}")
        for name in ("spin", "grace"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, not "
                                         f"{value!r}")
        level = self.log_level.upper() if isinstance(self.log_level, str) else self.log_level
        if not isinstance(logging.getLevelName(level), int):
            raise ConfigurationError(f"log_level={self.log_level!r} is not a log level; use "
                                     "DEBUG, INFO, WARNING, ERROR or CRITICAL")
        object.__setattr__(self, "log_level", level)
        # Read-only views: the options are immutable all through, so one object may serve
        # every session asking for the same options (from_kwargs).
        object.__setattr__(self, "env", _str_map("env", self.env, show_values=True))
        object.__setattr__(self, "secrets", _str_map("secrets", self.secrets,
                                                     show_values=False))
        for name in ("node_selector", "affinity"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        for port in self.ports:
            if not isinstance(port, PublishedPort) or not all(
                    isinstance(number, int) and 0 <= number <= 65535
                    for number in (port.container_port, port.host_port)) or \
                    not port.container_port:
                raise ConfigurationError(f"ports: PublishedPort values with ports from 1 to "
                                         f"65535 (host_port 0: any), not {port!r}")
        if self.io is not None and not isinstance(self.io, (str, os.PathLike)):
            raise ConfigurationError(f"io must be a directory path or None, not {self.io!r}")

    @classmethod
    def from_kwargs(cls, options: SessionOptions | None = None,
                    **kwargs: Any) -> SessionOptions:
        """``options`` (or the defaults) with ``kwargs`` applied.

        Raises:
            ConfigurationError: a keyword is not an option (the message lists them).
        """
        if options is not None:
            return options.replace(**kwargs) if kwargs else options
        _check_names(kwargs)
        try:  # the same options again: checked, specced and keyed once (they are immutable)
            return _made(tuple(sorted((name, type(value), _frozen(value))
                                      for name, value in kwargs.items())))
        except TypeError:  # a value that cannot be a key (a list, a nested dict): made afresh
            return cls(**kwargs)

    def replace(self, **changes: Any) -> SessionOptions:
        """A copy with ``changes`` applied (checked as new options are)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @property
    def io_dir(self) -> str | None:
        """The io directory as an absolute path, or None."""
        return None if self.io is None else os.path.abspath(os.fspath(self.io))

    def launch_spec(self, session_id: str) -> LaunchSpec:
        """What the launcher needs to start a server for these options."""
        return LaunchSpec(
            session_id=session_id, image=self.image, io_dir=self.io_dir,
            io_required=not isinstance(self.io, DefaultIO), env=dict(self.env),
            mem_limit=self.mem_limit, cpus=self.cpus, log_level=self.log_level,
            max_frame=self.max_frame, output_cap=self.output_cap, spin=self.spin,
            io_host_path=self.io_host_path, io_volume=self.io_volume, network=self.network,
            publish_address=self.publish_address, volumes=tuple(self.volumes),
            node_selector=dict(self.node_selector), affinity=dict(self.affinity),
            tolerations=tuple(self.tolerations), ports=tuple(self.ports),
            auto_remove=self.auto_remove, secrets=dict(self.secrets))

    @functools.cached_property
    def checked_spec(self) -> LaunchSpec:
        """The launch spec of no session in particular: what a launcher's ``check`` reads
        (nothing in it depends on the session). Built once per options object."""
        return self.launch_spec("")

    def pool_key(self) -> tuple[Any, ...]:
        """What a ready server depends on: sessions with equal keys may share a warm pool.
        The io directory is read now: a relative one follows the working directory."""
        return (*self._pool_key, self.io_dir)

    @functools.cached_property
    def _pool_key(self) -> tuple[Any, ...]:  # asked at every py() that may take from a pool
        # Measured: 48 us a session when this listed the spec's fields each time; a pooled
        # open is about 0.6 ms in all.
        values = [getattr(self.checked_spec, name) for name in _KEYED]
        return tuple([value if type(value) in _PLAIN else _hashable(value) for value in values])


def _check_names(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - _NAMES)
    if unknown:
        raise ConfigurationError(f"unknown session option(s) {', '.join(unknown)}; the "
                                 f"options are {', '.join(sorted(_NAMES))}")


_NAMES = frozenset(field.name for field in dataclasses.fields(SessionOptions))


@functools.lru_cache(maxsize=64)
def _made(key: tuple[tuple[str, type, Any], ...]) -> SessionOptions:
    """Options made from ``(name, type, value)`` triples, once per process for the same ones
    (the type too: ``cpus=True`` is refused where ``cpus=1`` is not). Options are immutable,
    so every ``py()`` that asks for the same may share them."""
    values: dict[str, Any] = {name: {k: v for k, _, v in value} if kind is dict else value
                              for name, kind, value in key}
    return SessionOptions(**values)


def _frozen(value: Any) -> Any:
    """``value`` as part of a key of :func:`_made`: a dict as its items, typed as above."""
    return tuple((k, type(v), v) for k, v in value.items()) if type(value) is dict else value


#: The launch spec's fields a pooled server depends on: all but the session's id and the io
#: directory (which pool_key reads afresh).
_KEYED = tuple(field.name for field in dataclasses.fields(LaunchSpec)
               if field.name not in ("session_id", "io_dir"))


_PLAIN = frozenset({str, int, float, bool, type(None), DefaultIO})  # hashable as they are


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((key, _hashable(item)) for key, item in value.items()))
    return tuple(map(_hashable, value)) if isinstance(value, (list, tuple)) else value


def _str_map(what: str, value: Mapping[str, str] | None,
             show_values: bool) -> Mapping[str, str]:
    mapping = dict(value or {})
    bad = [key for key, item in mapping.items()
           if not isinstance(key, str) or not isinstance(item, str)]
    if bad:
        shown = repr(mapping[bad[0]]) if show_values else type(mapping[bad[0]]).__name__
        raise ConfigurationError(f"{what}: names and values must be str; {bad[0]!r} is not "
                                 f"(got {shown})")
    return MappingProxyType(mapping)


def _positive_or_none(name: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{name} must be positive or None, not {value!r}")
