"""Facts about the Docker engine: where it is, whether it answers, and what to do when not.

:func:`connect` returns a client for an engine that answers a ping, or why none does;
:func:`engine_status` gathers the facts ``pyhost doctor`` prints; :func:`permission_advice`
and :func:`start_advice` name what the user must do. Nothing here changes the machine:
installing and starting ``dockerd`` is :mod:`pyhost.launchers.docker.dockerd`.

Docker is only ever spoken to through the docker SDK.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, replace

import docker
import docker.errors
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.utils import kwargs_from_env

from ...errors import short
from .client import ENGINE_ERRORS
from .engine_kind import EngineKind, engine_kind
from .system import which

__all__ = [
    "DEFAULT_SOCKET",
    "DOCKERD_LOG",
    "EngineStatus",
    "SocketStatus",
    "connect",
    "engine_status",
    "is_default_host",
    "permission_advice",
    "ping",
    "socket_status",
    "start_advice",
]

DEFAULT_SOCKET = "/var/run/docker.sock"
# Where a dockerd that pyhost starts logs (:mod:`.dockerd`); the advice names it too.
DOCKERD_LOG = "/var/log/pyhost-dockerd.log"

# Transport and API failures that mean "this engine does not answer".
_CONNECT_ERRORS = (*ENGINE_ERRORS, OSError)


@dataclass(frozen=True)
class SocketStatus:
    """The engine's Unix socket as the filesystem shows it.

    Attributes:
        path: the socket path.
        exists: whether something exists at ``path``.
        is_socket: whether that something is a socket.
        mode: ``ls -l`` style permissions, e.g. ``srw-rw----``.
        owner: owning user name (or uid as text).
        group: owning group name (or gid as text).
        accessible: whether the current user may read and write it.
    """

    path: str
    exists: bool
    is_socket: bool = False
    mode: str | None = None
    owner: str | None = None
    group: str | None = None
    accessible: bool = False


@dataclass(frozen=True)
class EngineStatus:
    """What ``pyhost doctor`` reports about the engine.

    Attributes:
        host: the engine address in use (``DOCKER_HOST`` or the default socket).
        reachable: whether the engine answered a ping.
        server_version: engine version, e.g. ``20.10.24+dfsg1``.
        api_version: engine API version, e.g. ``1.41``.
        storage_driver: e.g. ``overlay2``.
        cgroup_version: ``"1"`` or ``"2"``.
        security_options: e.g. ``("name=seccomp,profile=default",)``.
        socket: the Unix socket, or ``None`` for a TCP/SSH host.
        user: the current user name.
        uid: the current uid.
        in_docker_group: whether the user is in the socket's group (or the ``docker`` group).
        dockerd_path: where ``dockerd`` is installed, or ``None``.
        kind: Docker, Podman or Docker Desktop, rootless or not (when it answers).
        problem: why the engine cannot be used, with what to do about it; ``None`` if usable.
    """

    host: str
    reachable: bool
    server_version: str | None = None
    api_version: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    security_options: tuple[str, ...] = ()
    socket: SocketStatus | None = None
    user: str = ""
    uid: int = -1
    in_docker_group: bool = False
    dockerd_path: str | None = None
    kind: EngineKind | None = None
    problem: str | None = None


def engine_status() -> EngineStatus:
    """Gather facts about the engine without changing anything.

    Returns:
        An :class:`EngineStatus`; ``problem`` says what is wrong when the engine is unusable.
    """
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    sock_path = _unix_path(host)
    sock = socket_status(sock_path) if sock_path else None
    uid = os.geteuid()
    status = EngineStatus(host=host, reachable=False, socket=sock, user=_user_name(uid),
                          uid=uid, in_docker_group=_in_group(sock),
                          dockerd_path=which("dockerd"))
    client, problem = connect()
    if client is None:
        if sock is not None and sock.exists and not sock.accessible:
            problem = permission_advice(sock)
        elif is_default_host():
            problem = start_advice(problem)
        else:
            problem = f"the engine at DOCKER_HOST={host} does not answer ({problem})"
        return replace(status, problem=problem)
    try:
        info = client.info()
        version = client.version()
    except _CONNECT_ERRORS as exc:
        return replace(status, problem=f"the engine stopped answering: {short(exc)}")
    finally:
        client.close()
    return replace(
        status,
        reachable=True,
        server_version=version.get("Version"),
        api_version=version.get("ApiVersion"),
        storage_driver=info.get("Driver"),
        cgroup_version=info.get("CgroupVersion"),
        security_options=tuple(info.get("SecurityOptions") or ()),
        kind=engine_kind(info, version, local=sock is not None or host.startswith("npipe:")),
    )


def socket_status(path: str) -> SocketStatus:
    """Describe the Unix socket at ``path`` (existence, owner, mode, access for this user)."""
    try:
        st = os.stat(path)
    except OSError:
        return SocketStatus(path=path, exists=False)
    return SocketStatus(
        path=path,
        exists=True,
        is_socket=stat.S_ISSOCK(st.st_mode),
        mode=stat.filemode(st.st_mode),
        owner=_user_name(st.st_uid),
        group=_group_name(st.st_gid),
        accessible=os.access(path, os.R_OK | os.W_OK),
    )


# -- connecting ------------------------------------------------------------------------------

def connect(host: str | None = None) -> tuple[docker.DockerClient | None, str]:
    """A client for an engine that answers a ping, or ``None`` and why not.

    Args:
        host: the engine's address (``unix:///path``, ``tcp://...``); None: ``DOCKER_HOST``,
            else the default socket.
    """
    problem = ping(host)
    if problem:
        return None, problem
    try:
        if host is not None:
            return docker.DockerClient(base_url=host), ""
        return docker.from_env(), ""
    except _CONNECT_ERRORS as exc:
        return None, short(exc)


def ping(host: str | None = None, timeout: float = 60.0) -> str:
    """Ask the engine at ``host`` (None: ``DOCKER_HOST`` or the default socket) for a ping on
    a connection of its own; why it did not answer, or "" when it did.

    A connection of its own: an engine that is stopping has closed its listener but still
    answers on the connections it had, so only a new one tells it is going away.
    """
    # The SDK leaks its socket when a Unix connect fails, so a missing socket is not tried.
    path = _unix_path(host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}")
    if path is not None and not os.path.exists(path):
        return f"there is no socket at {path}"
    # Probe with a fixed API version: the SDK's version auto-detection, when it fails, leaves
    # its connection unclosed. Every engine still serves the SDK's minimum version.
    try:
        where = {"base_url": host} if host is not None else kwargs_from_env()
        probe = docker.APIClient(version=MINIMUM_DOCKER_API_VERSION, timeout=timeout,
                                 **where)
    except _CONNECT_ERRORS as exc:
        return short(exc)
    try:
        probe.ping()
    except _CONNECT_ERRORS as exc:
        return short(exc)
    finally:
        probe.close()
    return ""


def _unix_path(host: str) -> str | None:
    if host.startswith("unix://"):
        return host[len("unix://"):] or DEFAULT_SOCKET
    if "://" not in host and host.startswith("/"):
        return host
    return None


def is_default_host() -> bool:
    """Whether the engine we talk to is the local default one (which we may start)."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        return True
    path = _unix_path(host)
    return path is not None and os.path.realpath(path) == os.path.realpath(DEFAULT_SOCKET)


