"""Remove what dead pyhost processes left behind: containers and socket directories.

Every container pyhost starts is labelled with its owner (host, pid, process start); a
container whose owner process is gone is an orphan. So is the exited container of a Swarm
task of ours whose service is gone (asked where the engine is a manager) or that ended over
:data:`_TASK_KEPT` seconds ago (on a worker, which cannot ask): a session's task never runs
again, and Swarm (20.10) keeps such containers on each node even after their service is
removed (``pyhost gc`` against a worker's engine clears them there). Its live owner may still
read its logs just after it ends, hence the wait. Socket directories are named
``pyhost-<session id>-*`` and are orphans once no container of that session exists: at
once when this gc removed the session's container, else once over :data:`_YOUNG` seconds old
(a session being started has a socket dir before its container).
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import docker
import docker.errors

from ...errors import EngineUnavailable
from ..ownership import SESSION_LABEL, Owner, owner_alive
from .client import docker_client, engine_errors

__all__ = ["GcReport", "collect"]

log = logging.getLogger("pyhost")


@dataclass
class GcReport:
    """What :func:`collect` removed, and the orphans it could not remove (ids; why is
    logged)."""

    containers: list[str] = field(default_factory=list)
    socket_dirs: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"removed {len(self.containers)} orphaned container(s)"
        if self.containers:  # named, as the runs gc settles are: what went can be found
            text += f" ({', '.join(id[:12] for id in self.containers)})"
        text += f" and {len(self.socket_dirs)} socket dir(s)"
        if self.failed:
            text += f"; {len(self.failed)} orphaned container(s) could not be removed"
        return text


_SWARM_TASK = "com.docker.swarm.task.id"  # the engine's labels on a Swarm task's container
_SWARM_SERVICE = "com.docker.swarm.service.id"
_TASK_KEPT = 600.0  # seconds an exited task container of a live service is kept on a worker
# A socket dir younger than this is left alone: its session may still be starting.
_YOUNG = 60.0


def collect(client: docker.DockerClient | None = None,
            runtime_dir: str | None = None) -> GcReport:
    """Remove containers whose owner process is gone, and socket dirs with no container.

    Raises:
        EngineUnavailable: the engine cannot be asked.
    """
    client = client or docker_client()
    report = GcReport()
    live_sessions: set[str] = set()
    dead_sessions: set[str] = set()  # whose container this gc removed
    with engine_errors("cannot list containers"):
        containers = client.api.containers(all=True, filters={"label": SESSION_LABEL})
    for info in containers:
        labels = info.get("Labels") or {}
        session_id = labels.get(SESSION_LABEL, "")
        owner = Owner.from_labels(labels)
        finished_task = _SWARM_TASK in labels and info.get("State") == "exited" and \
            _task_is_over(client, info["Id"], labels)
        if not finished_task and (owner is None or owner_alive(owner)):
            live_sessions.add(session_id)
            continue
        try:
            with engine_errors(f"cannot remove container {info['Id'][:12]}"):
                try:
                    client.api.remove_container(info["Id"], force=True, v=True)
                except docker.errors.NotFound:
                    pass
        except EngineUnavailable as exc:
            log.warning("gc: %s", exc)
            report.failed.append(info["Id"])
            live_sessions.add(session_id)
            continue
        log.info("gc: removed %s %s", "the finished swarm task container" if finished_task
                 else "orphaned container", info["Id"][:12])
        report.containers.append(info["Id"])
        dead_sessions.add(session_id)
    base = runtime_dir or os.environ.get("PYHOST_RUNTIME_DIR") or tempfile.gettempdir()
    for path in glob.glob(os.path.join(base, "pyhost-*-*")):
        session_id = os.path.basename(path).split("-")[1]
        if session_id in live_sessions or not os.path.isdir(path):
            continue
        if session_id not in dead_sessions and time.time() - os.path.getmtime(path) < _YOUNG:
            continue  # its container may be being created right now
        shutil.rmtree(path, ignore_errors=True)
        report.socket_dirs.append(path)
    return report


def _task_is_over(client: docker.DockerClient, container_id: str,
                  labels: dict[str, str]) -> bool:
    """Whether an exited Swarm task container is no use to anyone: its service is gone, or
    (where the service cannot be asked) it ended over :data:`_TASK_KEPT` seconds ago."""
    try:
        with engine_errors("cannot inspect a swarm task"):
            try:
                client.api.inspect_service(labels.get(_SWARM_SERVICE, ""))
                return False
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                if exc.status_code != 503:  # 503: this engine is no swarm manager
                    raise
            finished = client.api.inspect_container(container_id)["State"]["FinishedAt"]
    except (EngineUnavailable, docker.errors.NotFound):
        return False
    return time.time() - _timestamp(finished) > _TASK_KEPT


def _timestamp(text: str) -> float:
    """Seconds since the epoch of the engine's RFC 3339 time (nanoseconds cut)."""
    whole = text.split(".")[0].rstrip("Z")
    return dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
