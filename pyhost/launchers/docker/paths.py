"""Where the engine is, and how it sees this process's paths.

A bind mount names its source as the ENGINE sees it. That is the local path when pyhost runs
on the engine's machine, but not when pyhost itself runs in a container of that engine
(Docker-in-Docker with the engine socket mounted): then a local path must be translated
through this container's own mounts, and a path in its private filesystem cannot be shared at
all. A remote engine (``DOCKER_HOST=tcp://...`` or ``ssh://...``) sees none of our paths.

The parsing and the translation are pure functions; :class:`EngineView` asks the engine once
and caches the answer.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors

from .client import engine_errors
from .engine_kind import (
    PODMAN_PING_HEADER,
    EngineKind,
    engine_kind,
    engine_process_limits,
    podman_version,
    session_ulimits,
)

__all__ = [
    "EngineLocation",
    "EngineView",
    "container_id_candidates",
    "desktop_socket",
    "engine_view",
    "locate_engine",
    "translate",
]

log = logging.getLogger("pyhost")

_CONTAINER_ID = re.compile(r"/containers/([0-9a-f]{64})/")
_CGROUP_ID = re.compile(r"(?:/docker/|/docker-)([0-9a-f]{64})(?:\.scope)?$")
_SHORT_ID = re.compile(r"[0-9a-f]{12}")
# The files the engine bind-mounts into every container from /var/lib/docker/containers/<id>/.
_PER_CONTAINER_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


@dataclass(frozen=True)
class EngineLocation:
    """Whether the engine runs on this machine.

    Attributes:
        remote: True when the SDK reaches the engine over TCP or ssh.
        host: the engine's host name from its URL (None for a local socket, or when unknown).
        url: the engine address, for messages.
    """

    remote: bool
    host: str | None
    url: str


def locate_engine(base_url: str, docker_host: str | None = None) -> EngineLocation:
    """Decide from the SDK client's ``base_url`` whether the engine is remote.

    docker-py rewrites the URL of a Unix socket or named pipe to ``http+docker://local...`` and
    of an ssh engine to ``http+docker://ssh`` (the ssh host is then only in ``DOCKER_HOST``);
    a TCP engine keeps ``http(s)://host:port``.
    """
    if base_url.startswith("http+docker://local"):
        return EngineLocation(False, None, base_url)
    if base_url.startswith("http+docker://ssh"):
        url = docker_host if docker_host and docker_host.startswith("ssh://") else base_url
        host = urlsplit(url).hostname if url.startswith("ssh://") else None
        return EngineLocation(True, host, url)
    return EngineLocation(True, urlsplit(base_url).hostname, base_url)


def container_id_candidates(mountinfo: str, cgroup: str = "", hostname: str = "") -> list[str]:
    """Container ids this process may run in, most telling first.

    A container's ``/etc/hostname`` (and hosts, resolv.conf) are bind mounts whose ROOT field
    in mountinfo is ``.../containers/<id>/hostname``. Only those lines count: on the engine's
    own machine, mountinfo also lists other containers' ``.../containers/<id>/mounts/shm`` as
    mount POINTS, which must not be taken for ours.
    """
    found: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] in _PER_CONTAINER_FILES:
            match = _CONTAINER_ID.search(fields[3])
            if match:
                found.append(match.group(1))
    for line in cgroup.splitlines():
        match = _CGROUP_ID.search(line.strip())
        if match:
            found.append(match.group(1))
    if _SHORT_ID.fullmatch(hostname):  # the engine's default hostname is the short id
        found.append(hostname)
    return list(dict.fromkeys(found))


def translate(path: str, mounts: Iterable[Mapping[str, Any]]) -> str | None:
    """``path`` (absolute, normalised) as the engine sees it, through a container's mounts.

    The mount with the longest destination holding ``path`` decides: its source plus the rest
    of the path. None when no mount holds it (it lives in the container's own filesystem) or
    the mount has no source on the engine's machine (a tmpfs).
    """
    best: Mapping[str, Any] | None = None
    for mount in mounts:
        dest = str(mount.get("Destination") or "").rstrip("/") or "/"
        inside = path == dest or path.startswith(dest + "/") or dest == "/"
        if inside and (best is None or len(dest) > len(_dest(best))):
            best = mount
    if best is None or best.get("Type") not in ("bind", "volume") or not best.get("Source"):
        return None
    rest = path[len(_dest(best)):].lstrip("/")
    source = str(best["Source"])
    return os.path.join(source, rest) if rest else source


def _dest(mount: Mapping[str, Any]) -> str:
    return str(mount.get("Destination") or "").rstrip("/") or "/"


class EngineView:
    """One engine as seen from this process: where it is, and which container we run in.

    Made once per launcher; the engine is asked at most once (lazily, thread-safe).
    """

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.location = locate_engine(str(client.api.base_url), os.environ.get("DOCKER_HOST"))
        self._lock = threading.Lock()
        self._looked = False
        self._container: dict[str, Any] | None = None
        self._kind: EngineKind | None = None
        self._ulimits: list[docker.types.Ulimit] | None = None

    @property
    def kind(self) -> EngineKind:
        """Which engine this is (Docker, Podman, Docker Desktop), asked of the engine the
        first time: its ping, and the ``/info`` of an engine that is not Podman.

        Raises:
            EngineUnavailable: the engine could not be asked.
        """
        with self._lock:
            if self._kind is None:
                self._kind = self._ask_kind()
            return self._kind

    def _ask_kind(self) -> EngineKind:
        api = self.client.api
        with engine_errors("cannot ask the engine what it is"):
            answer = api.get(api.base_url + "/_ping")  # not versioned
            answer.raise_for_status()
            podman = answer.headers.get(PODMAN_PING_HEADER)
            # Podman's /info takes a second or more; its ping names it. Docker's costs tens
            # of ms on every process's first session, so it is asked only where it decides
            # something: a Docker Desktop for Linux, known by its socket (off Linux, every
            # local engine is in a VM). Whether an engine is rootless is the doctor's question.
            info = dict(self.client.info()) if not podman and desktop_socket(
                _socket_path(self.client)) else {}
        # Docker's ping names its version too: "Server: Docker/20.10.24+dfsg1 (linux)".
        server = answer.headers.get("Server") or ""
        docker_version = server.partition("/")[2].split(" ")[0] if server.startswith(
            "Docker/") else ""
        version = podman_version(podman) if podman else \
            ({"Version": docker_version} if docker_version else {})
        return engine_kind(info, version, local=not self.location.remote)

    @property
    def published(self) -> bool:
        """Whether sessions are reached on a published port: no Unix socket of this machine
        reaches the engine's containers (a remote engine, or one in a VM)."""
        return self.location.remote or self.kind.in_vm

    @property
    def own_container(self) -> dict[str, Any] | None:
        """The engine's inspect of the container this process runs in; None when it runs
        in none of this engine's containers (the paths are then the engine's own)."""
        with self._lock:
            if not self._looked:
                self._container = None if self.location.remote else self._find_self()
                self._looked = True
            return self._container

    def ulimits(self) -> list[docker.types.Ulimit] | None:
        """The ulimits a container of ours asks for on this engine (see
        :func:`~.engine_kind.session_ulimits`); None: the engine's own.

        Raises:
            EngineUnavailable: the engine could not be asked what it is.
        """
        kind = self.kind  # asked outside the lock, which it takes itself
        with self._lock:
            if self._ulimits is None:
                engine = None
                if kind.podman and not self.location.remote:
                    engine = engine_process_limits(_socket_path(self.client))
                self._ulimits = [
                    docker.types.Ulimit(name=name, soft=soft, hard=hard)
                    for name, (soft, hard) in session_ulimits(kind, engine).items()]
            return self._ulimits or None

    def engine_path(self, path: str) -> str | None:
        """``path`` as the engine sees it; None when the engine cannot see it.

        Raises:
            EngineUnavailable: the engine could not be asked.
        """
        if self.location.remote:
            return None
        path = os.path.realpath(path)
        container = self.own_container
        if container is None:
            return path
        return translate(path, container.get("Mounts") or ())

    def describe(self) -> str:
        """One line for ``pyhost doctor``."""
        if self.location.remote:
            return f"remote engine {self.location.url}: sessions publish a port, /io is a volume"
        if self.kind.in_vm:
            return (f"local engine in a VM ({self.kind.product}): sessions publish a port on "
                    "publish_address (127.0.0.1); /io is a directory the VM shares")
        container = self.own_container
        if container is None:
            return "local engine; this process runs on the engine's machine"
        return (f"in container {str(container['Id'])[:12]} of this engine: /io and socket "
                f"paths are translated through its {len(container.get('Mounts') or ())} mounts")

    def _find_self(self) -> dict[str, Any] | None:
        hostname = socket.gethostname()
        for candidate in container_id_candidates(_read("/proc/self/mountinfo"),
                                                 _read("/proc/self/cgroup"), hostname):
            with engine_errors(f"cannot inspect container {candidate[:12]} to learn whether "
                               "pyhost runs in it"):
                try:
                    attrs = self.client.api.inspect_container(candidate)
                except docker.errors.NotFound:
                    continue  # a container of another engine (or of none)
            # A container's hostname is its Config.Hostname (the engine sets both); a match
            # of the id alone could be a sibling's.
            if (attrs.get("Config") or {}).get("Hostname") == hostname:
                log.info("pyhost runs in container %s of its engine", candidate[:12])
                return dict(attrs)
        return None


def desktop_socket(path: str) -> bool:
    """Whether ``path`` is where Docker Desktop for Linux puts its engine's socket
    (``~/.docker/desktop/docker.sock``)."""
    return "/.docker/desktop/" in path


def _socket_path(client: docker.DockerClient) -> str:
    """The Unix socket the SDK client speaks on (its adapter's; else DOCKER_HOST's)."""
    path = getattr(getattr(client.api, "_custom_adapter", None), "socket_path", None)
    if isinstance(path, str) and path:
        return path
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return host[len("unix://"):] if host.startswith("unix://") else host


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


_views: weakref.WeakKeyDictionary[docker.DockerClient, EngineView] = weakref.WeakKeyDictionary()
_views_lock = threading.Lock()


def engine_view(client: docker.DockerClient) -> EngineView:
    """The one :class:`EngineView` of ``client``, so the engine is asked about itself once
    per client however many parts of pyhost need to know."""
    with _views_lock:
        view = _views.get(client)
        if view is None:
            view = _views[client] = EngineView(client)
        return view
