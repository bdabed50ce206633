"""How the host reaches a session server that listens on TCP.

Two cases beside the default Unix socket (see ``docs/security.md`` for what each loosens):

* ``network=NAME`` (Docker-in-Docker): the session joins a user-defined network that the host
  container is on too, and the host connects to the session's address on it.
* a remote engine: a Unix socket cannot cross machines, so the engine publishes the server's
  port on ``publish_address`` of its host. Publishing needs a network, so sessions join
  :data:`PUBLISH_NETWORK`, a bridge that pyhost makes on demand with outbound NAT and traffic
  between containers turned off.

A serve replica on a local engine keeps its Unix socket for the session and joins
:data:`SERVE_NETWORK`, a bridge made the same way, so that its HTTP port can be published.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from typing import Any

import docker
import docker.errors

from ...errors import ConfigurationError, EngineUnavailable
from ..base import Endpoint
from .client import engine_errors

__all__ = [
    "NETWORK_LABEL",
    "PUBLISH_NETWORK",
    "SERVER_PORT",
    "SERVE_NETWORK",
    "check_network_name",
    "check_publish_address",
    "network_endpoint",
    "publish_network",
    "published_endpoint",
    "published_ports",
    "serve_network",
    "session_network",
]

SERVER_PORT = 5151  # where the server listens inside a session that is reached over TCP
PUBLISH_NETWORK = "pyhost-sessions"
SERVE_NETWORK = "pyhost-serve"
NETWORK_LABEL = "org.pyhost.network"

_PUBLISH_OPTIONS = {
    # Replies from outside cannot find their way back without NAT, so sessions have no way out.
    "com.docker.network.bridge.enable_ip_masquerade": "false",
    # One session may not talk to another.
    "com.docker.network.bridge.enable_icc": "false",
}


def check_network_name(name: str) -> None:
    """Refuse a network that would undo the sandbox; needs no engine.

    Raises:
        ConfigurationError: ``host``, ``container:...``, or ``bridge``/``none`` misused.
    """
    if name == "host" or name.startswith("container:"):
        raise ConfigurationError(
            f"network={name!r} would share a network stack with the engine host or another "
            "container; sessions join only a user-defined network")
    if name in ("bridge", "none"):
        raise ConfigurationError(
            f"network={name!r} is not a user-defined network: the host cannot reach a session "
            "there by name; create one (an `internal: true` network) and pass its name, or "
            "leave network= out for the default (no network, a Unix socket)")


def session_network(client: docker.DockerClient, name: str) -> str:
    """The name of the user-defined network ``name`` (a name or an id) that sessions join.

    Raises:
        ConfigurationError: there is no such network, or it would undo the sandbox.
        EngineUnavailable: the engine could not be asked.
    """
    check_network_name(name)
    with engine_errors(f"cannot inspect network {name!r}"):
        try:
            attrs = client.api.inspect_network(name)
        except docker.errors.NotFound:
            raise ConfigurationError(
                f"network={name!r}: the engine at {client.api.base_url} has no such network; "
                "create it (e.g. an `internal: true` network in your compose file) and put the "
                "host container on it too") from None
    return str(attrs["Name"])


def publish_network(client: docker.DockerClient) -> str:
    """The pyhost bridge network for published sessions, made the first time it is needed.

    Raises:
        ConfigurationError: a network of that name exists that pyhost did not make.
        EngineUnavailable: the engine refused to list or make it.
    """
    return _own_bridge(client, PUBLISH_NETWORK, "publish")


def serve_network(client: docker.DockerClient) -> str:
    """The id of the pyhost bridge network serve replicas publish their HTTP port from (no
    outbound NAT, no traffic between containers), made the first time it is needed.

    An id, not the name: two processes making it at once can leave two networks of that
    name (the engine does not refuse the second), and every replica then takes the oldest.

    Raises:
        ConfigurationError: a network of that name exists that pyhost did not make.
        EngineUnavailable: the engine refused to list or make it.
    """
    return _own_bridge(client, SERVE_NETWORK, "serve", by_id=True)


_making = threading.Lock()  # threads of this process make a network once, not once each


def _own_bridge(client: docker.DockerClient, name: str, purpose: str,
                by_id: bool = False) -> str:
    with _making:
        return _find_or_make(client, name, purpose, by_id)


def _find_or_make(client: docker.DockerClient, name: str, purpose: str, by_id: bool) -> str:
    for attempt in range(2):
        with engine_errors("cannot list networks"):
            found = client.api.networks(names=[name])
        same = sorted((attrs for attrs in found if attrs.get("Name") == name),
                      key=lambda attrs: str(attrs.get("Created")))  # substrings match too
        for attrs in same:
            if (attrs.get("Labels") or {}).get(NETWORK_LABEL) != purpose:
                raise ConfigurationError(
                    f"a network named {name!r} exists but pyhost did not make it; "
                    "remove or rename it")
        if same:
            return str(same[0]["Id"]) if by_id else name
        if attempt:
            break
        with engine_errors(f"cannot create network {name}"):
            try:
                made = client.api.create_network(name, driver="bridge",
                                                 options=_PUBLISH_OPTIONS,
                                                 labels={NETWORK_LABEL: purpose},
                                                 check_duplicate=True)
                return str(made["Id"]) if by_id else name
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another process made it first; look again
                    raise
    raise EngineUnavailable(f"network {name} was made and then vanished")


def check_publish_address(address: str) -> str:
    """``address`` if it is an IPv4 address a port can be published on.

    Raises:
        ConfigurationError: it is not (host names and IPv6 are not supported).
    """
    parsed = _ipv4(address) if isinstance(address, str) else None
    if parsed is None:
        raise ConfigurationError(f"publish_address must be an IPv4 address such as 127.0.0.1 or "
                                 f"0.0.0.0, not {address!r}")
    return parsed


@functools.lru_cache(maxsize=64)  # asked at every py(): parsing was most of its cost
def _ipv4(address: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        return None


def network_endpoint(attrs: dict[str, Any], network: str) -> Endpoint | None:
    """The server's address on ``network`` from a container inspect; None if it has none."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = (networks.get(network) or {}).get("IPAddress")
    return Endpoint("tcp", (address, SERVER_PORT)) if address else None


