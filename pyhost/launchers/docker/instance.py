"""A started session container, as the Docker launcher (:mod:`.launcher`) hands it to the
session: how it ended (and whether its engine went away meanwhile), stopping it with a grace,
and removing it with its socket directory."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import replace

import docker
import docker.errors

from ...errors import EngineUnavailable, short
from ..base import Endpoint, ExitStatus, Instance
from .client import engine_errors
from .engine_watch import EngineWatch

__all__ = ["DockerInstance", "lock_socket_dir"]

REMOVAL_WAIT = 10.0  # seconds to see an engine-side removal (auto-remove) end

log = logging.getLogger("pyhost")


class DockerInstance(Instance):
    """A started container and the socket directory it listens in.

    With a ``watch`` (marked before the container was made), how it ended says whether the
    engine went away meanwhile (``ExitStatus.engine``), and a removal the engine could not
    do because it was away is done when it answers again.
    """

    def __init__(self, client: docker.DockerClient, container_id: str,
                 endpoint: Endpoint | None, socket_dir: str | None,
                 watch: EngineWatch | None = None, mark: int = 0) -> None:
        self.client = client
        self.id = container_id
        # A TCP address is known only once the container runs; the launcher sets it then.
        self.endpoint = endpoint or Endpoint("tcp", ("", 0))
        self.socket_dir = socket_dir
        self._removed = False
        self._watch = watch
        self._mark = mark

    def poll(self) -> ExitStatus | None:
        with engine_errors(f"cannot inspect container {self.id[:12]}"):
            try:
                state = self.client.api.inspect_container(self.id)["State"]
            except docker.errors.NotFound:
                return self._with_engine(ExitStatus(None, error="the container was removed"))
        if state.get("Running"):
            return None
        return self._with_engine(ExitStatus(state.get("ExitCode"), bool(state.get("OOMKilled")),
                                            state.get("Error") or "", self._logs()))

    def wait(self, timeout: float) -> ExitStatus | None:
        """How it ended, waiting up to ``timeout``. When the engine went away, an ExitStatus
        saying so even if the container still shows as running (a stopping engine may not
        have recorded its end yet) or cannot be asked (the engine does not answer)."""
        try:
            with engine_errors("waiting for the container"):
                self.client.api.wait(self.id, timeout=max(timeout, 0.01))
        except EngineUnavailable:
            pass  # the wait ran out (it still runs), or it is gone: poll tells which
        try:
            status = self.poll()
        except EngineUnavailable as exc:
            engine = self._watch.went_away(self._mark) if self._watch is not None else ""
            return ExitStatus(None, engine=engine or f"the Docker engine does not answer "
                                                     f"({short(exc)})")
        if status is None and self._watch is not None:
            engine = self._watch.went_away(self._mark)
            return ExitStatus(None, engine=engine) if engine else None
        return status

    def _with_engine(self, status: ExitStatus) -> ExitStatus:
        """``status`` with what became of the engine since the start, if it went away."""
        engine = self._watch.went_away(self._mark) if self._watch is not None else ""
        return replace(status, engine=engine) if engine else status

    def _logs(self) -> str:
        try:
            with engine_errors("reading the container's logs"):
                raw = self.client.api.logs(self.id, stdout=True, stderr=True, tail=20)
        except EngineUnavailable:
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def _await_removal(self) -> None:
        try:
            with engine_errors("waiting for the container's removal"):
                self.client.api.wait(self.id, timeout=REMOVAL_WAIT, condition="removed")
        except EngineUnavailable:
            pass  # gone already (404), or the engine is slow: gc takes what is left

    def connected(self) -> None:
        """Lock the socket directory: the server unlinked its socket before the welcome, and
        from now on the session may create nothing there (see :func:`lock_socket_dir`)."""
        if self.socket_dir:
            lock_socket_dir(self.socket_dir)

    def kill(self) -> None:
        with engine_errors(f"cannot kill container {self.id[:12]}"):
            try:
                self.client.api.kill(self.id)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: not running any more
                    raise

    def terminate(self, grace: float) -> None:
        try:
            with engine_errors(f"cannot signal container {self.id[:12]}"):
                self.client.api.kill(self.id, signal="SIGTERM")
        except EngineUnavailable:
            pass  # gone, or not running: the kill below says which, if it matters
        else:
            if self.wait(grace) is None:  # ignored it, or slower than its grace
                log.info("container %s did not end within %g s of SIGTERM; killed",
                         self.id[:12], grace)
        self.kill()

    def cleanup(self) -> None:
        """Remove the container and its socket directory. When the engine is away, they are
        removed once it answers again (by the watch), and EngineUnavailable says so."""
        try:
            self._remove_container()
        except EngineUnavailable as exc:
            if self._watch is None or not self._watch.ping():
                raise
            self._watch.remove_later(self.cleanup)
            raise EngineUnavailable(f"{exc}; the Docker engine does not answer: the container "
                                    "will be removed when it answers again") from exc
        if self.socket_dir:
            with contextlib.suppress(OSError):  # locked 0500 by a non-root host: open it
                os.chmod(self.socket_dir, 0o700)
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def _remove_container(self) -> None:
        if not self._removed:
            with engine_errors(f"cannot remove container {self.id[:12]}"):
                for attempt in range(3):
                    try:
                        self.client.api.remove_container(self.id, force=True, v=True)
                    except docker.errors.NotFound:
                        pass
                    except docker.errors.APIError as exc:
                        # 409: removal already in progress (the engine's auto-remove); it is
                        # seen to its end, so the container is gone when this returns. An
                        # auto-removed container that the engine is removing as it exits can
                        # also refuse with a 500 ("could not kill running container"): look
                        # again a moment later.
                        if exc.status_code == 409:
                            self._await_removal()
                        elif attempt < 2:
                            time.sleep(0.1)
                            continue
                        else:
                            raise
                    break
            self._removed = True


def lock_socket_dir(path: str) -> None:
    """Make the session's socket directory one it can create nothing in.

    As root: owned by root, mode 0700 (the host, root, still reaches it; the session user
    gets EACCES for any new file or directory there). As another user the session runs as
    this user, who owns the directory: the mode becomes 0500, which stops a write, but the
    session could change it back; what it could fill is this user's own temp space.
    """
    try:
        if os.getuid() == 0:
            os.chown(path, 0, 0)
            os.chmod(path, 0o700)
        else:
            os.chmod(path, 0o500)
    except FileNotFoundError:
        pass  # cleaned up already
    except OSError as exc:
        raise EngineUnavailable(f"cannot lock the session socket directory {path}: "
                                f"{exc.strerror}") from exc
