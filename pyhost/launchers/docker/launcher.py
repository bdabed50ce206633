"""The Docker launcher: each session server is a sandboxed container.

A session is reached in one of three ways (the sandbox is the same in each):

* local engine (default): network ``none``; the server listens on a Unix socket in a private
  0700 directory bind-mounted at ``/run/hxpy``. The directory is the session user's only
  until the handshake (the server makes its socket there, and unlinks it once the host is
  connected); then a root host makes it root's, so the session can write nothing there;
* ``network=NAME`` (Docker-in-Docker): the container joins that network and the server listens
  on TCP :data:`~pyhost.launchers.docker.networking.SERVER_PORT`; the host connects to its
  address there;
* remote engine, or one in a VM (Docker Desktop), which a Unix socket of this machine does
  not reach: the engine publishes that port on ``publish_address`` of its host.

The session key reaches the server on its standard input (attached once it started, closed
once written), never in its environment: ``docker inspect`` does not show it.

Bind-mount sources are paths as the engine sees them (:mod:`pyhost.launchers.docker.paths`).
Talks to the engine only through the docker SDK. Every container, socket directory and temp
directory it makes carries the owner's (host, pid, process start) and the session id, so
:func:`pyhost.launchers.docker.orphans.collect` can remove what a dead process left behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from ...errors import ConfigurationError, EngineUnavailable, ImageNotFound, SessionDied
from ..base import (
    Endpoint,
    Launcher,
    LaunchSpec,
    Volume,
    key_line,
    server_env,
)
from ..images import BuildProgress, BuiltImage, ImageRecipe
from ..ownership import Owner
from .client import docker_client, engine_errors
from .engine_watch import EngineWatch, watch_of
from .function_image import build_function_image, check_recipe
from .image import IMAGE_CANDIDATES, find_image, image_python, resolve_image
from .image_modules import image_modules
from .instance import DockerInstance, lock_socket_dir
from .iodir import IoAccess, io_access, sandbox_uid, sandbox_user
from .networking import (
    SERVER_PORT,
    check_network_name,
    check_publish_address,
    network_endpoint,
    publish_network,
    published_endpoint,
    published_ports,
    serve_network,
    session_network,
)
from .orphans import collect
from .paths import EngineView, engine_view
from .python_images import image_for_python

__all__ = ["DockerInstance", "DockerLauncher", "check_volumes", "lock_socket_dir"]

SOCKET_DIR_IN_CONTAINER = "/run/hxpy"
SOCKET_NAME = "hxpy.sock"

log = logging.getLogger("pyhost")


class DockerLauncher(Launcher):
    """Starts session servers as sandboxed containers on a Docker engine."""

    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None,
                 runtime_dir: str | None = None) -> None:
        self._client = client
        self.runtime_dir = runtime_dir or os.environ.get("PYHOST_RUNTIME_DIR") or None
        self.owner = Owner.current()
        self._collected = False
        self._engine: EngineView | None = None
        self._engine_lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    @property
    def engine(self) -> EngineView:
        """Where the engine is and how it sees our paths (asked once per launcher)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = engine_view(self.client)
            return self._engine

    @property
    def watch(self) -> EngineWatch:
        """What notices the engine going away (see :mod:`.engine_watch`)."""
        return watch_of(self.client)

    def wait_until_ready(self, timeout: float) -> bool:
        """Wait for the engine to answer a new connection (after it went away)."""
        return self.watch.wait_answering(timeout)

    def close(self) -> None:
        """Stop watching the engine (the next start watches again)."""
        if self._client is not None:
            self.watch.close()

    def check(self, spec: LaunchSpec) -> None:
        """The checks that need no engine: run when the session is made."""
        if spec.io_volume and spec.io_dir is not None and spec.io_required:
            raise ConfigurationError(f"io={spec.io_dir!r} and io_volume={spec.io_volume!r} "
                                     "both ask for /io; pass one of them")
        check_publish_address(spec.publish_address)
        for port in spec.ports:
            if port.host_address is not None:
                check_publish_address(port.host_address)
            elif not spec.network:
                raise ConfigurationError(
                    f"port {port.container_port} is not published (no host address): it is "
                    "reached only on an engine network; pass network=")
        if spec.network:
            check_network_name(spec.network)
        check_volumes(spec.volumes)
        placed = [name for name in ("node_selector", "affinity") if getattr(spec, name)]
        if placed:  # tolerations only permit: on one engine there is nothing they change
            raise ConfigurationError(
                f"{' and '.join(placed)}: launcher={self.name!r} runs sessions on one engine, "
                "so there is no node to choose; leave them out, or use launcher='swarm'")

    def python_version(self, image: str | None) -> str | None:
        """Read from the labels ``pyhost image build`` puts on the image (its base)."""
        return image_python(find_image(self.client, image)[1])

    def importable_names(self, image: str | None,
                         fresh: bool = False) -> frozenset[str] | None:
        """The image's top-level modules, asked of its own python3 once per image id
        (see :mod:`.image_modules`)."""
        return image_modules(self.client, image, fresh)

    def check_recipe(self, recipe: ImageRecipe) -> None:
        """The recipe's checks that need no engine (see :mod:`.function_image`)."""
        check_recipe(recipe)

    def build_image(self, recipe: ImageRecipe, progress: BuildProgress = None) -> BuiltImage:
        """Build a function's image on this engine (see :mod:`.function_image`)."""
        return build_function_image(self.client, recipe, progress)

    def image_for_python(self, version: str) -> str | None:
        """``hxpy:py<version>`` when built; None when the default image has that Python
        (see :func:`.python_images.image_for_python`)."""
        return image_for_python(self.client, version)

    def start(self, spec: LaunchSpec) -> DockerInstance:
        self.check(spec)
        self._collect_orphans_once()
        mark = self.watch.mark()  # before anything is made: a restart from now on is seen
        self.watch.remove_pending()
        published = self.engine.published  # no Unix socket of ours reaches the session
        # Checked before anything is made for the session.
        network = session_network(self.client, spec.network) if spec.network else None
        address = self._publish_address(spec.publish_address) if published and not network \
            else ""
        mounts, access = self._io_mounts(spec)
        mounts += [docker.types.Mount(v.target, v.source, type="volume", read_only=v.read_only,
                                      labels=self.owner.labels(spec.session_id))
                   for v in spec.volumes if v.kind == "volume"]
        socket_dir: str | None = None
        try:
            if network is not None:
                wiring = _Wiring.on_network(network)
            elif published:
                wiring = _Wiring.published(publish_network(self.client), address)
            else:
                # A replica publishing ports needs a bridge; its session keeps the socket.
                bridge = serve_network(self.client) if spec.ports else "none"
                socket_dir = self._socket_dir(spec.session_id, access.uid, access.gid)
                mounts.append(docker.types.Mount(SOCKET_DIR_IN_CONTAINER,
                                                 self._socket_source(socket_dir), type="bind"))
                wiring = _Wiring.unix(os.path.join(socket_dir, SOCKET_NAME), bridge)
            container = self._create_from_image(spec, f"{access.uid}:{access.gid}", mounts,
                                                wiring)
        except BaseException:
            if socket_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        instance = DockerInstance(self.client, container, wiring.endpoint, socket_dir,
                                  self.watch, mark)
        try:
            with engine_errors("the engine could not start the session container"):
                self.client.api.start(container)
            self._hand_key(instance, key_line(spec))
            if wiring.endpoint is None:
                instance.endpoint = self._tcp_endpoint(instance, wiring)
            if spec.ports:
                instance.ports = self._ports(instance, spec, wiring)
        except BaseException:
            instance.cleanup()
            raise
        return instance

    def _publish_address(self, requested: str) -> str:
        address = check_publish_address(requested)
        if (address == "0.0.0.0" and self.engine.location.remote
                and self.engine.location.host is None):
            raise ConfigurationError(
                f"publish_address='0.0.0.0' connects to the engine's host name, which "
                f"{self.engine.location.url} does not tell; pass that host's IP address as "
                "publish_address, or set DOCKER_HOST to the ssh:// or tcp:// URL")
        return address

    def _io_mounts(self, spec: LaunchSpec) -> tuple[list[Any], IoAccess]:
        """The /io mount (a volume, a bind mount of a directory the engine sees, or none) and
        the user the session runs as."""
        remote = self.engine.location.remote
        # Our uids mean nothing to a remote engine, and a fresh volume is the image's /io,
        # owned by the image's user.
        uid = sandbox_uid()
        fixed = IoAccess(uid, uid) if remote or spec.io_volume else None
        if spec.io_volume:
            return [docker.types.Mount("/io", spec.io_volume, type="volume")], fixed or \
                IoAccess(uid, uid)
        if spec.io_dir is None:
            return [], fixed or IoAccess(*sandbox_user())
        source = spec.io_host_path
        if source is None:
            if remote:
                if not spec.io_required:
                    log.info("the engine at %s is remote: the default io dir %s is not "
                             "mounted (use io_volume= for an /io)", self.engine.location.url,
                             spec.io_dir)
                    return [], IoAccess(uid, uid)
                raise ConfigurationError(
                    f"io={spec.io_dir!r} is a directory on this machine, but the engine at "
                    f"{self.engine.location.url} is remote and cannot mount it; use "
                    "io_volume='name' for a Docker volume at /io, or io=None")
            source = self.engine.engine_path(spec.io_dir)
            if source is None:
                raise ConfigurationError(
                    f"io={spec.io_dir!r} is in this container's own filesystem, which the "
                    "engine cannot mount; mount the io directory into this container from the "
                    "engine host (e.g. a volume or bind mount holding it), or pass "
                    "io_host_path= with the directory as the engine host sees it")
        access = fixed or io_access(spec.io_dir)
        if access.read_only:
            log.info("io dir %s is not writable by the session user %d: mounted read-only",
                     spec.io_dir, access.uid)
        mount = docker.types.Mount("/io", source, type="bind", read_only=access.read_only)
        return [mount], access

    def _socket_dir(self, session_id: str, uid: int, gid: int) -> str:
        socket_dir = tempfile.mkdtemp(prefix=f"pyhost-{session_id}-", dir=self.runtime_dir)
        os.chmod(socket_dir, 0o700)
        if os.getuid() == 0:
            os.chown(socket_dir, uid, gid)
        return socket_dir

    def _socket_source(self, socket_dir: str) -> str:
        source = self.engine.engine_path(socket_dir)
        if source is None:
            raise ConfigurationError(
                f"the session socket directory {socket_dir} is in this container's own "
                "filesystem, which the engine cannot mount; pass network= (a network this "
                "container and the sessions share), or set PYHOST_RUNTIME_DIR to a directory "
                "mounted into this container from the engine host")
        return source

    def _hand_key(self, instance: DockerInstance, line: bytes) -> None:
        """Write the key line to the started container's standard input, and close it.

        After the start, not before: the server reads its key only once it listens, some
        20 ms after it starts, so the attach is done while the interpreter starts instead
        of before (until our attach ends, stdin stays open; StdinOnce closes it then).

        Raises:
            SessionDied: the container ended before it took the key (its logs attached).
            EngineUnavailable: the engine failed.
        """
        try:
            with engine_errors("the engine could not attach to the session container's stdin"):
                stdin = self.client.api.attach_socket(instance.id,
                                                      params={"stdin": 1, "stream": 1})
            try:
                _send_key(stdin, line)
            finally:
                stdin.close()
        except EngineUnavailable as exc:
            status = instance.poll()
            if status is None:
                raise
            raise SessionDied(f"session container {instance.id[:12]} ended before it took "
                              f"its key: {status.describe()}", status.exit_code,
                              status.oom_killed) from exc

    def _tcp_endpoint(self, instance: DockerInstance, wiring: _Wiring) -> Endpoint:
        """Read the session's address (network) or published port back from the engine."""
        with engine_errors(f"cannot inspect container {instance.id[:12]}"):
            try:
                attrs = self.client.api.inspect_container(instance.id)
            except docker.errors.NotFound:
                attrs = {}
        if wiring.publish_address is None:
            endpoint = network_endpoint(attrs, wiring.network)
        else:
            endpoint = published_endpoint(attrs, wiring.publish_address,
                                          self.engine.location.host)
        if endpoint is not None:
            return endpoint
        status = instance.poll()
        where = (f"an address on network {wiring.network}" if wiring.publish_address is None
                 else f"a published port on {wiring.publish_address}")
        detail = f": {status.describe()}" if status else ""
        raise SessionDied(f"the engine gave session container {instance.id[:12]} no {where}"
                          f"{detail}", status.exit_code if status else None,
                          status.oom_killed if status else False)

    def _ports(self, instance: DockerInstance, spec: LaunchSpec,
               wiring: _Wiring) -> dict[int, tuple[str, int]]:
        """Where this process reaches each of the spec's ports, read back from the engine."""
        with engine_errors(f"cannot inspect container {instance.id[:12]}"):
            try:
                attrs = self.client.api.inspect_container(instance.id)
            except docker.errors.NotFound:
                attrs = {}
        found = published_ports(attrs, spec.ports, wiring.network, self.engine.location.host)
        if found is not None:
            return found
        status = instance.poll()
        detail = f": {status.describe()}" if status else ""
        raise SessionDied(f"the engine did not publish the ports of container "
                          f"{instance.id[:12]}{detail}", status.exit_code if status else None,
                          status.oom_killed if status else False)

    def _collect_orphans_once(self) -> None:
        """At a process's first start, remove what dead pyhost processes left (in the
        background: it must not delay the session); not with ``PYHOST_STARTUP_GC=0``, as
        in the supervisor of a detached run, whose caller swept just before."""
        if self._collected:
            return
        self._collected = True
        if os.environ.get("PYHOST_STARTUP_GC") == "0":  # a supervisor: its caller swept
            return

        def run() -> None:
            try:
                report = collect(self.client, self.runtime_dir)
            except Exception as exc:  # best effort; `pyhost gc` reports errors
                log.warning("start-up gc failed: %s", exc)
                return
            if report.containers or report.socket_dirs:
                log.info("start-up gc: %s", report)

        threading.Thread(target=run, name="pyhost-gc", daemon=True).start()

    def _create_from_image(self, spec: LaunchSpec, user: str, mounts: list[Any],
                           wiring: _Wiring) -> str:
        """Create the container from the image asked for, else the first default candidate.

        The image is not inspected first: the engine resolves the reference as it creates,
        so a tag moved since the last session is followed (nothing is remembered that could
        be stale), and a cold open saves a round trip. Only when the engine has no such image
        is the choice made by :func:`.image.resolve_image`, which says what to build.
        """
        reference = spec.image or IMAGE_CANDIDATES[0]
        created = self._create(spec, reference, user, mounts, wiring)
        if created is None:
            fallback = resolve_image(self.client, spec.image)  # raises when there is none
            created = self._create(spec, fallback, user, mounts, wiring)
        if created is None:
            raise ImageNotFound(f"image {reference!r} went away as the session was created; "
                                "build it with `pyhost image build`")
        return created

    def _create(self, spec: LaunchSpec, image: str, user: str, mounts: list[Any],
                wiring: _Wiring) -> str | None:
        """The new container's id; None when the engine has no image ``image``."""
        api = self.client.api
        port_bindings: dict[int, tuple[Any, ...]] = {}
        if wiring.publish_address is not None:
            # No host port: the engine picks a free one, read back after the start.
            port_bindings[SERVER_PORT] = (wiring.publish_address,)
        for port in spec.ports:
            if port.host_address is not None:
                port_bindings[port.container_port] = (
                    (port.host_address, port.host_port) if port.host_port
                    else (port.host_address,))
        exposed = [*port_bindings] + [port.container_port for port in spec.ports
                                      if port.host_address is None]
        host_config = api.create_host_config(
            auto_remove=spec.auto_remove,
            network_mode=wiring.network_mode,
            port_bindings=port_bindings or None,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777",
                   **{v.target: f"rw,nosuid,nodev,size={v.size or spec.tmp_size},mode=1777"
                      for v in spec.volumes if v.kind == "tmpfs"}},
            mounts=mounts,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,  # no swap: a memory bomb ends in OOM, not thrashing
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            log_config=docker.types.LogConfig(
                type="json-file", config={"max-size": "1m", "max-file": "1"}),
            ulimits=self.engine.ulimits(),
        )
        has_io = bool(spec.io_volume) or any(mount["Target"] == "/io" for mount in mounts)
        with engine_errors(f"the engine could not create the session container from {image}"):
            try:
                created = api.create_container(
                    image, name=f"pyhost-{spec.session_id}", user=user,
                    environment=server_env(spec, wiring.listen),
                    labels=self.owner.labels(spec.session_id), host_config=host_config,
                    network_disabled=False, working_dir="/io" if has_io else None,
                    ports=exposed or None,
                    # The key comes on stdin, never in the configuration. Not detached, so
                    # docker-py also sets StdinOnce: stdin closes when our attach ends.
                    stdin_open=True,
                )
            except docker.errors.ImageNotFound:
                return None
            except docker.errors.APIError as exc:
                if exc.status_code == 400:  # a malformed reference, or another bad request:
                    resolve_image(self.client, image)  # ImageNotFound says if it was that
                raise
        return str(created["Id"])


