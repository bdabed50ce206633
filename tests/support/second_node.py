"""A second Docker engine on this machine, in a network namespace, joined to the local swarm.

The two-node tests need a worker node next to the manager (the local engine). This module
makes one that shares nothing with the engine others use but the kernel:

* a network namespace ``pyhost-node2-<pid>`` and a veth pair ``pn2h-<pid>`` (host side) /
  ``pn2n-<pid>`` (namespace side) on a /30 of ``10.213.0.0/16`` no interface here uses; the
  namespace has one route, to the manager's address, and no default route;
* ``dockerd`` run in that namespace (``nsenter --net``: it keeps the host's mount namespace,
  where the cgroup v1 hierarchies are mounted; ``ip netns exec`` would mount a fresh /sys over
  them and dockerd would stop with "Devices cgroup isn't mounted") with its own data-root,
  exec-root, socket, pidfile and cgroup parent, and its own containerd (started under its
  exec-root);
* its ``docker_gwbridge`` made before the join without masquerading, as ``swarm-up`` makes
  the manager's, so a task there has no route out either.

The node joins as a worker with availability ``drain``: tasks of other people's services are
never placed on it (it has only the session image), and :meth:`SecondNode.accepting` opens it
for the short time it takes Swarm to place one of this process's tasks, then pauses it again.
The manager reaches the node (swarm gossip, VXLAN, published ports) on the namespace's address,
which the host routes to the veth.

:func:`reap_leftovers` removes what a killed test process left (by the pid in the names).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.constants import MINIMUM_DOCKER_API_VERSION

from pyhost.launchers.docker.system import SYSTEM_PATH, which
from pyhost.launchers.ownership import LABEL_PREFIX

from .private_engine import PrivateEngineError, load_image, remove_cgroups, remove_tree

__all__ = ["PREFIX", "SecondNode", "SecondNodeError", "missing_prerequisite",
           "reap_leftovers", "start_second_node"]

PREFIX = "pyhost-node2"
PID_LABEL = f"{LABEL_PREFIX}.node2.pid"  # on the swarm node: which test process made it
_SUBNETS = "10.213"
_START_TIMEOUT = 60.0
_GWBRIDGE_OPTIONS = {
    "com.docker.network.bridge.name": "docker_gwbridge",
    "com.docker.network.bridge.enable_ip_masquerade": "false",
    "com.docker.network.bridge.enable_icc": "false",
}


class SecondNodeError(RuntimeError):
    """A step of making (or removing) the second node failed; the message names the step."""


@dataclass(frozen=True)
class Names:
    """Everything the node of test process ``pid`` is made of, named after that pid."""

    pid: int

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.pid}"

    @property
    def veth_host(self) -> str:
        return f"pn2h-{self.pid}"  # interface names have 15 bytes at most

    @property
    def veth_node(self) -> str:
        return f"pn2n-{self.pid}"

    @property
    def data_root(self) -> Path:
        return Path("/var/lib") / self.netns

    @property
    def exec_root(self) -> Path:
        return Path("/run") / self.netns

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.exec_root / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.exec_root / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.netns}"


@dataclass
class SecondNode:
    """A worker node of the local swarm: its engine, its swarm node id and address."""

    names: Names
    manager: docker.DockerClient
    client: docker.DockerClient
    node_id: str
    address: str
    timings: dict[str, float] = field(default_factory=dict)
    _undo: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_labels(self, labels: dict[str, str]) -> None:
        """Add labels to the node (through the manager)."""
        self._update(lambda spec: {**spec, "Labels": {**(spec.get("Labels") or {}),
                                                       **labels}})

    def set_availability(self, availability: str) -> None:
        """``active``, ``pause`` or ``drain``."""
        self._update(lambda spec: {**spec, "Availability": availability})

    @contextlib.contextmanager
    def accepting(self, settle: float = 0.02) -> Iterator[list[dict[str, Any]]]:
        """Let Swarm place tasks on the node until one of this process's tasks is there.

        The node is paused again as soon as such a task is assigned to it (a paused node
        keeps its tasks), or when the block ends, so other people's tasks have only that
        moment to land on it. Yields a list that then holds the tasks of ours placed on it
        (as the manager lists them: their spec says which constraints they had).
        """
        done = threading.Event()
        before = set(self._our_tasks())  # finished ones of earlier blocks may linger
        placed: list[dict[str, Any]] = []

        def watch() -> None:
            while not done.is_set():
                placed.extend(task for task_id, task in self._our_tasks().items()
                              if task_id not in before)
                if placed:
                    break
                time.sleep(settle)
            self.set_availability("pause")
            self.timings["opened"] = (self.timings.get("opened", 0.0)
                                      + time.monotonic() - opened)

        self.set_availability("active")
        opened = time.monotonic()
        watcher = threading.Thread(target=watch, name=f"{self.names.netns}-watch", daemon=True)
        watcher.start()
        try:
            yield placed
        finally:
            done.set()
            watcher.join(timeout=30)

    def containers(self) -> list[dict[str, object]]:
        """The containers on the node's engine (all, stopped ones too)."""
        return list(self.client.api.containers(all=True))

    def close(self) -> None:
        """Leave the swarm, remove the node from it, stop its engine and remove everything
        made for it. Idempotent."""
        self._undo.close()

    def _our_tasks(self) -> dict[str, dict[str, Any]]:
        """The tasks of this process's services that Swarm put on the node, by id."""
        tasks = self.manager.api.tasks(filters={"node": self.node_id})
        pid = str(os.getpid())
        return {str(task["ID"]): task for task in tasks
                if ((task.get("Spec") or {}).get("ContainerSpec") or {}).get(
                    "Labels", {}).get(f"{LABEL_PREFIX}.owner.pid") == pid}

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        with self._lock:
            node = self.manager.api.inspect_node(self.node_id)
            spec = change(node["Spec"])
            self.manager.api.update_node(self.node_id, node["Version"]["Index"], spec)


