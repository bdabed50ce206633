"""Finding, and where the machine allows it installing and starting, the Docker engine.

:func:`ensure_engine` returns a client for an engine that answers. When none does and we are
root on a Debian-like machine, it installs Debian's ``docker.io`` and starts ``dockerd`` in
the background; otherwise it raises :class:`~pyhost.errors.EngineUnavailable` naming what the
user must do. :func:`engine_status` gathers the facts ``pyhost doctor`` prints.

Docker is only ever spoken to through the docker SDK; ``apt-get``, ``systemctl``,
``cgroupfs-mount`` and ``dockerd`` are the only programs this module runs.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import docker.errors
from docker.constants import MINIMUM_DOCKER_API_VERSION
from docker.utils import kwargs_from_env

from ...errors import EngineUnavailable
from .client import ENGINE_ERRORS
from .system import SYSTEM_PATH, Progress, apt_install, say, which

__all__ = [
    "DEFAULT_SOCKET",
    "DOCKERD_LOG",
    "EngineStatus",
    "Progress",
    "SocketStatus",
    "socket_status",
    "engine_status",
    "ensure_engine",
]

DEFAULT_SOCKET = "/var/run/docker.sock"
DOCKERD_LOG = "/var/log/pyhost-dockerd.log"
_DOCKERD_PIDFILE = "/var/run/docker.pid"
_LOCK_FILE = "/run/pyhost-engine.lock"

# Transport and API failures that mean "this engine does not answer".
_CONNECT_ERRORS = (*ENGINE_ERRORS, OSError)

# Keeps the Popen of a dockerd we started alive, so it is never garbage-collected while the
# daemon runs (Popen.__del__ would warn about a still-running child).
_started: list[subprocess.Popen[bytes]] = []


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
    problem: str | None = None


def ensure_engine(install: bool = True, timeout: float = 60.0,
                  progress: Progress = None) -> docker.DockerClient:
    """Return a client for a Docker engine that answers, starting one if we may.

    An engine that answers (``DOCKER_HOST`` is honoured) is reused. Otherwise, when
    ``install`` is true, we are root, the engine would live on the default local socket and
    ``apt-get`` exists, Debian's ``docker.io`` is installed if ``dockerd`` is missing, and the
    daemon is started (``systemctl`` where systemd runs, else ``dockerd`` in its own session,
    logging to :data:`DOCKERD_LOG`) and waited for.

    Args:
        install: allow installing and starting the engine.
        timeout: seconds to wait for a starting daemon to answer (installing is not counted).
        progress: called with one line of text per step taken.

    Returns:
        A connected ``docker.DockerClient``.

    Raises:
        EngineUnavailable: no engine answers and none could be started; the message says what
            to do (start Docker, join the docker group, install docker.io as root, ...).
    """
    client, problem = _connect()
    if client is not None:
        return client
    if not _is_default_host():
        raise EngineUnavailable(
            f"the engine at DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer ({problem}); "
            "start that engine, or unset DOCKER_HOST to use the local one"
        )
    sock = socket_status(DEFAULT_SOCKET)
    if sock.exists and not sock.accessible:
        raise EngineUnavailable(_permission_advice(sock))
    if not install or not _may_manage():
        raise EngineUnavailable(_start_advice(problem))
    with _engine_lock():
        # Another process may have started the engine while we waited for the lock.
        client, problem = _connect()
        if client is not None:
            return client
        if which("dockerd") is None:
            say(progress, "no Docker engine found; installing Debian's docker.io")
            apt_install(["docker.io"], progress=progress)
        return _start_and_wait(timeout, progress)


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
    client, problem = _connect()
    if client is None:
        if sock is not None and sock.exists and not sock.accessible:
            problem = _permission_advice(sock)
        elif _is_default_host():
            problem = _start_advice(problem)
        else:
            problem = f"the engine at DOCKER_HOST={host} does not answer ({problem})"
        return replace(status, problem=problem)
    try:
        info = client.info()
        version = client.version()
    except _CONNECT_ERRORS as exc:
        return replace(status, problem=f"the engine stopped answering: {_short(exc)}")
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

def _connect() -> tuple[docker.DockerClient | None, str]:
    """A client for an engine that answers a ping, or ``None`` and why not."""
    # The SDK leaks its socket when a Unix connect fails, so a missing socket is not tried.
    path = _unix_path(os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}")
    if path is not None and not os.path.exists(path):
        return None, f"there is no socket at {path}"
    # Probe with a fixed API version first: the SDK's version auto-detection, when it fails,
    # leaves its connection unclosed. Every engine still serves the SDK's minimum version.
    try:
        probe = docker.APIClient(version=MINIMUM_DOCKER_API_VERSION, **kwargs_from_env())
    except _CONNECT_ERRORS as exc:
        return None, _short(exc)
    try:
        probe.ping()
    except _CONNECT_ERRORS as exc:
        return None, _short(exc)
    finally:
        probe.close()
    try:
        return docker.from_env(), ""
    except _CONNECT_ERRORS as exc:
        return None, _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _unix_path(host: str) -> str | None:
    if host.startswith("unix://"):
        return host[len("unix://"):] or DEFAULT_SOCKET
    if "://" not in host and host.startswith("/"):
        return host
    return None


def _is_default_host() -> bool:
    """Whether the engine we talk to is the local default one (which we may start)."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        return True
    path = _unix_path(host)
    return path is not None and os.path.realpath(path) == os.path.realpath(DEFAULT_SOCKET)


