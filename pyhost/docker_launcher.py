"""The Docker launcher: each session server is a sandboxed container.

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
from typing import Any

import docker
import docker.errors
import requests.exceptions

from .errors import EngineUnavailable, ImageNotFound
from .launcher import ExitStatus, Instance, Launcher, LaunchSpec, Owner
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

    def __init__(self, client: docker.DockerClient, container_id: str, endpoint: Endpoint,
                 socket_dir: str | None) -> None:
        self.client = client
        self.id = container_id
        self.endpoint = endpoint
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

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def start(self, spec: LaunchSpec) -> DockerInstance:
        if spec.network is not None:
            raise NotImplementedError(
                "network sessions (Docker-in-Docker, TCP transport) are not available yet; "
                "sessions use network 'none' and a Unix socket")
        from .image import resolve_image

        self._collect_orphans_once()
        image = resolve_image(self.client, spec.image)
        uid, gid = sandbox_user()
        socket_dir = tempfile.mkdtemp(prefix=f"pyhost-{spec.session_id}-", dir=self.runtime_dir)
        try:
            os.chmod(socket_dir, 0o700)
            if os.getuid() == 0:
                os.chown(socket_dir, uid, gid)
            mounts = [docker.types.Mount(SOCKET_DIR_IN_CONTAINER, socket_dir, type="bind")]
            if spec.io_dir is not None:
                _prepare_io(spec.io_dir, uid, gid)
                mounts.append(docker.types.Mount("/io", spec.io_host_path or spec.io_dir,
                                                 type="bind", read_only=False))
            container = self._create(spec, image, f"{uid}:{gid}", mounts)
        except BaseException:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        endpoint = Endpoint("unix", os.path.join(socket_dir, SOCKET_NAME))
        instance = DockerInstance(self.client, container, endpoint, socket_dir)
        try:
            self.client.api.start(container)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            instance.cleanup()
            raise EngineUnavailable(f"the engine could not start the session container: "
                                    f"{exc}") from exc
        return instance

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

    def _create(self, spec: LaunchSpec, image: str, user: str, mounts: list[Any]) -> str:
        env = {
            **spec.env,
            "HXPY_KEY": spec.key,
            "HXPY_LISTEN": f"unix:{SOCKET_DIR_IN_CONTAINER}/{SOCKET_NAME}",
            "HXPY_MAX_FRAME": str(spec.max_frame),
            "HXPY_OUTPUT_CAP": str(spec.output_cap),
            "HXPY_LOG_LEVEL": spec.log_level,
        }
        if spec.fault:
            env["HXPY_FAULT"] = spec.fault
        api = self.client.api
        host_config = api.create_host_config(
            network_mode="none",
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
        try:
            created = api.create_container(
                image, name=f"pyhost-{spec.session_id}", user=user, environment=env,
                labels=owner_labels(self.owner, spec.session_id), host_config=host_config,
                network_disabled=False, working_dir="/io" if spec.io_dir else None,
            )
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(f"image {image!r} is not present; run `pyhost image build`") \
                from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineUnavailable(f"the engine could not create the session container: "
                                    f"{exc}") from exc
        return str(created["Id"])