# -- advice ----------------------------------------------------------------------------------

def permission_advice(sock: SocketStatus) -> str:
    """What to do when the engine's socket is there but this user may not use it."""
    user = _user_name(os.geteuid())
    return (
        f"permission denied on {sock.path} ({sock.mode} {sock.owner}:{sock.group}): "
        f"add yourself to the {sock.group or 'docker'} group "
        f"(sudo usermod -aG {sock.group or 'docker'} {user}, then log in again), or run as root"
    )


def start_advice(problem: str) -> str:
    """What to do when no local engine answers (``problem`` says why): install or start it."""
    if which("dockerd") is None:
        how = ("install Docker: as root run `apt-get install docker.io` "
               "(or let pyhost do it by running it as root)")
    elif os.geteuid() != 0:
        how = "start Docker: `sudo systemctl start docker` (or `sudo dockerd &`)"
    else:
        how = f"start Docker: `systemctl start docker`, or `dockerd >{DOCKERD_LOG} 2>&1 &`"
    return f"no Docker engine answers at {DEFAULT_SOCKET} ({problem}); {how}"


# -- small helpers ---------------------------------------------------------------------------

def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _in_group(sock: SocketStatus | None) -> bool:
    """Whether the current user belongs to the socket's group (or ``docker``)."""
    wanted = {"docker"}
    if sock is not None and sock.group:
        wanted.add(sock.group)
    try:
        gids = set(os.getgroups()) | {os.getegid()}
    except OSError:
        return False
    return any(_group_name(gid) in wanted for gid in gids)
