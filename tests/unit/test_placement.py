"""Kubernetes placement (node_selector, affinity, tolerations) as Swarm constraints: what
Swarm can say is turned into constraints, the rest is refused with the part named."""

from __future__ import annotations

import pytest

from pyhost import ConfigurationError
from pyhost.runtime.job_settings import JobSettings, check_placement
from pyhost.runtime.placement import affinity_constraints, check_tolerations


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


def test_on_swarm_an_affinity_it_cannot_say_is_refused_before_anything_starts():
    odd = required({"key": "disk", "operator": "Exists"})
    # A plain engine records it for a cluster launcher; Swarm would have to drop it.
    assert check_placement("docker", None, odd, None)["affinity"] == odd
    with pytest.raises(ConfigurationError, match="operator 'Exists'"):
        check_placement("swarm", None, odd, None)
    with pytest.raises(ConfigurationError, match="affinity must be a dict"):
        check_placement("docker", None, ["x"], None)


def test_node_selector_and_affinity_make_the_jobs_constraints_together():
    affinity = required({"key": "zone", "operator": "NotIn", "values": ["a"]})
    settings = JobSettings(placement=check_placement("swarm", {"disk": "ssd"}, affinity, None))
    assert settings.constraints() == ("node.labels.disk==ssd", "node.labels.zone!=a")
    assert settings.session_options()["placement"] == settings.constraints()
