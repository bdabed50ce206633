"""Installing and starting the Docker engine, where the machine allows it.

:func:`ensure_engine` returns a client for an engine that answers. When none does and we are
root on a Debian-like machine, it installs Debian's ``docker.io`` and starts ``dockerd`` in
the background; otherwise it raises :class:`~pyhost.errors.EngineUnavailable` naming what the
user must do (the advice of :mod:`pyhost.launchers.docker.engine`, which holds the facts).

``apt-get``, ``systemctl``, ``cgroupfs-mount`` and ``dockerd`` are the only programs this
module runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
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

__all__ = ["ensure_engine"]

_DOCKERD_PIDFILE = "/var/run/docker.pid"
_LOCK_FILE = "/run/pyhost-engine.lock"

# Keeps the Popen of a dockerd we started alive, so it is never garbage-collected while the
# daemon runs (Popen.__del__ would warn about a still-running child).
_started: list[subprocess.Popen[bytes]] = []


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
        client, problem = connect()
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
