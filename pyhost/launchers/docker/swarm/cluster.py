"""The swarm an engine belongs to: is it a manager, can its routing mesh answer, making one.

``pyhost engine swarm-up`` makes the local engine a single-node swarm manager the way the
sandbox needs it: before ``docker swarm init`` it creates ``docker_gwbridge`` (the bridge
through which a task's published ports reach the node) with outbound masquerading and
traffic between containers turned off, so a task reached on a host-mode port still has no
route out. The engine's routing mesh (the ``ingress`` network and service VIPs) needs the
kernel's IPVS; :func:`ipvs_available` tells whether this host has it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass

import docker
import docker.errors

from ....errors import ConfigurationError
from ...ownership import LABEL_PREFIX
from ..client import engine_errors

__all__ = [
    "GWBRIDGE",
    "MADE_LABEL",
    "SESSION_NETWORK",
    "SwarmState",
    "ensure_network",
    "ipvs_available",
    "require_manager",
    "swarm_leave",
    "swarm_state",
    "swarm_up",
]

log = logging.getLogger("pyhost")

GWBRIDGE = "docker_gwbridge"
SESSION_NETWORK = "pyhost-swarm"  # the attachable overlay every pyhost task joins
MADE_LABEL = f"{LABEL_PREFIX}.made-by"  # on what swarm-up made: "swarm-up"
_GWBRIDGE_OPTIONS = {
    "com.docker.network.bridge.name": GWBRIDGE,
    "com.docker.network.bridge.enable_ip_masquerade": "false",
    "com.docker.network.bridge.enable_icc": "false",
}


@dataclass(frozen=True)
class SwarmState:
    """What the engine says about its swarm membership."""

    state: str  # "inactive", "pending", "active", "error", "locked"
    manager: bool
    node_id: str = ""
    node_address: str = ""
    nodes: int = 0
    managers: int = 0

    def describe(self) -> str:
        if self.state != "active":
            return (f"the engine is not in a swarm (state {self.state}); make it a manager "
                    "with `pyhost engine swarm-up` (or `docker swarm init`)")
        role = "manager" if self.manager else "worker"
        return (f"swarm {role} {self.node_id[:12]} at {self.node_address}; "
                f"{self.nodes} node(s), {self.managers} manager(s)")


def swarm_state(client: docker.DockerClient) -> SwarmState:
    """The engine's swarm membership.

    Raises:
        EngineUnavailable: the engine cannot be asked.
    """
    with engine_errors("cannot ask the engine about its swarm"):
        info = client.api.info().get("Swarm") or {}
    return SwarmState(
        state=str(info.get("LocalNodeState") or "inactive"),
        manager=bool(info.get("ControlAvailable")),
        node_id=str(info.get("NodeID") or ""),
        node_address=str(info.get("NodeAddr") or ""),
        nodes=int(info.get("Nodes") or 0),
        managers=int(info.get("Managers") or 0),
    )


def require_manager(client: docker.DockerClient) -> SwarmState:
    """The state of an engine that is a swarm manager.

    Raises:
        ConfigurationError: it is not one (the message says how to make one).
    """
    state = swarm_state(client)
    if state.state != "active" or not state.manager:
        detail = state.describe() if state.state != "active" else (
            "the engine is a swarm worker; point DOCKER_HOST at a manager")
        raise ConfigurationError(f"launcher='swarm' needs a swarm manager: {detail}")
    return state


def swarm_up(client: docker.DockerClient, advertise_addr: str | None = None) -> tuple[
        SwarmState, bool]:
    """Make the engine a swarm manager if it is not in a swarm; ``(state, made)``.

    ``made`` is False when it already was in one (nothing is changed then).

    Raises:
        ConfigurationError: the engine is a worker or in a broken swarm, or no address to
            advertise can be found.
        EngineUnavailable: the engine refused.
    """
    state = swarm_state(client)
    if state.state == "active":
        if not state.manager:
            raise ConfigurationError("the engine is a swarm worker; run swarm-up on a manager")
        return state, False
    if state.state != "inactive":
        raise ConfigurationError(f"the engine's swarm is {state.state}; repair it with docker "
                                 "swarm commands first")
    address = advertise_addr or _advertise_address(client)
    _ensure_gwbridge(client)
    with engine_errors("the engine refused `swarm init`"):
        client.api.init_swarm(advertise_addr=address, listen_addr=f"{address}:2377")
    return swarm_state(client), True


def swarm_leave(client: docker.DockerClient) -> None:
    """Leave the swarm (forced: a single-node manager) and remove the gateway bridge that
    :func:`swarm_up` made (kept, with a warning, when the engine will not let it go). Only
    for a swarm that pyhost made (tests, ``swarm-down``)."""
    with engine_errors("the engine refused to leave the swarm"):
        client.api.leave_swarm(force=True)
    with engine_errors(f"cannot remove {GWBRIDGE}"):
        # The engine detaches the swarm's endpoints from the bridge (the ingress sandbox's,
        # the last tasks' gateways) after the leave has returned, and now and then keeps one
        # it failed to delete (Docker 20.10's log: "Error (Unable to complete atomic
        # operation, key modified) deleting object [endpoint ...]"): the bridge then "has
        # active endpoints" with no container on it until the engine restarts. The leave is
        # done either way, and the next swarm_up takes the bridge as it is.
        deadline = time.monotonic() + _BRIDGE_FREE_WAIT
        while True:
            try:
                bridge = client.api.inspect_network(GWBRIDGE)
                if (bridge.get("Labels") or {}).get(MADE_LABEL) == "swarm-up":
                    client.api.remove_network(bridge["Id"])
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "active endpoints" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    log.warning("left the swarm; %s is kept: the engine still counts an "
                                "endpoint on it (a restart of the engine clears it; the next "
                                "swarm-up uses it as it is)", GWBRIDGE)
                    return
            time.sleep(0.2)


_BRIDGE_FREE_WAIT = 3.0  # seconds the bridge may take to lose its endpoints after a leave


def ensure_network(client: docker.DockerClient, name: str = SESSION_NETWORK) -> str:
    """The attachable overlay network pyhost tasks join (made on first use); its id.

    Raises:
        EngineUnavailable: the engine refused.
    """
    with _network_lock, engine_errors(f"cannot make the overlay network {name}"):
        try:
            return str(client.api.inspect_network(name)["Id"])
        except docker.errors.NotFound:
            pass
        try:
            made = client.api.create_network(name, driver="overlay", attachable=True,
                                             labels={MADE_LABEL: "pyhost"})
            return str(made["Id"])
        except docker.errors.APIError as exc:
            # Another process made it first: the manager answers 409, or 500 "name
            # conflicts with an existing object". If it is there now, that is the answer.
            try:
                return str(client.api.inspect_network(name)["Id"])
            except docker.errors.NotFound:
                raise exc from None  # it is not: the refusal is the error


_network_lock = threading.Lock()  # threads of one process make the network once


def ipvs_available(proc: str = "/proc") -> bool | None:
    """Whether this host's kernel has IPVS (needed by the routing mesh and service VIPs);
    None when it cannot be told (no /proc)."""
    if not os.path.isdir(os.path.join(proc, "net")):
        return None
    if os.path.exists(os.path.join(proc, "net", "ip_vs")):
        return True
    try:
        with open(os.path.join(proc, "modules"), encoding="utf-8") as modules:
            return any(line.startswith("ip_vs ") for line in modules)
    except OSError:
        return False


def _ensure_gwbridge(client: docker.DockerClient) -> None:
    """Make ``docker_gwbridge`` without masquerading, unless one exists (then it is kept)."""
    with engine_errors(f"cannot make {GWBRIDGE}"):
        try:
            client.api.inspect_network(GWBRIDGE)
            return
        except docker.errors.NotFound:
            pass
        client.api.create_network(GWBRIDGE, driver="bridge", options=_GWBRIDGE_OPTIONS,
                                  labels={MADE_LABEL: "swarm-up"})


def _advertise_address(client: docker.DockerClient) -> str:
    """The engine host's first global IPv4 address that is not a Docker bridge's."""
    try:
        import socket

        candidates = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        addresses = [str(info[4][0]) for info in candidates]
    except OSError:
        addresses = []
    addresses += _interface_addresses()
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        if text.startswith("172.17."):  # docker0
            continue
        return text
    raise ConfigurationError("no address to advertise the swarm on was found; pass "
                             "--advertise-addr with this host's IP address")


def _interface_addresses() -> list[str]:
    """IPv4 addresses of this host's interfaces, read from /proc/net/fib_trie (no tools)."""
    try:
        with open("/proc/net/fib_trie", encoding="utf-8") as trie:
            lines = trie.read().splitlines()
    except OSError:
        return []
    found = []
    for previous, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            found.append(previous.split()[-1])
    return list(dict.fromkeys(found))