def missing_prerequisite() -> str | None:
    """Why no second node can be made here, told before anything is made; None if it can."""
    if os.geteuid() != 0:
        return "making a network namespace and a second dockerd needs root"
    for program in ("ip", "nsenter", "dockerd", "docker"):
        if which(program) is None:
            return f"{program} is not installed"
    if os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") not in (
            "unix:///var/run/docker.sock", "unix:///run/docker.sock"):
        return "the manager engine is not the local one (DOCKER_HOST is set)"
    return None


def start_second_node(manager: docker.DockerClient, image: str,
                      pid: int | None = None) -> SecondNode:
    """Make the node, load ``image`` into its engine, join it to ``manager``'s swarm drained.

    Raises:
        SecondNodeError: a step failed (what was made so far is removed again).
    """
    names = Names(pid or os.getpid())
    undo = contextlib.ExitStack()
    timings: dict[str, float] = {}
    try:
        with _timed(timings, "network"):
            manager_addr = _manager_address(manager)
            host_ip, node_ip = _free_subnet()
            _make_network(undo, names, host_ip, node_ip, manager_addr.split(":")[0])
        with _timed(timings, "dockerd"):
            client = _start_dockerd(undo, names)
        with _timed(timings, "image"):
            _load_image(manager, client, image)
        with _timed(timings, "join"):
            node_id = _join(undo, names, manager, client, manager_addr, node_ip)
    except BaseException:
        undo.close()
        raise
    node = SecondNode(names, manager, client, node_id, node_ip, timings, undo)
    node.set_labels({PID_LABEL: str(names.pid)})
    return node


