"""Two swarm nodes on one machine: a worker made by the test, a job and a session forced onto it.

The manager is the local engine (made a single-node swarm if it is not one, as in
``test_swarm.py``). The worker is a second ``dockerd`` in a network namespace of this test
(:mod:`tests.support.second_node`): its own data-root, exec-root, socket and address, the
session image loaded before it joins. It joins drained and is opened only while one of this
test's tasks is being placed, so other people's tasks never land on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import pyhost.runtime as dh
from pyhost import py
from pyhost.launchers.docker.image import resolve_image
from pyhost.launchers.docker.swarm.cluster import swarm_leave, swarm_up
from pyhost.launchers.ownership import LABEL_PREFIX
from tests.support.second_node import (
    SecondNode,
    missing_prerequisite,
    reap_leftovers,
    start_second_node,
)

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
LABEL = {"pyhost-node": "two"}
CONSTRAINT = "node.labels.pyhost-node==two"


@pytest.fixture(scope="module")
def node2(client):
    why_not = missing_prerequisite()
    if why_not:
        pytest.skip(f"no second swarm node can be made here: {why_not}")
    state, made = swarm_up(client)
    assert state.manager, state.describe()
    reap_leftovers(client)
    started = time.monotonic()
    node = start_second_node(client, resolve_image(client))
    try:
        node.set_labels(LABEL)
        node.timings["setup"] = time.monotonic() - started
        yield node
    finally:
        stopping = time.monotonic()
        node.close()
        node.timings["teardown"] = time.monotonic() - stopping
        print(f"\nsecond node: {', '.join(f'{k} {v:.2f} s' for k, v in node.timings.items())}")
        if made:
            swarm_leave(client)


def _on(node: SecondNode, hostname: str) -> bool:
    """Whether the container whose host name (short id) this is runs on ``node``'s engine."""
    return any(str(container["Id"]).startswith(hostname) for container in node.containers())


def _constraints(tasks: list[dict[str, Any]]) -> list[list[str]]:
    return [((task["Spec"].get("Placement") or {}).get("Constraints") or []) for task in tasks]


def test_a_job_forced_onto_the_second_node_runs_there_and_logs(client, node2, tmp_path):
    dh.configure(tmp_path / "home")
    project = dh.get_or_create_project("two-nodes")
    fn = project.new_function(name="where", kind="python",
                              code_src=str(FUNCTIONS / "whereabouts.py"), handler="whereabouts")
    with node2.accepting() as placed:
        run = fn.run(parameters={"param1": "node2"}, launcher="swarm", wait=True,
                     node_selector=LABEL)
    assert run.status.state == "COMPLETED", run.status.error
    # node_selector became the constraint of the task Swarm put there ...
    assert _constraints(placed) == [[CONSTRAINT]]
    # ... and the handler ran in a container of the node's engine, not the manager's.
    hostname = run.result("result")
    assert _on(node2, hostname), f"{hostname} is not a container of the second node"
    assert not any(str(c["Id"]).startswith(hostname)
                   for c in client.api.containers(all=True))
    # The artifact crossed from the task on node 2 to this process's store.
    artifact = project.get_artifact("whereabouts")
    got = Path(artifact.download(tmp_path / "out")).read_text()
    assert got == f"node2 from {hostname}\n"


def test_the_design_example_as_a_session_on_the_second_node(client, node2):
    with node2.accepting():
        assert py(launcher="swarm", node_selector=LABEL).timeout(10).define("a", 100) \
            .define("b", 2).exec("def mult(x, y): return x * y\n").eval("mult(a, b)") == 200
    with py(launcher="swarm", node_selector=LABEL) as session:
        with node2.accepting() as placed:  # the container starts at the first eval
            hostname = session.eval("__import__('socket').gethostname()")
        assert _constraints(placed) == [[CONSTRAINT]]
        assert _on(node2, hostname)
        (service,) = client.api.services(
            filters={"label": f"{LABEL_PREFIX}.owner.pid={os.getpid()}"})
        (task,) = client.api.tasks(filters={"service": service["ID"]})
        assert task["NodeID"] == node2.node_id


def test_the_second_node_takes_nothing_while_it_is_not_opened(client, node2):
    node = client.api.inspect_node(node2.node_id)
    assert node["Spec"]["Availability"] in ("pause", "drain")
    assert node["Status"]["Addr"] == node2.address
