"""Remove what dead pyhost processes left behind: containers and socket directories.

Every container pyhost starts is labelled with its owner (host, pid, process start); a
container whose owner process is gone is an orphan. So is the exited container of a Swarm
task of ours, whoever owns it: a session's task never runs again, and Swarm (20.10) keeps
such containers on each node even after their service is removed (``pyhost gc`` against a
worker's engine clears them there). Socket directories are named ``pyhost-<session id>-*``
and are orphans once no container of that session exists.
"""

from __future__ import annotations

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
        text = (f"removed {len(self.containers)} orphaned container(s) and "
                f"{len(self.socket_dirs)} socket dir(s)")
        if self.failed:
            text += f"; {len(self.failed)} orphaned container(s) could not be removed"
        return text


_SWARM_TASK = "com.docker.swarm.task.id"  # the engine's label on a Swarm task's container
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
    with engine_errors("cannot list containers"):
        containers = client.api.containers(all=True, filters={"label": SESSION_LABEL})
    for info in containers:
        labels = info.get("Labels") or {}
        session_id = labels.get(SESSION_LABEL, "")
        owner = Owner.from_labels(labels)
        finished_task = _SWARM_TASK in labels and info.get("State") == "exited"
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
    base = runtime_dir or os.environ.get("PYHOST_RUNTIME_DIR") or tempfile.gettempdir()
    for path in glob.glob(os.path.join(base, "pyhost-*-*")):
        session_id = os.path.basename(path).split("-")[1]
        if session_id in live_sessions or not os.path.isdir(path):
            continue
        if time.time() - os.path.getmtime(path) < _YOUNG:
            continue  # its container may be being created right now
        shutil.rmtree(path, ignore_errors=True)
        report.socket_dirs.append(path)
    return report
