"""Installing and starting the Docker engine, where the machine allows it.

:func:`ensure_engine` returns a client for an engine that answers. When none does and we are
root on a Debian-like machine, it installs Debian's ``docker.io`` and starts ``dockerd`` in
the background; otherwise it raises :class:`~pyhost.errors.EngineUnavailable` naming what the
user must do (the advice of :mod:`pyhost.launchers.docker.engine`, which holds the facts).

:func:`spawn_dockerd` and :func:`wait_until_answering` are the two steps of starting a
``dockerd``; a caller may start one of its own with them (other flags, another socket: the
fault tests start a private engine they can stop and start again).

``apt-get``, ``systemctl``, ``cgroupfs-mount`` and ``dockerd`` are the only programs this
module runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker

from ...errors import EngineUnavailable
from .engine import (
    DEFAULT_SOCKET,
    DOCKERD_LOG,
    connect,
    is_default_host,
    permission_advice,
    socket_status,
    start_advice,
)
from .system import SYSTEM_PATH, Progress, apt_install, say, which

__all__ = ["StartedDockerd", "ensure_engine", "spawn_dockerd", "wait_until_answering"]

_DOCKERD_PIDFILE = "/var/run/docker.pid"
_LOCK_FILE = "/run/pyhost-engine.lock"

# Keeps the Popen of a dockerd we started alive, so it is never garbage-collected while the
# daemon runs (Popen.__del__ would warn about a still-running child).
_started: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class StartedDockerd:
    """A ``dockerd`` this process started, and where its log of this start begins.

    Attributes:
        process: the daemon's process (its own session: it outlives us).
        log_path: the file it logs to.
        log_start: the log's size before it started: errors quote only what it wrote.
    """

    process: subprocess.Popen[bytes]
    log_path: str = DOCKERD_LOG
    log_start: int = 0

    def log_tail(self, lines: int = 12) -> str:
        """The end of what this start logged, its info chatter left out."""
        return _log_tail(self.log_path, self.log_start, lines)


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
    client, problem = connect()
    if client is not None:
        return client
    if not is_default_host():
        raise EngineUnavailable(
            f"the engine at DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer ({problem}); "
            "start that engine, or unset DOCKER_HOST to use the local one"
        )
    sock = socket_status(DEFAULT_SOCKET)
    if sock.exists and not sock.accessible:
        raise EngineUnavailable(permission_advice(sock))
    if not install or not _may_manage():
        raise EngineUnavailable(start_advice(problem))
    with _engine_lock():
        # Another process may have started the engine while we waited for the lock.
        client, problem = connect()
        if client is not None:
            return client
        if which("dockerd") is None:
            say(progress, "no Docker engine found; installing Debian's docker.io")
            apt_install(["docker.io"], progress=progress)
        return _start_and_wait(timeout, progress)


def _may_manage() -> bool:
    """Whether this process may install and start the engine (root, with apt)."""
    return os.name == "posix" and os.geteuid() == 0 and which("apt-get") is not None


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
    started: StartedDockerd | None = None
    if _dockerd_running():
        say(progress, "dockerd is running but not answering yet; waiting for it")
    elif _systemd_runs() and which("systemctl") is not None:
        say(progress, "starting docker.service with systemctl")
        _run_quietly(["systemctl", "start", "docker.service"], timeout)
    else:
        _mount_cgroups(progress)
        started = spawn_dockerd(progress=progress)
    return wait_until_answering(timeout, started, progress)


def spawn_dockerd(args: Sequence[str] = (), log_path: str = DOCKERD_LOG,
                  progress: Progress = None, wrapper: Sequence[str] = ()) -> StartedDockerd:
    """Start ``dockerd`` with ``args`` in the background, in its own session, logging to
    ``log_path``; it may not answer yet (:func:`wait_until_answering`).

    ``wrapper`` is a command that executes dockerd in place (``unshare --net``: a network
    namespace of its own, where a second engine's start-up cannot touch the first one's
    interfaces; dockerd without a bridge deletes ``docker0`` of the namespace it runs in).

    Raises:
        EngineUnavailable: dockerd is not installed, or cannot be started or log.
    """
    dockerd = which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("dockerd is not installed (as root: apt-get install docker.io)")
    say(progress, f"starting {dockerd} in the background (log: {log_path})")
    try:
        log = open(log_path, "ab")
    except OSError as exc:
        raise EngineUnavailable(f"cannot open the dockerd log {log_path}: {exc}") from exc
    log_start = log.seek(0, os.SEEK_END)
    try:
        # Its own session: the daemon outlives us and our terminal's signals never reach it.
        proc = subprocess.Popen([*wrapper, dockerd, *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env={**os.environ, "PATH": SYSTEM_PATH})
    except OSError as exc:
        raise EngineUnavailable(f"cannot start {dockerd}: {exc}") from exc
    finally:
        log.close()
    _started.append(proc)
    return StartedDockerd(proc, log_path, log_start)


def wait_until_answering(timeout: float, started: StartedDockerd | None = None,
                         progress: Progress = None,
                         host: str | None = None) -> docker.DockerClient:
    """A client once the engine at ``host`` (None: ``DOCKER_HOST`` or the default socket)
    answers a ping.

    Args:
        timeout: seconds to wait.
        started: the dockerd being waited for, if we started it: its exit ends the wait.
        progress: told when the engine answers.
        host: the engine's address.

    Raises:
        EngineUnavailable: it did not answer in time, or ``started`` exited (the message ends
            with the tail of its log).
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    problem = ""
    while True:
        client, problem = connect(host)
        if client is not None:
            say(progress, "the Docker engine answers")
            return client
        if started is not None and started.process.poll() is not None:
            raise EngineUnavailable(
                f"dockerd exited with {started.process.returncode} while starting; "
                f"its log ({started.log_path}) ends with:\n{started.log_tail()}"
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    log = (f"; its log ({started.log_path}) ends with:\n{started.log_tail()}"
           if started is not None else f"; see its log ({DOCKERD_LOG})")
    raise EngineUnavailable(f"dockerd did not answer within {timeout:g} s ({problem}){log}")


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


def _log_tail(path: str, since: int = 0, lines: int = 12) -> str:
    """The end of what dockerd logged to ``path`` since byte ``since``, its info chatter
    left out."""
    try:
        with open(path, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    noisy = ("level=info", "level=debug")
    kept = [line for line in text.splitlines() if not any(word in line for word in noisy)]
    return "\n".join((kept or text.splitlines())[-lines:]) or "(empty log)"