def _send_key(stdin: Any, line: bytes) -> None:
    """Write the key line to an attached stdin (docker-py's socket, or its wrapper)."""
    raw = getattr(stdin, "_sock", stdin)
    try:
        raw.sendall(line)
    except OSError as exc:
        raise EngineUnavailable(f"could not hand the session key to the container: {exc}") \
            from exc


# Where a volume may not go: the sandbox's own mounts and the system's directories.
_RESERVED_TARGETS = ("/io", "/tmp", SOCKET_DIR_IN_CONTAINER, "/proc", "/sys", "/dev", "/etc",
                     "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var", "/run", "/opt")


def check_volumes(volumes: tuple[Volume, ...]) -> None:
    """Refuse volumes that would land on the sandbox's own mounts or system directories.

    Raises:
        ConfigurationError: naming the volume.
    """
    seen = set()
    for volume in volumes:
        target = volume.target.rstrip("/") or "/"
        if not target.startswith("/") or ".." in target.split("/") or any(
                target == reserved or target.startswith(reserved + "/")
                for reserved in _RESERVED_TARGETS) or target == "/":
            raise ConfigurationError(
                f"volume at {volume.target!r}: mount volumes on an absolute path of their own "
                f"(e.g. /data), not on / or under {', '.join(_RESERVED_TARGETS)}")
        if target in seen:
            raise ConfigurationError(f"two volumes at {volume.target!r}")
        seen.add(target)
        if volume.kind == "volume" and not volume.source:
            raise ConfigurationError(f"volume at {volume.target!r}: name the engine volume")
        if volume.kind not in ("volume", "tmpfs"):
            raise ConfigurationError(f"volume at {volume.target!r}: kind {volume.kind!r} is "
                                     "not 'volume' or 'tmpfs'")


@dataclass(frozen=True)
class _Wiring:
    """How a session is reached: where its server listens and on which network it sits.

    ``endpoint`` is None when the address is known only once the container runs.
    """

    network_mode: str
    listen: str
    endpoint: Endpoint | None = None
    network: str = "none"
    publish_address: str | None = None

    @classmethod
    def unix(cls, host_path: str, network: str = "none") -> _Wiring:
        return cls(network, f"unix:{SOCKET_DIR_IN_CONTAINER}/{SOCKET_NAME}",
                   Endpoint("unix", host_path), network=network)

    @classmethod
    def on_network(cls, network: str) -> _Wiring:
        return cls(network, f"tcp:0.0.0.0:{SERVER_PORT}", network=network)

    @classmethod
    def published(cls, network: str, address: str) -> _Wiring:
        return cls(network, f"tcp:0.0.0.0:{SERVER_PORT}", network=network,
                   publish_address=address)
