"""Remove what dead pyhost processes left behind: containers and socket directories.

Every container pyhost starts is labelled with its owner (host, pid, process start); a
container whose owner process is gone is an orphan. Socket directories are named
``pyhost-<session id>-*`` and are orphans once no container of that session exists.
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
import requests.exceptions

from .docker_launcher import LABEL_PREFIX, docker_client
from .errors import EngineUnavailable
from .launcher import Owner, owner_alive

__all__ = ["GcReport", "collect"]

log = logging.getLogger("pyhost")


@dataclass
class GcReport:
    """What :func:`collect` removed."""

    containers: list[str] = field(default_factory=list)
    socket_dirs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"removed {len(self.containers)} orphaned container(s) and "
                f"{len(self.socket_dirs)} socket dir(s)")


# A socket dir younger than this is left alone: its session may still be starting.
_YOUNG = 60.0


def _owner_of(labels: dict[str, str]) -> Owner | None:
    try:
        return Owner(labels[f"{LABEL_PREFIX}.owner.host"],
                     int(labels[f"{LABEL_PREFIX}.owner.pid"]),
                     float(labels[f"{LABEL_PREFIX}.owner.started"]))
    except (KeyError, ValueError):
        return None


def collect(client: docker.DockerClient | None = None,
            runtime_dir: str | None = None) -> GcReport:
    """Remove containers whose owner process is gone, and socket dirs with no container.

    Raises:
        EngineUnavailable: the engine cannot be asked.
    """
    client = client or docker_client()
    report = GcReport()
    live_sessions: set[str] = set()
    try:
        containers = client.api.containers(all=True, filters={"label": f"{LABEL_PREFIX}.session"})
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(f"cannot list containers: {exc}") from exc
    for info in containers:
        labels = info.get("Labels") or {}
        session_id = labels.get(f"{LABEL_PREFIX}.session", "")
        owner = _owner_of(labels)
        if owner is None or owner_alive(owner):
            live_sessions.add(session_id)
            continue
        try:
            client.api.remove_container(info["Id"], force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("gc: cannot remove container %s: %s", info["Id"][:12], exc)
            live_sessions.add(session_id)
            continue
        log.info("gc: removed orphaned container %s (owner pid %d gone)", info["Id"][:12],
                 owner.pid)
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
