"""Kubernetes placement (node_selector, affinity, tolerations) reaches the launchers as it is
written; the Swarm launcher turns what Swarm can say into constraints and refuses the rest
with the part named; the launchers with one place to run refuse any of it."""

from __future__ import annotations

import pytest

from pyhost import ConfigurationError
from pyhost.launchers import LaunchSpec, get_launcher
from pyhost.launchers.docker.swarm.placement import (
    affinity_constraints,
    check_tolerations,
    placement_constraints,
)
from pyhost.runtime.tasks.spec import TaskSpec, common_settings


def required(*expressions, terms=None):
    terms = terms if terms is not None else [{"matchExpressions": list(expressions)}]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}


def test_in_with_one_value_and_not_in_become_constraints():
    affinity = required({"key": "disk", "operator": "In", "values": ["ssd"]},
                        {"key": "zone", "operator": "NotIn", "values": ["a", "b"]})
    assert affinity_constraints(affinity) == [
        "node.labels.disk==ssd", "node.labels.zone!=a", "node.labels.zone!=b"]


def test_the_python_clients_snake_case_keys_are_read_too():
    affinity = {"node_affinity": {"required_during_scheduling_ignored_during_execution": {
        "node_selector_terms": [{"match_expressions": [
            {"key": "gpu", "operator": "In", "values": ["yes"]}]}]}}}
    assert affinity_constraints(affinity) == ["node.labels.gpu==yes"]


def test_nothing_to_say_is_no_constraint():
    assert affinity_constraints(None) == [] == affinity_constraints({})
    assert affinity_constraints({"nodeAffinity": {}}) == []


@pytest.mark.parametrize("affinity, message", [
    ({"podAffinity": {}}, "podAffinity: Swarm places tasks by node labels only"),
    ({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}]}},
     "no weighted preferences"),
    (required(terms=[{"matchExpressions": []}, {"matchExpressions": []}]),
     "exactly one term"),
    (required(terms=[{"matchFields": [{"key": "metadata.name", "operator": "In",
                                       "values": ["n1"]}]}]), "matchFields"),
    (required({"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}),
     r"matchExpressions\[0\]: In with 2 values"),
    (required({"key": "disk", "operator": "Exists"}), "operator 'Exists' has no Swarm"),
    (required({"key": "disk", "operator": "Gt", "values": ["3"]}), "operator 'Gt'"),
    (required({"key": "disk", "operator": "In", "values": ["a b"]}),
     "'disk': 'a b' is not a node label"),
    (required({"key": "disk", "operator": "In", "values": "ssd"}), "values must be a list"),
    ({"nodeAffinity": {"requiredDuringScheduling": {}}}, "unknown field"),
    ({"nodeAffinity": []}, "affinity.nodeAffinity must be a dict"),
])
def test_what_swarm_cannot_say_is_refused_with_the_part_named(affinity, message):
    with pytest.raises(ConfigurationError, match=message):
        affinity_constraints(affinity)


def test_tolerations_are_checked_for_shape():
    tolerations = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert check_tolerations(tolerations) == tolerations
    with pytest.raises(ConfigurationError, match="must be a list"):
        check_tolerations({"key": "gpu"})
    with pytest.raises(ConfigurationError, match=r"tolerations\[0\]: unknown field\(s\) kye"):
        check_tolerations([{"kye": "gpu"}])


def test_each_launcher_refuses_what_it_cannot_express():
    odd = required({"key": "disk", "operator": "Exists"})
    with pytest.raises(ConfigurationError, match="operator 'Exists'"):
        get_launcher("swarm").check(LaunchSpec("s", affinity=odd))
    get_launcher("swarm").check(LaunchSpec("s", node_selector={"disk": "ssd"}))
    for name in ("docker", "process"):  # one place to run: nothing to choose
        with pytest.raises(ConfigurationError, match="node_selector"):
            get_launcher(name).check(LaunchSpec("s", node_selector={"disk": "ssd"}))
        with pytest.raises(ConfigurationError, match="affinity"):
            get_launcher(name).check(LaunchSpec("s", affinity=odd))
    tolerations = ({"key": "gpu", "operator": "Exists"},)  # they only permit
    get_launcher("docker").check(LaunchSpec("s", tolerations=tolerations))


def test_a_run_refuses_placement_its_launcher_cannot_express_before_anything_starts():
    odd = required({"key": "disk", "operator": "Exists"})
    for launcher, affinity in (("swarm", odd), ("docker", required(
            {"key": "disk", "operator": "In", "values": ["ssd"]}))):
        spec = TaskSpec(**common_settings("job", launcher=launcher, affinity=affinity))
        with pytest.raises(ConfigurationError, match="affinity|operator 'Exists'"):
            spec.check_launch()
    with pytest.raises(ConfigurationError, match="affinity must be a dict"):
        common_settings("job", affinity=["x"])
    with pytest.raises(ConfigurationError, match=r"tolerations\[0\] must be a dict"):
        common_settings("job", tolerations=["x"])


def test_node_selector_and_affinity_make_the_swarm_constraints_together():
    affinity = required({"key": "zone", "operator": "NotIn", "values": ["a"]})
    spec = TaskSpec(**common_settings("job", launcher="swarm", node_selector={"disk": "ssd"},
                                      affinity=affinity))
    options = spec.session_options()
    assert placement_constraints(options["node_selector"], options["affinity"],
                                 options["tolerations"]) == [
        "node.labels.disk==ssd", "node.labels.zone!=a"]
    assert spec.record()["node_selector"] == {"disk": "ssd"}
    assert spec.record()["affinity"] == affinity
