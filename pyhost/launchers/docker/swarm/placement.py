"""A session's placement (``node_selector``, ``affinity``, ``tolerations``: the DigitalHub and
Kubernetes shapes :class:`~pyhost.launchers.base.LaunchSpec` carries) in the terms a Swarm
can act on: placement constraints on node labels.

Swarm places a task on the nodes whose labels satisfy ALL of its constraints, each
``node.labels.KEY==VALUE`` or ``!=VALUE``. So of a node affinity it can take the required
part when that is one ``nodeSelectorTerm`` (several terms are ORed in Kubernetes) whose
expressions are ``In`` with one value or ``NotIn``; anything else is refused with the part
named, never dropped. Swarm has no taints: every active node admits every task already,
which is all a toleration asks, so tolerations are checked and recorded and change nothing.

Keys are accepted in the Kubernetes JSON spelling (``nodeAffinity``) and in the Python
client's (``node_affinity``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ....errors import ConfigurationError
from ...base import as_mapping

__all__ = ["affinity_constraints", "check_tolerations", "label_constraint",
           "placement_constraints"]

# A node label or its value, as a placement constraint may name them.
_LABEL_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds",
                    "toleration_seconds"}


def placement_constraints(node_selector: Mapping[str, Any], affinity: Mapping[str, Any],
                          tolerations: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Swarm constraints that say what the placement says (tolerations checked only).

    Raises:
        ConfigurationError: a part Swarm cannot express, or a malformed one (named).
    """
    check_tolerations(list(tolerations))
    return ([label_constraint("node_selector", key, value)
             for key, value in sorted(as_mapping("node_selector", node_selector).items())]
            + affinity_constraints(affinity))


def label_constraint(where: str, key: Any, value: Any, operator: str = "==") -> str:
    """``node.labels.KEY==VALUE`` (or ``!=``), once both are plain label words."""
    if not (isinstance(value, (str, int, bool)) and _LABEL_WORD.match(str(key))
            and _LABEL_WORD.match(str(value))):
        raise ConfigurationError(f"{where}: {key!r}: {value!r} is not a node label and value "
                                 "(letters, digits, '.', '-', '_', '/')")
    return f"node.labels.{key}{operator}{value}"


def affinity_constraints(affinity: Any) -> list[str]:
    """The Swarm constraints that say what ``affinity`` says.

    Raises:
        ConfigurationError: a part Swarm cannot express (pod (anti-)affinity, preferred
            terms, several terms, ``matchFields``, an operator other than ``In`` with one
            value or ``NotIn``), or a malformed one; the message names it.
    """
    if not affinity:
        return []
    affinity = as_mapping("affinity", affinity)
    unknown = set(affinity) - {"nodeAffinity", "node_affinity"}
    if unknown:
        raise ConfigurationError(f"affinity: {', '.join(sorted(unknown))}: Swarm places tasks "
                                 "by node labels only, not by the other tasks on a node")
    node = _field(affinity, "nodeAffinity")
    node = {} if node is None else as_mapping("affinity.nodeAffinity", node)
    if _field(node, "preferredDuringSchedulingIgnoredDuringExecution"):
        raise ConfigurationError("affinity.nodeAffinity.preferredDuringScheduling"
                                 "IgnoredDuringExecution: Swarm has no weighted preferences "
                                 "by label (its placement preferences only spread tasks); "
                                 "make it required, or leave it out")
    unknown = set(node) - {"requiredDuringSchedulingIgnoredDuringExecution",
                           "required_during_scheduling_ignored_during_execution",
                           "preferredDuringSchedulingIgnoredDuringExecution",
                           "preferred_during_scheduling_ignored_during_execution"}
    if unknown:
        raise ConfigurationError(f"affinity.nodeAffinity: unknown field(s) "
                                 f"{', '.join(sorted(unknown))}")
    required = _field(node, "requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return []
    where = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    terms = _field(as_mapping(where, required), "nodeSelectorTerms") or []
    if not isinstance(terms, list) or len(terms) != 1:
        raise ConfigurationError(f"{where}.nodeSelectorTerms: Swarm takes exactly one term "
                                 f"(several are alternatives, and a task's constraints must "
                                 f"all hold), not {terms!r}")
    term = as_mapping(f"{where}.nodeSelectorTerms[0]", terms[0])
    if _field(term, "matchFields"):
        raise ConfigurationError(f"{where}.nodeSelectorTerms[0].matchFields: Swarm places by "
                                 "node labels; use matchExpressions on a label")
    expressions = _field(term, "matchExpressions") or []
    if not isinstance(expressions, list):
        raise ConfigurationError(f"{where}.nodeSelectorTerms[0].matchExpressions must be a "
                                 f"list, not {expressions!r}")
    constraints = []
    for index, expression in enumerate(expressions):
        place = f"{where}.nodeSelectorTerms[0].matchExpressions[{index}]"
        constraints += _expression_constraints(place, as_mapping(place, expression))
    return constraints


def check_tolerations(tolerations: Any) -> list[dict[str, Any]]:
    """``tolerations`` as a list of Kubernetes tolerations (checked for shape only).

    Raises:
        ConfigurationError: not a list of mappings of toleration fields.
    """
    if not tolerations:
        return []
    if not isinstance(tolerations, list):
        raise ConfigurationError(f"tolerations must be a list, not {tolerations!r}")
    for index, toleration in enumerate(tolerations):
        unknown = set(as_mapping(f"tolerations[{index}]", toleration)) - _TOLERATION_KEYS
        if unknown:
            raise ConfigurationError(f"tolerations[{index}]: unknown field(s) "
                                     f"{', '.join(sorted(unknown))}")
    return tolerations


def _expression_constraints(where: str, expression: Mapping[str, Any]) -> list[str]:
    key, operator, values = (expression.get("key"), expression.get("operator"),
                             expression.get("values") or [])
    if not isinstance(values, list):
        raise ConfigurationError(f"{where}.values must be a list, not {values!r}")
    if operator == "In" and len(values) == 1:
        return [label_constraint(where, key, values[0], "==")]
    if operator == "NotIn" and values:
        return [label_constraint(where, key, value, "!=") for value in values]
    if operator == "In":
        raise ConfigurationError(f"{where}: In with {len(values)} values is an alternative, "
                                 "which Swarm constraints cannot say; give one value (or "
                                 "label the nodes so that one value fits)")
    raise ConfigurationError(f"{where}: operator {operator!r} has no Swarm constraint; Swarm "
                             "takes In with one value, or NotIn")


def _field(mapping: Mapping[str, Any], camel: str) -> Any:
    """A field by its Kubernetes JSON name or its Python client (snake_case) name."""
    if camel in mapping:
        return mapping[camel]
    return mapping.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())
