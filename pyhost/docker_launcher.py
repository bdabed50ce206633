"""The Docker launcher: each session server is a sandboxed container.

A session is reached in one of three ways (the sandbox is the same in each):

* local engine (default): network ``none``; the server listens on a Unix socket in a private
  0700 directory bind-mounted at ``/run/hxpy``;
* ``network=NAME`` (Docker-in-Docker): the container joins that network and the server listens
  on TCP :data:`~pyhost.networking.SERVER_PORT`; the host connects to its address there;
* remote engine: the engine publishes that port on ``publish_address`` of its host.

Bind-mount sources are paths as the engine sees them (:mod:`pyhost.engine_paths`).
Talks to the engine only through the docker SDK. Every container, socket directory and temp
directory it makes carries the owner's (host, pid, process start) and the session id, so
:func:`pyhost.orphans.collect` can remove what a dead process left behind.
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
import requests.exceptions

from .engine_paths import EngineView
from .errors import EngineUnavailable, ImageNotFound, PyHostError, SessionDied
from .launcher import ExitStatus, Instance, Launcher, LaunchSpec, Owner
from .networking import (
    SERVER_PORT,
    check_publish_address,
    network_endpoint,
    publish_network,
    published_endpoint,
    session_network,
)
from .transport import Endpoint

__all__ = ["DockerLauncher", "LABEL_PREFIX", "SANDBOX_UID"]

LABEL_PREFIX = "org.pyhost"
SANDBOX_UID = 1000  # the image's non-root user
SOCKET_DIR_IN_CONTAINER = "/run/hxpy"
SOCKET_NAME = "hxpy.sock"

log = logging.getLogger("pyhost")

_client_lock = threading.Lock()
_client: docker.DockerClient | None = None


def docker_client() -> docker.DockerClient:
    """One shared SDK client for this process (it is thread-safe and pools connections)."""
    global _client
    with _client_lock:
        if _client is None:
            try:
                client = docker.from_env(timeout=60)
                client.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise EngineUnavailable(
                    f"no Docker engine answers ({exc}); run `pyhost engine up`, or set "
                    "DOCKER_HOST to an engine you can reach") from exc
            _client = client
        return _client


def owner_labels(owner: Owner, session_id: str) -> dict[str, str]:
    """The labels that tie a container to its session and its owner process."""
    return {
        f"{LABEL_PREFIX}.session": session_id,
        f"{LABEL_PREFIX}.owner.host": owner.host,
        f"{LABEL_PREFIX}.owner.pid": str(owner.pid),
        f"{LABEL_PREFIX}.owner.started": repr(owner.started),
    }


def sandbox_user() -> tuple[int, int]:
    """Run as the host user when that is not root (files in /io stay theirs), else uid 1000."""
    uid = os.getuid()
    if uid == 0:
        return SANDBOX_UID, SANDBOX_UID
    return uid, os.getgid()


def _prepare_io(path: str, uid: int, gid: int) -> None:
    """Create the io directory if missing, owned by the sandbox user so it can write there."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        if os.getuid() == 0:
            os.chown(path, uid, gid)


