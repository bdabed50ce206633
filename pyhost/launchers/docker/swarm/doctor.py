"""``pyhost doctor``'s swarm lines: is the engine a manager, can its routing mesh answer, and
do its tasks have a route out (through a ``docker_gwbridge`` that masquerades)."""

from __future__ import annotations

import docker
import docker.errors

from ....errors import PyHostError
from ..client import engine_errors
from ..doctor import Check
from ..paths import EngineView
from .cluster import GWBRIDGE, ipvs_available, swarm_state

__all__ = ["diagnose_swarm", "gateway_check"]

_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"


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
    try:
        with engine_errors(f"cannot inspect {GWBRIDGE}"):
            try:
                options = client.api.inspect_network(GWBRIDGE).get("Options") or {}
            except docker.errors.NotFound:
                options = None
    except PyHostError as exc:
        return [*checks, Check("gateway", False, str(exc))]
    return [*checks, gateway_check(options)]


def gateway_check(options: dict[str, str] | None) -> Check:
    """Whether this node's tasks have a route out, from ``docker_gwbridge``'s options (None:
    the engine has none yet)."""
    if options is None:
        return Check("gateway", False, f"no {GWBRIDGE} yet: Docker will make one that "
                                       "masquerades, giving tasks a route out; make it "
                                       "without (docs/scale-out.md) before the first task")
    if options.get(_MASQUERADE, "true") != "false":
        return Check("gateway", False, f"{GWBRIDGE} masquerades: swarm tasks on this node "
                                       "have a route out of the sandbox; recreate it without "
                                       "masquerading while the node is out of the swarm "
                                       "(docs/scale-out.md)")
    return Check("gateway", True, f"{GWBRIDGE} does not masquerade: tasks have no route out")
