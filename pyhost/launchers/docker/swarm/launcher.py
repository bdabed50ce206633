"""The Swarm launcher: each session server is the one task of a Swarm service.

Swarm places the task on a node; pyhost never picks one. A session is a ``replicated-job``
service (one task, never restarted: a session that ended is over, and a job's retries are the
runtime's ``backoff_limit``, never also Swarm's). The task keeps the session sandbox: the
sandbox uid (61000 unless ``PYHOST_SANDBOX_UID``), read-only root, every capability
dropped, memory/CPU/pids limits. One setting cannot follow: the engine's service API (1.41
on Docker 20.10) has no ``no-new-privileges`` for a task (set it daemon-wide,
``"no-new-privileges": true`` in daemon.json, on nodes where it matters; docs/security.md).
It joins the attachable overlay :data:`SESSION_NETWORK` and is reached in one of two ways:

* from outside the cluster (the default): its server port is published in ``host`` mode on
  the node running it (the routing mesh is not used, so no IPVS is needed) and the host
  connects to that node's address; the session key guards the port;
* ``network=NAME`` (pyhost itself runs in a container on that attachable overlay): the host
  connects to the task's address on it.

Secrets (``LaunchSpec.secrets``) become Swarm secrets made for the session, mounted for the
sandbox uid alone and read into the server's environment at its start (``HXPY_SECRETS_DIR``);
the session key is one more such secret, read by the server from its file
(``HXPY_KEY_FROM=file:...``). The service's spec never holds a value (Swarm carries secrets
over its own TLS, which a session's published port lacks), and they are removed with the
service.

Ports the user code listens on (``LaunchSpec.ports``: a serve replica's HTTP port) are
published in ``host`` mode too, on the task's node, at ``host_port`` or one the engine picks:
Swarm binds such a port on every address of the node (it has no per-port address), so
``host_address`` only says that the port is published. A port with no host address (ClusterIP)
is reached at the task's address on its network.

What a cluster cannot give: a directory of this machine at ``/io`` (use ``io_volume=``, a
volume on the node) and a Unix socket.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import docker
import docker.errors
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)
from docker.utils import parse_bytes

from ....errors import ConfigurationError, EngineUnavailable, SessionDied
from ...base import Endpoint, ExitStatus, Instance, Launcher, LaunchSpec, server_env
from ...ownership import SESSION_LABEL, Owner
from ..client import docker_client, engine_errors
from ..image import find_image, image_python, resolve_image
from ..image_modules import image_modules
from ..iodir import sandbox_uid
from ..launcher import check_volumes
from ..networking import SERVER_PORT, check_network_name
from ..python_images import image_for_python
from .cluster import SESSION_NETWORK, ensure_network, ipvs_available, require_manager
from .placement import placement_constraints

__all__ = ["SwarmInstance", "SwarmLauncher"]

log = logging.getLogger("pyhost")

# Task states after which a task never runs again.
_ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
_START_TIMEOUT = 120.0  # pulling is impossible here; a slow scheduler or a busy node is not
_POLL = 0.02
_SECRETS_DIR = "/run/secrets"
# Not an identifier, so the server does not put it into the environment with the others.
_KEY_SECRET = "hxpy-key"


class SwarmInstance(Instance):
    """A service whose one task runs the session server."""

    def __init__(self, client: docker.DockerClient, service_id: str,
                 secret_ids: tuple[str, ...] = ()) -> None:
        self.client = client
        self.id = service_id
        self.secret_ids = secret_ids
        self.endpoint = Endpoint("tcp", ("", 0))  # known once the task runs
        self.container_id = ""  # the task's container, once it runs
        self._removed = False

    def task(self) -> dict[str, Any] | None:
        """The service's newest task; None while it has none (or the service is gone)."""
        with engine_errors(f"cannot list the tasks of service {self.id[:12]}"):
            try:
                tasks = self.client.api.tasks(filters={"service": self.id})
            except docker.errors.NotFound:
                return None
        if not tasks:
            return None
        return max(tasks, key=lambda task: str(task.get("CreatedAt", "")))

    def poll(self) -> ExitStatus | None:
        if self._removed:
            return ExitStatus(None, error="the service was removed")
        task = self.task()
        if task is None:
            if not self._service_exists():
                return ExitStatus(None, error="the service was removed")
            return None
        status = task.get("Status") or {}
        if status.get("State") not in _ENDED:
            return None
        container = status.get("ContainerStatus") or {}
        return ExitStatus(container.get("ExitCode"), error=str(status.get("Err") or
                                                               status.get("Message") or ""),
                          logs=self._logs())

    def wait(self, timeout: float) -> ExitStatus | None:
        # Swarm has no wait for a task; a short poll is fine here: it runs only once a
        # session's connection has already broken, to tell why.
        deadline = time.monotonic() + timeout
        while True:
            status = self.poll()
            if status is not None or time.monotonic() >= deadline:
                return status
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    def _service_exists(self) -> bool:
        with engine_errors(f"cannot inspect service {self.id[:12]}"):
            try:
                self.client.api.inspect_service(self.id)
                return True
            except docker.errors.NotFound:
                return False

    def _logs(self) -> str:
        try:
            with engine_errors("reading the service's logs"):
                raw = self.client.api.service_logs(self.id, stdout=True, stderr=True, tail=20)
                data = b"".join(raw) if not isinstance(raw, bytes) else raw
        except (EngineUnavailable, docker.errors.APIError):
            return ""
        return data.decode("utf-8", "replace")

    def kill(self) -> None:
        self.cleanup()  # a task cannot be killed alone: removing its service stops it

    def cleanup(self) -> None:
        if self._removed:
            return
        try:
            with engine_errors(f"cannot remove service {self.id[:12]}"):
                try:
                    self.client.api.remove_service(self.id)
                except docker.errors.NotFound:
                    pass
        finally:
            # Even when the service could not be removed: a secret in use stays (the engine
            # refuses), one no longer used goes now rather than at the owner's death.
            with contextlib.suppress(EngineUnavailable):
                _remove_secrets(self.client, self.secret_ids)
        self._removed = True
        # Swarm keeps the exited container of a finished job task after its service goes;
        # remove it when it is on this engine (on another node its engine keeps it).
        if self.container_id:
            with engine_errors(f"cannot remove container {self.container_id[:12]}"):
                try:
                    self.client.api.remove_container(self.container_id, force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # 409: its removal is under way already
                        raise


class SwarmLauncher(Launcher):
    """Starts session servers as Swarm services on the cluster of a manager engine."""

    name = "swarm"

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self.owner = Owner.current()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def check(self, spec: LaunchSpec) -> None:
        """The checks that need no engine."""
        if spec.io_dir is not None and spec.io_required and not spec.io_volume:
            raise ConfigurationError(
                f"io={spec.io_dir!r} is a directory on this machine, which the nodes of a "
                "swarm cannot mount; use io_volume='name' (a volume on the task's node) or "
                "io=None")
        if spec.io_host_path:
            raise ConfigurationError("io_host_path= names a path on an engine host; on a "
                                     "swarm use io_volume=")
        if spec.network:
            check_network_name(spec.network)
        for port in spec.ports:
            if port.host_address is None and not spec.network:
                raise ConfigurationError(
                    f"port {port.container_port} is not published (no host address): it is "
                    "reached only on an overlay network pyhost is on too; pass network=")
        check_volumes(spec.volumes)
        _constraints(spec)  # refuses what a swarm cannot express

    def load_balancer_problem(self) -> str | None:
        """The routing mesh needs IPVS in the kernel; and serve replicas here are one task
        each (each carries its own session channel), which the mesh cannot front."""
        if ipvs_available() is False:
            return ("the kernel has no IPVS, so the swarm's routing mesh (ingress ports, "
                    "service VIPs) cannot answer (`pyhost doctor` shows it)")
        return ("serve replicas on this launcher are one task each, supervised over their "
                "own session channel, which the routing mesh cannot front yet")

    def python_version(self, image: str | None) -> str | None:
        """Read from the image's labels on the manager (each node holds the same image)."""
        return image_python(find_image(self.client, image)[1])

    def importable_names(self, image: str | None,
                         fresh: bool = False) -> frozenset[str] | None:
        """The image's top-level modules, asked of its own python3 once per image id on
        the manager, which holds the same image as every node (:mod:`..image_modules`)."""
        return image_modules(self.client, image, fresh)

    def image_for_python(self, version: str) -> str | None:
        """As on a plain engine: ``hxpy:py<version>``, or the default image for its own
        Python."""
        return image_for_python(self.client, version)

    def start(self, spec: LaunchSpec) -> SwarmInstance:
        self.check(spec)
        require_manager(self.client)
        image = resolve_image(self.client, spec.image)
        network = spec.network or SESSION_NETWORK
        if spec.network:
            self._check_attachable(spec.network)
        else:
            ensure_network(self.client)
        secrets = _make_secrets(self.client, {**spec.secrets, _KEY_SECRET: spec.key},
                                self.owner.labels(spec.session_id))
        try:
            service_id = self._create(spec, image, network, secrets)
        except BaseException:
            _remove_secrets(self.client, tuple(secrets.values()))
            raise
        instance = SwarmInstance(self.client, service_id, tuple(secrets.values()))
        instance.secrets_delivered = True
        try:
            instance.endpoint = self._endpoint(instance, network, not spec.network,
                                               _constraints(spec))
            if spec.ports:
                instance.ports = self._ports(instance, spec, network)
        except BaseException:
            instance.cleanup()
            raise
        return instance

    def _check_attachable(self, name: str) -> None:
        with engine_errors(f"cannot inspect network {name!r}"):
            try:
                attrs = self.client.api.inspect_network(name)
            except docker.errors.NotFound:
                raise ConfigurationError(f"network={name!r}: the swarm has no such network; "
                                         "create an attachable overlay network and run "
                                         "pyhost in a container on it") from None
        if attrs.get("Driver") != "overlay":
            raise ConfigurationError(f"network={name!r} is a {attrs.get('Driver')} network; "
                                     "a swarm task joins an overlay network")

    def _create(self, spec: LaunchSpec, image: str, network: str,
                secrets: dict[str, str]) -> str:
        mounts = [Mount("/tmp", None, type="tmpfs", tmpfs_size=_bytes(spec.tmp_size))]
        mounts += [Mount(v.target, None, type="tmpfs", tmpfs_size=_bytes(v.size or
                                                                            spec.tmp_size))
                   for v in spec.volumes if v.kind == "tmpfs"]
        mounts += [Mount(v.target, v.source, type="volume", read_only=v.read_only,
                         labels=self.owner.labels(spec.session_id))
                   for v in spec.volumes if v.kind == "volume"]
        if spec.io_volume:
            mounts.append(Mount("/io", spec.io_volume, type="volume"))
        labels = self.owner.labels(spec.session_id)
        env = server_env(spec, f"tcp:0.0.0.0:{SERVER_PORT}",
                         key_from=f"file:{_SECRETS_DIR}/{_KEY_SECRET}")
        if spec.secrets:
            env["HXPY_SECRETS_DIR"] = _SECRETS_DIR
        uid = sandbox_uid()
        constraints = _constraints(spec)
        references = [SecretReference(secret_id, _secret_name(spec.session_id, name),
                                      filename=name, uid=str(uid), gid=str(uid), mode=0o400)
                      for name, secret_id in secrets.items()]
        container = ContainerSpec(
            image, user=f"{uid}:{uid}", env=env, secrets=references,
            labels=labels, mounts=mounts, read_only=True, cap_drop=["ALL"], init=True,
            workdir="/io" if spec.io_volume else "/tmp")
        resources = Resources(cpu_limit=int(spec.cpus * 1e9) if spec.cpus else None,
                              mem_limit=_bytes(spec.mem_limit) if spec.mem_limit else None)
        resources.setdefault("Limits", {})["Pids"] = spec.pids_limit
        template = TaskTemplate(
            container, resources=resources, restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=constraints) if constraints else None,
            networks=[network],
            log_driver={"Name": "json-file", "Options": {"max-size": "1m", "max-file": "1"}})
        ports = [] if spec.network else [{"Protocol": "tcp", "TargetPort": SERVER_PORT,
                                          "PublishMode": "host"}]
        ports += [{"Protocol": "tcp", "TargetPort": port.container_port, "PublishMode": "host",
                   **({"PublishedPort": port.host_port} if port.host_port else {})}
                  for port in spec.ports if port.host_address is not None]
        with engine_errors(f"the swarm could not create a service from {image}"):
            created = self.client.api.create_service(
                template, name=f"pyhost-{spec.session_id}", labels=labels,
                mode=ServiceMode("replicated-job", concurrency=1, replicas=1),
                endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports or None))
        return str(created["ID"])

    def _endpoint(self, instance: SwarmInstance, network: str, published: bool,
                  placement: list[str]) -> Endpoint:
        """Wait until the task runs; where it is reached (the node's published port, or its
        address on the network)."""
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            task = instance.task()
            status = (task or {}).get("Status") or {}
            state = status.get("State")
            if state == "running":
                instance.container_id = str(
                    (status.get("ContainerStatus") or {}).get("ContainerID") or "")
                endpoint = (self._published(task) if published
                            else _network_address(task, network))
                if endpoint is not None:
                    return endpoint
            elif state == "pending" and "no suitable node" in str(status.get("Err")):
                # Swarm would keep it pending until a fitting node joins; a session waits
                # for no such thing.
                raise ConfigurationError(f"no node of the swarm can run the session: "
                                         f"{status.get('Err')} (placement: "
                                         f"{', '.join(placement) or 'none'})")
            elif state in _ENDED:
                ended = instance.poll() or ExitStatus(None, error=str(status.get("Err")))
                raise SessionDied(f"the session task of service {instance.id[:12]} ended "
                                  f"before it served: {ended.describe()}",
                                  ended.exit_code, False)
            if time.monotonic() > deadline:
                why = status.get("Err") or status.get("Message") or state or "no task"
                raise SessionDied(f"the swarm did not start service {instance.id[:12]} in "
                                  f"{_START_TIMEOUT:.0f} s ({why})", None, False)
            time.sleep(_POLL)

    def _published(self, task: Any) -> Endpoint | None:
        port = _published_port(task, SERVER_PORT)
        if not port:
            return None
        return Endpoint("tcp", (self._node_address(str(task.get("NodeID"))), port))

    def _ports(self, instance: SwarmInstance, spec: LaunchSpec,
               network: str) -> dict[int, tuple[str, int]]:
        """Where each of the spec's ports is reached: the node's address and published port,
        or the task's address on its network."""
        task = instance.task() or {}
        found: dict[int, tuple[str, int]] = {}
        for port in spec.ports:
            if port.host_address is None:
                on_network = _network_address(task, network)
                if on_network is not None:
                    found[port.container_port] = (str(on_network.address[0]),
                                                  port.container_port)
                continue
            published = _published_port(task, port.container_port)
            if published:
                found[port.container_port] = (self._node_address(str(task.get("NodeID"))),
                                              published)
        missing = [port.container_port for port in spec.ports
                   if port.container_port not in found]
        if missing:
            raise SessionDied(f"the swarm did not tell where port(s) {missing} of service "
                              f"{instance.id[:12]} are reached", None, False)
        return found

    def _node_address(self, node_id: str) -> str:
        with engine_errors(f"cannot inspect node {node_id[:12]}"):
            node = self.client.api.inspect_node(node_id)
        address = str((node.get("Status") or {}).get("Addr") or "")
        if not address or address == "0.0.0.0":
            raise SessionDied(f"the swarm does not tell the address of node {node_id[:12]}",
                              None, False)
        return address