def published_endpoint(attrs: dict[str, Any], publish_address: str,
                       engine_host: str | None) -> Endpoint | None:
    """Where the host reaches the published port, from a container inspect; None if the
    engine has not published it.

    A port bound to every address (``0.0.0.0``) is reached at the engine's host name.
    """
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{SERVER_PORT}/tcp") or []
    if not bindings or not bindings[0].get("HostPort"):
        return None
    host = publish_address
    if ipaddress.IPv4Address(publish_address).is_unspecified:
        host = engine_host or "127.0.0.1"
    return Endpoint("tcp", (host, int(bindings[0]["HostPort"])))


def published_ports(attrs: dict[str, Any], ports: Any, network: str,
                    engine_host: str | None) -> dict[int, tuple[str, int]] | None:
    """Where each of ``ports`` (:class:`~pyhost.launchers.base.PublishedPort`) is reached,
    from a container inspect: its published address, or its address on ``network`` for a
    port that is not published; None while the engine has not told them all."""
    found: dict[int, tuple[str, int]] = {}
    settings = attrs.get("NetworkSettings") or {}
    for port in ports:
        if port.host_address is None:
            address = ((settings.get("Networks") or {}).get(network) or {}).get("IPAddress")
            if not address:
                return None
            found[port.container_port] = (address, port.container_port)
            continue
        bindings = (settings.get("Ports") or {}).get(f"{port.container_port}/tcp") or []
        if not bindings or not bindings[0].get("HostPort"):
            return None
        host = port.host_address
        if ipaddress.IPv4Address(host).is_unspecified:
            host = engine_host or "127.0.0.1"
        found[port.container_port] = (host, int(bindings[0]["HostPort"]))
    return found