# -- advice ----------------------------------------------------------------------------------

def _may_manage() -> bool:
    return os.name == "posix" and os.geteuid() == 0 and which("apt-get") is not None


def _permission_advice(sock: SocketStatus) -> str:
    user = _user_name(os.geteuid())
    return (
        f"permission denied on {sock.path} ({sock.mode} {sock.owner}:{sock.group}): "
        f"add yourself to the {sock.group or 'docker'} group "
        f"(sudo usermod -aG {sock.group or 'docker'} {user}, then log in again), or run as root"
    )


def _start_advice(problem: str) -> str:
    if which("dockerd") is None:
        how = ("install Docker: as root run `apt-get install docker.io` "
               "(or let pyhost do it by running it as root)")
    elif os.geteuid() != 0:
        how = "start Docker: `sudo systemctl start docker` (or `sudo dockerd &`)"
    else:
        how = f"start Docker: `systemctl start docker`, or `dockerd >{DOCKERD_LOG} 2>&1 &`"
    return f"no Docker engine answers at {DEFAULT_SOCKET} ({problem}); {how}"


# -- starting --------------------------------------------------------------------------------

@contextlib.contextmanager
def _engine_lock() -> Iterator[None]:
    """Serialise install-and-start between processes, so only one dockerd is launched."""
    import fcntl  # POSIX only; _may_manage() has checked we are on POSIX

    with open(_LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start_and_wait(timeout: float, progress: Progress) -> docker.DockerClient:
    proc: subprocess.Popen[bytes] | None = None
    log_start = 0
    if _dockerd_running():
        say(progress, "dockerd is running but not answering yet; waiting for it")
    elif _systemd_runs() and which("systemctl") is not None:
        say(progress, "starting docker.service with systemctl")
        _run_quietly(["systemctl", "start", "docker.service"], timeout)
    else:
        _mount_cgroups(progress)
        proc, log_start = _spawn_dockerd(progress)
    return _wait_until_answering(timeout, proc, log_start, progress)


def _spawn_dockerd(progress: Progress) -> tuple[subprocess.Popen[bytes], int]:
    dockerd = which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("dockerd is not installed even after installing docker.io")
    say(progress, f"starting {dockerd} in the background (log: {DOCKERD_LOG})")
    try:
        log = open(DOCKERD_LOG, "ab")
    except OSError as exc:
        raise EngineUnavailable(f"cannot open the dockerd log {DOCKERD_LOG}: {exc}") from exc
    log_start = log.seek(0, os.SEEK_END)  # errors quote only what this dockerd wrote
    try:
        # Its own session: the daemon outlives us and our terminal's signals never reach it.
        proc = subprocess.Popen([dockerd], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env={**os.environ, "PATH": SYSTEM_PATH})
    except OSError as exc:
        raise EngineUnavailable(f"cannot start {dockerd}: {exc}") from exc
    finally:
        log.close()
    _started.append(proc)
    return proc, log_start


def _wait_until_answering(timeout: float, proc: subprocess.Popen[bytes] | None,
                          log_start: int, progress: Progress) -> docker.DockerClient:
    deadline = time.monotonic() + timeout
    delay = 0.05
    problem = ""
    while True:
        client, problem = _connect()
        if client is not None:
            say(progress, "the Docker engine answers")
            return client
        if proc is not None and proc.poll() is not None:
            raise EngineUnavailable(
                f"dockerd exited with {proc.returncode} while starting; "
                f"its log ({DOCKERD_LOG}) ends with:\n{_log_tail(log_start)}"
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    raise EngineUnavailable(
        f"dockerd did not answer within {timeout:g} s ({problem}); "
        f"its log ({DOCKERD_LOG}) ends with:\n{_log_tail(log_start)}"
    )


def _dockerd_running() -> bool:
    try:
        pid = int(Path(_DOCKERD_PIDFILE).read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return False
    return comm == "dockerd"


def _systemd_runs() -> bool:
    return os.path.isdir("/run/systemd/system")


def _mount_cgroups(progress: Progress) -> None:
    """Mount the cgroup hierarchies dockerd needs where no init system has done it."""
    if _cgroups_mounted() or which("cgroupfs-mount") is None:
        return
    say(progress, "mounting cgroups with cgroupfs-mount")
    _run_quietly(["cgroupfs-mount"], 30.0)


def _cgroups_mounted() -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return True  # cannot tell; let dockerd decide
    return any(line.split()[2] in ("cgroup", "cgroup2") for line in mounts.splitlines()
               if len(line.split()) > 2)


def _run_quietly(argv: list[str], timeout: float) -> None:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False,
                              env={**os.environ, "PATH": SYSTEM_PATH})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"{' '.join(argv)} failed: {exc}") from exc
    if done.returncode != 0:
        raise EngineUnavailable(f"{' '.join(argv)} exited with {done.returncode}: "
                                f"{done.stdout.decode(errors='replace')[-1000:]}")


def _log_tail(since: int = 0, lines: int = 12) -> str:
    """The end of what dockerd logged since byte ``since``, its info chatter left out."""
    try:
        with open(DOCKERD_LOG, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    noisy = ("level=info", "level=debug")
    kept = [line for line in text.splitlines() if not any(word in line for word in noisy)]
    return "\n".join((kept or text.splitlines())[-lines:]) or "(empty log)"


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
