"""A Docker engine of the test's own, to stop and start again without touching the engine
others use.

:class:`PrivateEngine` runs a second ``dockerd``, started with pyhost's own
:func:`~pyhost.launchers.docker.dockerd.spawn_dockerd` and
:func:`~pyhost.launchers.docker.dockerd.wait_until_answering`, with everything of its own
under one temp dir (data-root, exec-root, pidfile, Unix socket, log, an empty config file so
``/etc/docker/daemon.json`` is not read), a cgroup parent of its own, and a network namespace
of its own (``unshare --net``; it ends with the engine's last process). The namespace is not
optional: a dockerd started with ``--bridge=none`` deletes the interface ``docker0`` of the
namespace it runs in, which in the host's is the shared engine's default bridge. With
``--iptables=false --ip6tables=false`` too, it makes no interface and no firewall rule where
anyone else could see them; its sessions run as on any local engine (network ``none``,
reached through their socket directory, a path the namespace does not change). Its managed
containerd lives under its exec-root and in its namespace too.

:func:`load_image` copies an image from one engine to another (``docker save`` streamed into
``docker load``); :func:`remove_tree` and :func:`remove_cgroups` undo what a dockerd leaves
(the two-node tests' second node uses them too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import docker
import docker.errors

from pyhost.launchers.docker.dockerd import StartedDockerd, spawn_dockerd, wait_until_answering

__all__ = ["PrivateEngine", "PrivateEngineError", "load_image", "remove_cgroups",
           "remove_tree"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 90.0  # a stop waits for its containers' stop timeout (10 s) and containerd


class PrivateEngineError(RuntimeError):
    """A step of making, stopping or removing the private engine failed (named)."""


class PrivateEngine:
    """A dockerd of this test process; see the module docstring. Use as a context manager,
    or call :meth:`close`."""

    def __init__(self, name: str | None = None) -> None:
        # Short: the socket path must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="hxeng-"))
        self.name = name or f"pyhost-engine-{os.getpid()}"
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log = self.root / "dockerd.log"
        (self.root / "daemon.json").write_text("{}\n")
        self._dockerd: StartedDockerd | None = None
        self.client: docker.DockerClient | None = None

    def __enter__(self) -> PrivateEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def args(self) -> list[str]:
        """dockerd's flags: everything under :attr:`root`, nothing on the host's networks."""
        root = self.root
        return ["--config-file", str(root / "daemon.json"),
                "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                "--pidfile", str(root / "dockerd.pid"), "--host", self.host,
                "--bridge=none", "--iptables=false", "--ip6tables=false",
                "--cgroup-parent", f"/{self.name}"]

    @property
    def pid(self) -> int | None:
        """The running dockerd's pid (None when stopped)."""
        dockerd = self._dockerd
        return dockerd.process.pid if dockerd and dockerd.process.poll() is None else None

    def start(self) -> docker.DockerClient:
        """Start the engine and wait until it answers; a client for it (kept as
        :attr:`client`)."""
        if self.pid is not None:
            raise PrivateEngineError(f"the private engine at {self.host} already runs")
        self._dockerd = spawn_dockerd(self.args, str(self.log), wrapper=("unshare", "--net"))
        self.client = wait_until_answering(_START_TIMEOUT, self._dockerd, host=self.host)
        return self.client

    def stop(self) -> None:
        """Stop the engine as an admin does (SIGTERM) and wait for it to exit: it stops its
        containers first (no live-restore)."""
        dockerd = self._dockerd
        if dockerd is None or dockerd.process.poll() is not None:
            return
        dockerd.process.terminate()
        try:
            dockerd.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise PrivateEngineError(f"the private engine did not stop within "
                                     f"{_STOP_TIMEOUT:.0f} s: {dockerd.log_tail()}") from exc
        if self.client is not None:
            self.client.close()
            self.client = None

    def close(self) -> None:
        """Remove its containers and volumes, stop it, and remove its directories and
        cgroups. Idempotent."""
        if self.client is not None:
            _remove_everything_on(self.client)
        self.stop()
        dockerd = self._dockerd
        if dockerd is not None and dockerd.process.poll() is None:  # stop failed
            dockerd.process.kill()
            dockerd.process.wait()
        _kill_leftover_containerd(self.root / "exec")
        remove_tree(self.root)
        remove_cgroups(self.name)


def load_image(source: docker.DockerClient, target: docker.DockerClient, image: str) -> None:
    """Stream ``docker save`` of ``source``'s ``image`` into ``target``'s ``docker load``.

    Raises:
        PrivateEngineError: either engine refused.
    """
    try:
        for status in target.api.load_image(source.api.get_image(image)):
            if isinstance(status, dict) and status.get("error"):
                raise PrivateEngineError(f"loading {image}: {status['error']}")
    except docker.errors.DockerException as exc:
        raise PrivateEngineError(f"loading {image}: {exc}") from exc


def remove_tree(root: Path) -> None:
    """Unmount what a dockerd left mounted at and under ``root`` (a data-root may be a bind
    mount of itself; a swarm's network namespaces stay bind-mounted in its exec-root), then
    remove it."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts]
    below = [point for point in points if point == str(root) or point.startswith(f"{root}/")]
    for point in sorted(below, key=len, reverse=True):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=60,
                           check=False)
    shutil.rmtree(root, ignore_errors=True)


def remove_cgroups(parent: str) -> None:
    """The directories of the cgroup parent ``/<parent>`` (empty once its containers are
    gone), in every hierarchy."""
    for top in _CGROUP_ROOT.glob(f"*/{parent}"):
        for child in sorted(top.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
    with contextlib.suppress(OSError):  # cgroup v2: one hierarchy
        (_CGROUP_ROOT / parent).rmdir()


def _remove_everything_on(client: docker.DockerClient) -> None:
    """Force-remove every container and volume of the engine (only the test made any)."""
    with contextlib.suppress(docker.errors.DockerException):
        for container in client.api.containers(all=True):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_container(container["Id"], force=True, v=True)
        for volume in client.api.volumes().get("Volumes") or []:
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_volume(volume["Name"], force=True)


def _kill_leftover_containerd(exec_root: Path) -> None:
    """Kill the engine's managed containerd if it outlived a killed dockerd (its pid file
    is in the exec-root; nothing else writes there)."""
    pidfile = exec_root / "containerd" / "containerd.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() == "containerd":
            os.kill(pid, signal.SIGKILL)
