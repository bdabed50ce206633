"""A job's own settings, checked before anything starts: the handler's arguments against its
signature (read from its source), the inputs against the catalog, the outputs against what
the handler declares, retries and the time limit. The settings every task shares are
:mod:`.spec`'s. Nothing here starts or records anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hxpy.runtime.job import RESERVED

from ...errors import ConfigurationError
from ...launchers.base import as_mapping
from ..entities import Entity, check_name, parse_key
from ..imports import check_imports
from ..sources import HandlerInfo
from ..values import to_json
from .spec import TaskSpec, check_python, common_settings, run_image

if TYPE_CHECKING:
    from ..context import Runtime
    from ..function import Function

__all__ = ["JobSpec", "check_job"]

_SERVE_ONLY = ("context", "event", "events")


@dataclass
class JobSpec(TaskSpec):
    """A job's settings, checked (see :class:`~.job.JobTask`)."""

    inputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    backoff_limit: int = 0
    timeout: float | None = None
    local_execution: bool = False

    def own_record(self) -> dict[str, Any]:
        return {"inputs": self.inputs,
                "parameters": {k: to_json(v) for k, v in self.parameters.items()},
                "outputs": self.outputs, "backoff_limit": self.backoff_limit,
                "timeout": self.timeout, "local_execution": self.local_execution}


def check_job(function: Function, runtime: Runtime, *, inputs: Any = None,
              parameters: Any = None, outputs: Any = None, backoff_limit: Any = 0,
              timeout: Any = None, local_execution: Any = False,
              **settings: Any) -> JobSpec:
    """The settings of a job of ``function`` (see :class:`~.job.JobTask`), checked.

    Raises:
        ConfigurationError: an unknown or malformed setting, arguments that do not fit
            the handler (the message names the argument), or a top-level import of the
            handler's source that the run's image cannot satisfy (:mod:`..imports`).
        NotInCatalog: an input names no entity.
    """
    info = function.handler_info()
    local = bool(local_execution)
    spec = JobSpec(
        **common_settings("job", **settings),
        inputs=_check_inputs(runtime, function.project, inputs or {}),
        parameters=_check_parameters(parameters or {}),
        outputs=_check_outputs(outputs or {}, info),
        backoff_limit=_check_count("backoff_limit", backoff_limit),
        timeout=_check_timeout(timeout), local_execution=local)
    if local:
        if spec.volumes:
            raise ConfigurationError("volumes: a local run has no container to mount them in")
        if spec.node_selector or spec.affinity:
            raise ConfigurationError("node_selector, affinity: a local run runs in this "
                                     "process, on this machine; leave them out")
    else:
        spec.image = run_image(function, spec.launcher)
        spec.check_launch()
    _check_signature(info, spec)
    check_python(function, spec.launcher, spec.image, local=local)
    check_imports(function, spec.launcher, spec.image, local=local)
    return spec


def _check_inputs(runtime: Runtime, project: str, inputs: Any) -> dict[str, str]:
    checked = {}
    for name, value in as_mapping("inputs", inputs).items():
        key = value.key if isinstance(value, Entity) else value
        if not isinstance(key, str):
            raise ConfigurationError(f"input {name!r}: an entity key (store://...) or an "
                                     f"entity, not {type(value).__name__}")
        parts = parse_key(key)
        if parts.project != project:
            raise ConfigurationError(f"input {name!r}: {key} is of project {parts.project!r}, "
                                     f"not {project!r}")
        if parts.entity_type not in ("artifact", "dataitem", "model"):
            raise ConfigurationError(f"input {name!r}: {key} is a {parts.entity_type}; inputs "
                                     "are artifacts, dataitems or models")
        record = (runtime.get(parts.entity_type, parts.id) if parts.id
                  else runtime.latest(parts.entity_type, project, parts.name))
        checked[name] = str(record.document["key"])
    return checked


def _check_parameters(parameters: Any) -> dict[str, Any]:
    for name, value in as_mapping("parameters", parameters).items():
        try:
            to_json(value)
        except Exception as exc:
            raise ConfigurationError(f"parameter {name!r}: {exc}") from None
    return dict(parameters)


def _check_outputs(outputs: Any, info: HandlerInfo) -> dict[str, str]:
    declared = info.outputs or (("result", "output_0") if info.params is not None else None)
    for name, entity_name in as_mapping("outputs", outputs).items():
        if declared is not None and name not in declared:
            raise ConfigurationError(f"outputs: the handler has no output {name!r} (its "
                                     f"outputs are {', '.join(declared)})")
        check_name(f"output {name!r} ->", entity_name)
    return dict(outputs)


def _check_signature(info: HandlerInfo, spec: JobSpec) -> None:
    if info.awaitable:
        raise ConfigurationError(f"handler {info.function!r} is async def: a job calls its "
                                 "handler once and waits, so define it with def (async "
                                 "handlers are for serve)")
    if info.params is None:
        return  # not a plain def: the container checks the call
    names = {param.name for param in info.params}
    for param in info.params:
        if param.name in _SERVE_ONLY:
            raise ConfigurationError(f"argument {param.name!r}: a job gives its handler "
                                     "project, run, inputs and parameters; context and "
                                     "event(s) are for serve handlers")
        given = (param.name in spec.inputs or param.name in spec.parameters
                 or param.name in RESERVED)
        if param.required and not given:
            raise ConfigurationError(f"argument {param.name!r} of {info.function}() has no "
                                     "value: give it in inputs or parameters")
    for where in ("inputs", "parameters"):
        extra = sorted(set(getattr(spec, where)) - names)
        if extra and not info.takes_kwargs:
            raise ConfigurationError(f"{where}: {info.function}() takes no argument "
                                     f"{', '.join(map(repr, extra))} (it takes "
                                     f"{', '.join(sorted(names)) or 'none'})")
    both = sorted(set(spec.inputs) & set(spec.parameters))
    if both:
        raise ConfigurationError(f"{', '.join(both)}: given both as input and as parameter")


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")
    return value


def _check_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"timeout is a number of seconds > 0 (None: no limit), not "
                                 f"{value!r}")
    return float(value)