def reap_leftovers(manager: docker.DockerClient) -> list[str]:
    """Remove the nodes of test processes that are gone (killed before their teardown);
    what was removed."""
    removed = []
    for line in _run("list network namespaces", ["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name.removeprefix(f"{PREFIX}-")
        if name.startswith(f"{PREFIX}-") and pid.isdigit() and not _alive(int(pid)):
            _remove_everything(Names(int(pid)))
            removed.append(name)
    for node in manager.api.nodes():
        pid = ((node.get("Spec") or {}).get("Labels") or {}).get(PID_LABEL, "")
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(docker.errors.NotFound):
                manager.api.remove_node(node["ID"], force=True)
            removed.append(f"node {node['ID'][:12]}")
    return removed


# -- the steps -------------------------------------------------------------------------------

def _manager_address(manager: docker.DockerClient) -> str:
    """``ip:port`` of the manager's swarm endpoint."""
    swarm = manager.api.info().get("Swarm") or {}
    for remote in swarm.get("RemoteManagers") or []:
        if remote.get("NodeID") == swarm.get("NodeID"):
            return str(remote["Addr"])
    raise SecondNodeError("the engine is not a swarm manager (swarm state: "
                          f"{swarm.get('LocalNodeState')})")


def _free_subnet() -> tuple[str, str]:
    """Host-side and node-side addresses on a /30 of 10.213.0.0/16 nothing here uses."""
    used = _run("list addresses and routes", ["ip", "-4", "-o", "addr"])
    used += _run("list addresses and routes", ["ip", "-4", "route"])
    start = os.getpid() % 250
    for step in range(250):
        third = (start + step) % 250 + 1
        if f"{_SUBNETS}.{third}." not in used:
            return f"{_SUBNETS}.{third}.1", f"{_SUBNETS}.{third}.2"
    raise SecondNodeError(f"every /24 of {_SUBNETS}.0.0/16 is in use here")


def _make_network(undo: contextlib.ExitStack, names: Names, host_ip: str, node_ip: str,
                  manager_ip: str) -> None:
    ns = names.netns
    _run("make the network namespace", ["ip", "netns", "add", ns])
    undo.callback(_quiet, ["ip", "netns", "delete", ns])
    _run("make the veth pair", ["ip", "link", "add", names.veth_host, "type", "veth",
                                "peer", "name", names.veth_node, "netns", ns])
    undo.callback(_quiet, ["ip", "link", "delete", names.veth_host])
    _run("address the host side", ["ip", "addr", "add", f"{host_ip}/30", "dev",
                                   names.veth_host])
    _run("bring the host side up", ["ip", "link", "set", names.veth_host, "up"])
    _run("address the node side", ["ip", "-n", ns, "addr", "add", f"{node_ip}/30", "dev",
                                   names.veth_node])
    _run("bring the node side up", ["ip", "-n", ns, "link", "set", names.veth_node, "up"])
    _run("bring loopback up", ["ip", "-n", ns, "link", "set", "lo", "up"])
    # One route: to the manager. The manager's address is local to the host, so nothing is
    # forwarded (the host's FORWARD policy is Docker's DROP) and nothing else is reachable.
    _run("route to the manager", ["ip", "-n", ns, "route", "add", f"{manager_ip}/32", "via",
                                  host_ip])


def _start_dockerd(undo: contextlib.ExitStack, names: Names) -> docker.DockerClient:
    names.exec_root.mkdir(mode=0o700)
    undo.callback(remove_tree, names.exec_root)
    names.data_root.mkdir(mode=0o700)
    undo.callback(remove_tree, names.data_root)
    undo.callback(remove_cgroups, names.netns)
    argv = ["nsenter", f"--net=/run/netns/{names.netns}", "dockerd",
            "--data-root", str(names.data_root), "--exec-root", str(names.exec_root),
            "--host", f"unix://{names.socket}", "--pidfile", str(names.pidfile),
            "--cgroup-parent", names.cgroup_parent, "--bridge", "none"]
    with open(names.log, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PATH": SYSTEM_PATH})
    undo.callback(_stop_dockerd, names, proc)
    deadline = time.monotonic() + _START_TIMEOUT
    while (client := _answering(names)) is None:
        if proc.poll() is not None:
            raise SecondNodeError(f"dockerd in {names.netns} exited with {proc.returncode}: "
                                  f"{_log_tail(names)}")
        if time.monotonic() > deadline:
            raise SecondNodeError(f"dockerd in {names.netns} did not answer in "
                                  f"{_START_TIMEOUT:.0f} s: {_log_tail(names)}")
        time.sleep(0.1)
    undo.callback(client.close)
    undo.callback(_remove_containers, client)
    return client


def _answering(names: Names) -> docker.DockerClient | None:
    """A client once the engine answers a ping (probed at a fixed API version: the SDK's
    version detection leaves its connection open when it fails)."""
    if not names.socket.exists():
        return None
    probe = docker.APIClient(base_url=f"unix://{names.socket}",
                             version=MINIMUM_DOCKER_API_VERSION)
    try:
        probe.ping()
    except (docker.errors.DockerException, OSError):
        return None
    finally:
        probe.close()
    return docker.DockerClient(base_url=f"unix://{names.socket}")


def _load_image(manager: docker.DockerClient, client: docker.DockerClient, image: str) -> None:
    """Stream ``docker save`` of the manager's image into the node's ``docker load``."""
    try:
        load_image(manager, client, image)
    except PrivateEngineError as exc:
        raise SecondNodeError(f"{exc} (into the node)") from exc


def _join(undo: contextlib.ExitStack, names: Names, manager: docker.DockerClient,
          client: docker.DockerClient, manager_addr: str, node_ip: str) -> str:
    """Join as a drained worker; the node's swarm id."""
    try:
        client.api.create_network("docker_gwbridge", driver="bridge",
                                  options=_GWBRIDGE_OPTIONS)
        token = manager.api.inspect_swarm()["JoinTokens"]["Worker"]
    except docker.errors.DockerException as exc:
        raise SecondNodeError(f"preparing the join: {exc}") from exc
    # The SDK's join_swarm cannot ask for an availability; the CLI can, and a node that joins
    # drained never gets another process's task.
    undo.callback(_leave, manager, client)
    _run("join the swarm", ["docker", "--host", f"unix://{names.socket}", "swarm", "join",
                            "--token", token, "--availability", "drain",
                            "--advertise-addr", node_ip, "--listen-addr", f"{node_ip}:2377",
                            "--data-path-addr", node_ip, manager_addr], secret=token)
    return str(client.api.info()["Swarm"]["NodeID"])


# -- undoing ---------------------------------------------------------------------------------

def _leave(manager: docker.DockerClient, client: docker.DockerClient) -> None:
    """Remove the node from the swarm on the manager. The node itself does not leave: its
    engine is stopped and its swarm state deleted with its data-root next (a worker's own
    ``leave`` waits seconds for the manager to acknowledge)."""
    node_id = ""
    with contextlib.suppress(docker.errors.DockerException, KeyError):
        node_id = str(client.api.info()["Swarm"]["NodeID"])
    if node_id:
        with contextlib.suppress(docker.errors.NotFound):
            manager.api.remove_node(node_id, force=True)


def _remove_containers(client: docker.DockerClient) -> None:
    """Force-remove the node's containers: each lives in namespaces of its own, which
    stopping dockerd by a kill would not end."""
    with contextlib.suppress(docker.errors.DockerException):
        for container in client.api.containers(all=True):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_container(container["Id"], force=True, v=True)


def _stop_dockerd(names: Names, proc: subprocess.Popen[bytes] | None) -> None:
    """Kill dockerd, then its containerd and shims (whatever still runs in the namespace:
    only what this module started runs there). Not SIGTERM: a dockerd that was a swarm node
    waits about 6 s on shutdown for its ingress network's removal, for state that is
    deleted next anyway."""
    if proc is not None:
        proc.kill()
        proc.wait()
    else:
        with contextlib.suppress(ValueError, OSError):
            pid = int(names.pidfile.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
                os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        pids = _quiet(["ip", "netns", "pids", names.netns]).split()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.1)


def _remove_everything(names: Names) -> None:
    """Tear down by name what a dead test process left."""
    _stop_dockerd(names, None)
    remove_tree(names.exec_root)
    remove_tree(names.data_root)
    remove_cgroups(names.netns)
    _quiet(["ip", "link", "delete", names.veth_host])
    _quiet(["ip", "netns", "delete", names.netns])


# -- small helpers ---------------------------------------------------------------------------

@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[step] = time.monotonic() - started


def _run(step: str, argv: list[str], secret: str = "") -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "PATH": SYSTEM_PATH})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SecondNodeError(f"{step}: {exc}") from exc
    if done.returncode != 0:
        command = " ".join(argv).replace(secret, "***") if secret else " ".join(argv)
        raise SecondNodeError(f"{step}: `{command}` exited with {done.returncode}: "
                              f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _quiet(argv: list[str]) -> str:
    """Run an undo step; its failure (already gone) is not an error."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "PATH": SYSTEM_PATH}).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _log_tail(names: Names, lines: int = 8) -> str:
    try:
        text = names.log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if "level=info" not in line]
    return "\n".join(kept[-lines:]) or "(empty log)"