class DockerInstance(Instance):
    """A started container and the socket directory it listens in."""

    def __init__(self, client: docker.DockerClient, container_id: str,
                 endpoint: Endpoint | None, socket_dir: str | None) -> None:
        self.client = client
        self.id = container_id
        # A TCP address is known only once the container runs; the launcher sets it then.
        self.endpoint = endpoint or Endpoint("tcp", ("", 0))
        self.socket_dir = socket_dir
        self._removed = False

    def poll(self) -> ExitStatus | None:
        try:
            state = self.client.api.inspect_container(self.id)["State"]
        except docker.errors.NotFound:
            return ExitStatus(None, error="the container was removed")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineUnavailable(f"cannot inspect container {self.id[:12]}: {exc}") from exc
        if state.get("Running"):
            return None
        return ExitStatus(state.get("ExitCode"), bool(state.get("OOMKilled")),
                          state.get("Error") or "", self._logs())

    def wait(self, timeout: float) -> ExitStatus | None:
        try:
            self.client.api.wait(self.id, timeout=max(timeout, 0.01))
        except (requests.exceptions.RequestException, docker.errors.DockerException):
            pass
        return self.poll()

    def _logs(self) -> str:
        try:
            raw = self.client.api.logs(self.id, stdout=True, stderr=True, tail=20)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def kill(self) -> None:
        try:
            self.client.api.kill(self.id)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running any more
                raise EngineUnavailable(f"cannot kill container {self.id[:12]}: {exc}") from exc

    def cleanup(self) -> None:
        if not self._removed:
            try:
                self.client.api.remove_container(self.id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    raise EngineUnavailable(
                        f"cannot remove container {self.id[:12]}: {exc}") from exc
            self._removed = True
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None


class DockerLauncher(Launcher):
    """Starts session servers as sandboxed containers on a Docker engine."""

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
                self._engine = EngineView(self.client)
            return self._engine

    def start(self, spec: LaunchSpec) -> DockerInstance:
        from .image import resolve_image

        self._collect_orphans_once()
        image = resolve_image(self.client, spec.image)
        remote = self.engine.location.remote
        # Our uid means nothing to a remote engine, and a fresh volume is the image's /io,
        # owned by the image's user.
        uid, gid = (SANDBOX_UID, SANDBOX_UID) if remote or spec.io_volume else sandbox_user()
        # Checked before anything is made for the session.
        network = session_network(self.client, spec.network) if spec.network else None
        address = self._publish_address(spec.publish_address) if remote and not network else ""
        mounts = self._io_mounts(spec, uid, gid)
        socket_dir: str | None = None
        try:
            if network is not None:
                wiring = _Wiring.on_network(network)
            elif remote:
                wiring = _Wiring.published(publish_network(self.client), address)
            else:
                socket_dir = self._socket_dir(spec.session_id, uid, gid)
                mounts.append(docker.types.Mount(SOCKET_DIR_IN_CONTAINER,
                                                 self._socket_source(socket_dir), type="bind"))
                wiring = _Wiring.unix(os.path.join(socket_dir, SOCKET_NAME))
            container = self._create(spec, image, f"{uid}:{gid}", mounts, wiring)
        except BaseException:
            if socket_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        instance = DockerInstance(self.client, container, wiring.endpoint, socket_dir)
        try:
            self.client.api.start(container)
            if wiring.endpoint is None:
                instance.endpoint = self._tcp_endpoint(instance, wiring)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            instance.cleanup()
            raise EngineUnavailable(f"the engine could not start the session container: "
                                    f"{exc}") from exc
        except BaseException:
            instance.cleanup()
            raise
        return instance

    def _publish_address(self, requested: str) -> str:
        address = check_publish_address(requested)
        if address == "0.0.0.0" and self.engine.location.host is None:
            raise PyHostError(
                f"publish_address='0.0.0.0' connects to the engine's host name, which "
                f"{self.engine.location.url} does not tell; pass that host's IP address as "
                "publish_address, or set DOCKER_HOST to the ssh:// or tcp:// URL")
        return address

    def _io_mounts(self, spec: LaunchSpec, uid: int, gid: int) -> list[Any]:
        """The /io mount: a volume, a bind mount of a directory the engine sees, or none."""
        if spec.io_volume:
            if spec.io_dir is not None and spec.io_required:
                raise ValueError(f"io={spec.io_dir!r} and io_volume={spec.io_volume!r} both "
                                 "ask for /io; pass one of them")
            return [docker.types.Mount("/io", spec.io_volume, type="volume")]
        if spec.io_dir is None:
            return []
        source = spec.io_host_path
        if source is None:
            if self.engine.location.remote:
                if not spec.io_required:
                    log.info("the engine at %s is remote: the default io dir %s is not "
                             "mounted (use io_volume= for an /io)", self.engine.location.url,
                             spec.io_dir)
                    return []
                raise PyHostError(
                    f"io={spec.io_dir!r} is a directory on this machine, but the engine at "
                    f"{self.engine.location.url} is remote and cannot mount it; use "
                    "io_volume='name' for a Docker volume at /io, or io=None")
            source = self.engine.engine_path(spec.io_dir)
            if source is None:
                raise PyHostError(
                    f"io={spec.io_dir!r} is in this container's own filesystem, which the "
                    "engine cannot mount; mount the io directory into this container from the "
                    "engine host (e.g. a volume or bind mount holding it), or pass "
                    "io_host_path= with the directory as the engine host sees it")
        if not self.engine.location.remote:
            _prepare_io(spec.io_dir, uid, gid)
        return [docker.types.Mount("/io", source, type="bind", read_only=False)]

    def _socket_dir(self, session_id: str, uid: int, gid: int) -> str:
        socket_dir = tempfile.mkdtemp(prefix=f"pyhost-{session_id}-", dir=self.runtime_dir)
        os.chmod(socket_dir, 0o700)
        if os.getuid() == 0:
            os.chown(socket_dir, uid, gid)
        return socket_dir

    def _socket_source(self, socket_dir: str) -> str:
        source = self.engine.engine_path(socket_dir)
        if source is None:
            raise PyHostError(
                f"the session socket directory {socket_dir} is in this container's own "
                "filesystem, which the engine cannot mount; pass network= (a network this "
                "container and the sessions share), or set PYHOST_RUNTIME_DIR to a directory "
                "mounted into this container from the engine host")
        return source

    def _tcp_endpoint(self, instance: DockerInstance, wiring: _Wiring) -> Endpoint:
        """Read the session's address (network) or published port back from the engine."""
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

    def _collect_orphans_once(self) -> None:
        """At a process's first start, remove what dead pyhost processes left (in the
        background: it must not delay the session)."""
        if self._collected:
            return
        self._collected = True
        from .orphans import collect

        def run() -> None:
            try:
                report = collect(self.client, self.runtime_dir)
            except Exception as exc:  # best effort; `pyhost gc` reports errors
                log.warning("start-up gc failed: %s", exc)
                return
            if report.containers or report.socket_dirs:
                log.info("start-up gc: %s", report)

        threading.Thread(target=run, name="pyhost-gc", daemon=True).start()

    def _create(self, spec: LaunchSpec, image: str, user: str, mounts: list[Any],
                wiring: _Wiring) -> str:
        env = {
            **spec.env,
            "HXPY_KEY": spec.key,
            "HXPY_LISTEN": wiring.listen,
            "HXPY_MAX_FRAME": str(spec.max_frame),
            "HXPY_OUTPUT_CAP": str(spec.output_cap),
            "HXPY_SPIN_US": str(round(spec.spin * 1e6)),
            "HXPY_LOG_LEVEL": spec.log_level,
        }
        if spec.fault:
            env["HXPY_FAULT"] = spec.fault
        api = self.client.api
        port_bindings = None
        if wiring.publish_address is not None:
            # No host port: the engine picks a free one, read back after the start.
            port_bindings = {SERVER_PORT: (wiring.publish_address,)}
        host_config = api.create_host_config(
            network_mode=wiring.network_mode,
            port_bindings=port_bindings,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777"},
            mounts=mounts,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit,
            mem_limit=spec.mem_limit,
            memswap_limit=spec.mem_limit,  # no swap: a memory bomb ends in OOM, not thrashing
            nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
            log_config=docker.types.LogConfig(
                type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )
        has_io = bool(spec.io_volume) or any(mount["Target"] == "/io" for mount in mounts)
        try:
            created = api.create_container(
                image, name=f"pyhost-{spec.session_id}", user=user, environment=env,
                labels=owner_labels(self.owner, spec.session_id), host_config=host_config,
                network_disabled=False, working_dir="/io" if has_io else None,
                ports=[SERVER_PORT] if port_bindings else None,
            )
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(f"image {image!r} is not present; run `pyhost image build`") \
                from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineUnavailable(f"the engine could not create the session container: "
                                    f"{exc}") from exc
        return str(created["Id"])


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
    def unix(cls, host_path: str) -> _Wiring:
        return cls("none", f"unix:{SOCKET_DIR_IN_CONTAINER}/{SOCKET_NAME}",
                   Endpoint("unix", host_path))

    @classmethod
    def on_network(cls, network: str) -> _Wiring:
        return cls(network, f"tcp:0.0.0.0:{SERVER_PORT}", network=network)

    @classmethod
    def published(cls, network: str, address: str) -> _Wiring:
        return cls(network, f"tcp:0.0.0.0:{SERVER_PORT}", network=network,
                   publish_address=address)
