"""Remove what dead pyhost processes left on a swarm: services and secrets.

Everything the Swarm launcher makes carries its owner's labels (host, pid, process start),
as containers do on a plain engine. Only a manager can list services; on an engine that is
not one there is nothing of ours to find.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from ....errors import EngineUnavailable
from ...ownership import SESSION_LABEL, Owner, owner_alive
from ..client import engine_errors
from .cluster import swarm_state

__all__ = ["SwarmGcReport", "collect_swarm"]

log = logging.getLogger("pyhost")


@dataclass
class SwarmGcReport:
    """What :func:`collect_swarm` removed (ids) and what it could not."""

    services: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    manager: bool = True

    def __str__(self) -> str:
        if not self.manager:
            return "not a swarm manager: no services to look at"
        text = (f"removed {len(self.services)} orphaned service(s) and {len(self.secrets)} "
                "secret(s)")
        if self.failed:
            text += f"; {len(self.failed)} could not be removed"
        return text


def collect_swarm(client: docker.DockerClient) -> SwarmGcReport:
    """Remove services and secrets whose owner process is gone.

    Raises:
        EngineUnavailable: the engine cannot be asked.
    """
    state = swarm_state(client)
    if state.state != "active" or not state.manager:
        return SwarmGcReport(manager=False)
    report = SwarmGcReport()
    with engine_errors("cannot list services"):
        services = client.api.services(filters={"label": SESSION_LABEL})
    for service in services:
        labels = (service.get("Spec") or {}).get("Labels") or {}
        if _orphaned(labels) and _remove(client.api.remove_service, service["ID"],
                                         "service", report):
            report.services.append(service["ID"])
    with engine_errors("cannot list secrets"):
        secrets = client.api.secrets(filters={"label": SESSION_LABEL})
    for secret in secrets:
        labels = (secret.get("Spec") or {}).get("Labels") or {}
        if _orphaned(labels) and _remove(client.api.remove_secret, secret["ID"], "secret",
                                         report):
            report.secrets.append(secret["ID"])
    return report


def _orphaned(labels: dict[str, str]) -> bool:
    owner = Owner.from_labels(labels)
    return owner is not None and not owner_alive(owner)


def _remove(remove: Callable[[str], Any], ident: str, what: str, report: SwarmGcReport) -> bool:
    try:
        with engine_errors(f"cannot remove {what} {ident[:12]}"):
            try:
                remove(ident)
            except docker.errors.NotFound:
                pass
    except EngineUnavailable as exc:
        log.warning("gc: %s", exc)
        report.failed.append(ident)
        return False
    log.info("gc: removed orphaned %s %s", what, ident[:12])
    return True