def _secret_name(session_id: str, name: str) -> str:
    return f"pyhost-{session_id}-{name}"


def _make_secrets(client: docker.DockerClient, values: Any, labels: dict[str, str]
                 ) -> dict[str, str]:
    """Create one Swarm secret per value; name -> secret id. Their names carry the session id
    and their labels the owner, so ``pyhost gc`` finds those a dead process left."""
    session_id = labels.get(SESSION_LABEL, "")
    made: dict[str, str] = {}
    try:
        for name, value in values.items():
            with engine_errors(f"the swarm refused to make the secret for {name}"):
                created = client.api.create_secret(_secret_name(session_id, name),
                                                   value.encode("utf-8"), labels=labels)
            made[name] = str(created["ID"])
    except BaseException:
        _remove_secrets(client, tuple(made.values()))
        raise
    return made


def _remove_secrets(client: docker.DockerClient, secret_ids: tuple[str, ...]) -> None:
    """Remove secrets (idempotent)."""
    for secret_id in secret_ids:
        with engine_errors(f"cannot remove secret {secret_id[:12]}"):
            try:
                client.api.remove_secret(secret_id)
            except docker.errors.NotFound:
                pass


def _published_port(task: Any, target: int) -> int:
    """The node port a task's ``target`` port is published on; 0 while it is not."""
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    return next((int(p["PublishedPort"]) for p in ports
                 if p.get("TargetPort") == target and p.get("PublishedPort")), 0)


def _network_address(task: Any, network: str) -> Endpoint | None:
    for attachment in task.get("NetworksAttachments") or []:
        net = attachment.get("Network") or {}
        if network in (net.get("ID"), (net.get("Spec") or {}).get("Name")):
            for address in attachment.get("Addresses") or []:
                return Endpoint("tcp", (address.split("/")[0], SERVER_PORT))
    return None


def _constraints(spec: LaunchSpec) -> list[str]:
    """The task's placement constraints (``node.labels.K==V``) from the spec's placement."""
    return placement_constraints(spec.node_selector, spec.affinity, spec.tolerations)


def _bytes(size: str | int) -> int:
    """Bytes of a Docker size (``512m``, ``1g``, an int); Swarm wants numbers."""
    try:
        return int(parse_bytes(size))
    except docker.errors.DockerException as exc:
        raise ConfigurationError(f"size {size!r}: {exc}") from None
