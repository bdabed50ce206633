"""``pyhost doctor``'s swarm lines: is the engine a manager, and can its routing mesh answer."""

from __future__ import annotations

import docker

from ....errors import PyHostError
from ..doctor import Check
from ..paths import EngineView
from .cluster import ipvs_available, swarm_state

__all__ = ["diagnose_swarm"]


def diagnose_swarm(client: docker.DockerClient) -> list[Check]:
    """The swarm checks; never raises. A plain engine is fine: the swarm is optional."""
    try:
        state = swarm_state(client)
    except PyHostError as exc:
        return [Check("swarm", False, str(exc))]
    if state.state == "inactive":
        return [Check("swarm", True, "not in a swarm (launcher='swarm' needs a manager: "
                                     "`pyhost engine swarm-up`)")]
    checks = [Check("swarm", state.state == "active", state.describe())]
    if state.state != "active":
        return checks
    local = not EngineView(client).location.remote
    ipvs = ipvs_available() if local else None
    if ipvs is False:
        checks.append(Check("mesh", False,
                            "the kernel has no IPVS: the routing mesh (ingress-published ports, "
                            "service VIPs) cannot answer, so service_type='LoadBalancer' is "
                            "refused; host-mode ports (NodePort) and dnsrr (ClusterIP) work"))
    elif ipvs:
        checks.append(Check("mesh", True, "IPVS present: the routing mesh can answer"))
    else:
        checks.append(Check("mesh", True, "the engine is remote: whether its kernel has IPVS "
                                          "cannot be told from here"))
    return checks
