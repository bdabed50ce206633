"""A job's settings, checked before anything starts: the handler's arguments against its
signature (read from its source), the inputs against the catalog, the task's settings
(envs, secrets, resources, volumes, retries). Nothing here starts or records anything."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hxpy.runtime.job import RESERVED

from ..errors import ConfigurationError, ImageNotFound
from ..launchers import get_launcher
from ..launchers.base import LaunchSpec, Volume
from .entities import Entity, check_name, parse_key
from .imports import check_imports
from .limits import RunLimits, parse_size
from .placement import affinity_constraints, as_mapping, check_tolerations, label_constraint
from .sources import PYTHON_VERSIONS, HandlerInfo, python_wanted
from .values import to_json

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["VOLUME_TYPES", "JobSettings", "as_mapping", "check_envs", "check_job",
           "check_placement", "check_python_version", "parse_resources", "parse_volumes",
           "resolve_secrets", "run_image"]

_SERVE_ONLY = ("context", "event", "events")


@dataclass
class JobSettings:
    """A job's task settings, checked (see :func:`start_job`)."""

    inputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    # name -> value: never recorded, never shown by repr
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    cpus: float | None = None
    mem_limit: int | None = None
    volumes: tuple[Volume, ...] = ()
    backoff_limit: int = 0
    timeout: float | None = None
    launcher: Any = "docker"
    local_execution: bool = False
    placement: dict[str, Any] = field(default_factory=dict)
    image: str | None = None  # the session image (:func:`run_image`); None: the default
    limits: RunLimits = field(default_factory=RunLimits)  # store_quota, log_cap, open_uploads

    def record(self) -> dict[str, Any]:
        """What the run's spec records: everything but secret values."""
        return {
            "inputs": self.inputs, "parameters": {k: to_json(v) for k, v in
                                                  self.parameters.items()},
            "outputs": self.outputs,
            "envs": [{"name": k, "value": v} for k, v in self.envs.items()],
            "secrets": sorted(self.secrets), "resources": {"cpu": self.cpus,
                                                           "memory": self.mem_limit},
            "volumes": [dataclasses.asdict(volume) for volume in self.volumes],
            "backoff_limit": self.backoff_limit, "timeout": self.timeout,
            "local_execution": self.local_execution, "image": self.image,
            **self.limits.record(),
            "launcher": self.launcher if isinstance(self.launcher, str) else
            type(self.launcher).__name__, **self.placement,
        }

    def session_options(self) -> dict[str, Any]:
        """The options (for ``py()``) of the session a run with these settings opens: the
        one place a job and a serve replica take them from."""
        return {"launcher": self.launcher, "io": None, "env": self.envs,
                "secrets": self.secrets, "image": self.image,
                "mem_limit": self.mem_limit or "1g", "cpus": self.cpus,
                "volumes": self.volumes, "placement": self.constraints()}

    def constraints(self) -> tuple[str, ...]:
        """``node_selector`` and ``affinity`` as Swarm placement constraints
        (``node.labels.K==V``; see :mod:`.placement`)."""
        selector = self.placement.get("node_selector") or {}
        return tuple([label_constraint("node_selector", key, value)
                      for key, value in sorted(selector.items())]
                     + affinity_constraints(self.placement.get("affinity")))


def check_job(function: Function, runtime: Runtime, *, inputs: dict[str, Any] | None,
              parameters: dict[str, Any] | None, outputs: dict[str, str] | None,
              local_execution: bool, launcher: Any, envs: list[dict[str, str]] | None,
              secrets: list[str] | None, resources: dict[str, Any] | None,
              volumes: list[dict[str, Any]] | None, backoff_limit: int,
              timeout: float | None, node_selector: Any, affinity: Any, tolerations: Any,
              store_quota: Any = None, log_cap: Any = None, open_uploads: Any = None,
              **unknown: Any) -> JobSettings:
    """The settings of a job of ``function`` (see :func:`.job.start_job`), checked.

    Raises:
        ConfigurationError: an unknown or malformed setting, arguments that do not fit
            the handler (the message names the argument), or a top-level import of the
            handler's source that the run's image cannot satisfy (:mod:`.imports`).
        NotInCatalog: an input names no entity.
    """
    if unknown:
        raise ConfigurationError(f"fn.run(): unknown setting(s) {', '.join(sorted(unknown))}")
    info = function.handler_info()
    settings = JobSettings(
        inputs=_check_inputs(runtime, function.project, inputs or {}),
        parameters=_check_parameters(parameters or {}),
        outputs=_check_outputs(outputs or {}, info),
        envs=check_envs(envs or []), secrets=resolve_secrets(secrets or []),
        volumes=parse_volumes(volumes or []),
        backoff_limit=_check_count("backoff_limit", backoff_limit),
        timeout=timeout, launcher=launcher, local_execution=bool(local_execution),
        placement=check_placement(launcher, node_selector, affinity, tolerations),
        limits=RunLimits.from_settings(store_quota, log_cap, open_uploads))
    settings.cpus, settings.mem_limit = parse_resources(resources or {})
    settings.image = None if settings.local_execution else run_image(function,
                                                                      settings.launcher)
    if settings.volumes:
        if settings.local_execution:
            raise ConfigurationError("volumes: a local run has no container to mount them in")
        get_launcher(settings.launcher).check(LaunchSpec("check", volumes=settings.volumes))
    _check_signature(info, settings)
    check_python_version(function, settings)
    check_imports(function, settings)
    return settings


def check_placement(launcher: Any, node_selector: Any, affinity: Any,
                     tolerations: Any) -> dict[str, Any]:
    """``node_selector`` must be ``{label: value}`` of plain words and ``tolerations`` a list
    of tolerations; ``affinity`` must be a mapping, and on Swarm one it can express as
    constraints (:mod:`.placement`; a plain engine records it for a cluster launcher)."""
    for key, value in as_mapping("node_selector", node_selector or {}).items():
        label_constraint("node_selector", key, value)
    check_tolerations(tolerations)
    as_mapping("affinity", affinity or {})
    if get_launcher(launcher).name == "swarm":
        affinity_constraints(affinity)
    return {"node_selector": node_selector, "affinity": affinity, "tolerations": tolerations}


def _check_inputs(runtime: Runtime, project: str, inputs: dict[str, Any]) -> dict[str, str]:
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


def _check_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    for name, value in as_mapping("parameters", parameters).items():
        try:
            to_json(value)
        except Exception as exc:
            raise ConfigurationError(f"parameter {name!r}: {exc}") from None
    return dict(parameters)


def _check_outputs(outputs: dict[str, str], info: HandlerInfo) -> dict[str, str]:
    declared = info.outputs or (("result", "output_0") if info.params is not None else None)
    for name, entity_name in as_mapping("outputs", outputs).items():
        if declared is not None and name not in declared:
            raise ConfigurationError(f"outputs: the handler has no output {name!r} (its "
                                     f"outputs are {', '.join(declared)})")
        check_name(f"output {name!r} ->", entity_name)
    return dict(outputs)


def _check_signature(info: HandlerInfo, settings: JobSettings) -> None:
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
        given = (param.name in settings.inputs or param.name in settings.parameters
                 or param.name in RESERVED)
        if param.required and not given:
            raise ConfigurationError(f"argument {param.name!r} of {info.function}() has no "
                                     "value: give it in inputs or parameters")
    for where in ("inputs", "parameters"):
        extra = sorted(set(getattr(settings, where)) - names)
        if extra and not info.takes_kwargs:
            raise ConfigurationError(f"{where}: {info.function}() takes no argument "
                                     f"{', '.join(map(repr, extra))} (it takes "
                                     f"{', '.join(sorted(names)) or 'none'})")
    both = sorted(set(settings.inputs) & set(settings.parameters))
    if both:
        raise ConfigurationError(f"{', '.join(both)}: given both as input and as parameter")


def run_image(function: Function, launcher: Any) -> str | None:
    """The image a job (or a serve replica) of ``function`` runs in; None: the launcher's
    default. The one place that decides it: the image the version's last build made, else
    the function's ``image``, else the launcher's image for its ``python_version``
    (``hxpy:py3.9`` for PYTHON3_9 on Docker).

    Raises:
        ConfigurationError: no image can have that Python here (says what to pass instead).
        ImageNotFound: the version's image is not built (names the command that builds it).
    """
    built = function.built_image()
    if built and built.get("tag"):
        return str(built["tag"])
    if function.spec.get("image"):
        return str(function.spec["image"])
    version = function.spec.get("python_version")
    if not version:
        return None  # no Python asked for: the launcher's default image, whatever its Python
    try:
        return get_launcher(launcher).image_for_python(PYTHON_VERSIONS[version])
    except (ConfigurationError, ImageNotFound) as exc:
        raise type(exc)(f"python_version={version!r}: {exc}") from exc


def check_python_version(function: Function, settings: JobSettings) -> None:
    """Refuse a python_version the run's Python is not, where that is known before a start
    (this interpreter for a local run; the launcher's answer otherwise). A container whose
    Python the launcher could not tell is checked when it starts (:func:`_run_in_session`)."""
    wanted = python_wanted(function.spec)
    if wanted is None:
        return  # it asks for no Python: any will do
    if settings.local_execution:
        have: str | None = f"{sys.version_info.major}.{sys.version_info.minor}"
        where = "this process runs"
    elif not (function.built_image() or function.spec.get("image")):
        return  # run_image took the launcher's image for this very version
    else:
        have = get_launcher(settings.launcher).python_version(settings.image)
        where = f"the session image {settings.image or '(default)'} has"
    if have is not None and have != wanted:
        raise ConfigurationError(
            f"python_version={function.spec['python_version']!r}: {where} Python {have}; "
            f"pass image= of an image with Python {wanted} and the hxpy server, or use "
            f"PYTHON{have.replace('.', '_')}")


def check_envs(envs: list[dict[str, str]]) -> dict[str, str]:
    checked = {}
    for entry in envs if isinstance(envs, list) else [envs]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("value"), str)):
            raise ConfigurationError(f"envs: each entry is {{'name': str, 'value': str}}, not "
                                     f"{entry!r}")
        checked[entry["name"]] = entry["value"]
    return checked


def resolve_secrets(names: list[str]) -> dict[str, str]:
    """The values of ``names``: from ``$PYHOST_SECRETS_DIR/<name>`` (a file per secret, as
    Docker and Kubernetes mount them) when that directory is set and holds it, else from
    this process's environment.

    Raises:
        ConfigurationError: a secret is found in neither (its value is never in a message).
    """
    directory = os.environ.get("PYHOST_SECRETS_DIR")
    values = {}
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigurationError(f"secret {name!r}: a secret is named like an "
                                     "environment variable")
        path = os.path.join(directory, name) if directory else ""
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                values[name] = handle.read().rstrip("\n")
        elif name in os.environ:
            values[name] = os.environ[name]
        else:
            where = f"{directory} nor " if directory else ""
            raise ConfigurationError(f"secret {name!r} is set in neither {where}this "
                                     "process's environment")
    return values


def parse_resources(resources: dict[str, Any]) -> tuple[float | None, int | None]:
    """``(cpus, memory bytes)`` from DigitalHub's ``{"cpu": "500m" | 1.5, "mem": "512Mi"}``
    (``memory`` is taken for ``mem`` too). ``gpu`` is refused: no launcher here gives
    containers a GPU.

    Raises:
        ConfigurationError: an unknown resource, a GPU, a malformed quantity, or both mem
            and memory.
    """
    unknown = sorted(set(as_mapping("resources", resources)) - {"cpu", "mem", "memory", "gpu"})
    if unknown:
        raise ConfigurationError(f"resources: unknown {', '.join(unknown)}; give cpu and "
                                 "mem")
    if resources.get("gpu") not in (None, 0, "0"):
        raise ConfigurationError(f"resources.gpu={resources['gpu']!r}: this engine gives "
                                 "containers no GPU (pyhost runs on CPUs only); leave gpu out")
    if "mem" in resources and "memory" in resources:
        raise ConfigurationError("resources: give mem or memory (its alias), not both")
    resources = {**resources, "memory": resources.get("mem", resources.get("memory"))}
    cpus = memory = None
    cpu = resources.get("cpu")
    if cpu is not None:
        try:
            cpus = float(cpu[:-1]) / 1000 if isinstance(cpu, str) and cpu.endswith("m") \
                else float(cpu)
        except ValueError:
            cpus = -1.0
        if isinstance(cpu, bool) or not cpus or cpus <= 0:
            raise ConfigurationError(f"resources.cpu={cpu!r}: a positive number of CPUs, or "
                                     "millicpus like '500m'")
    quantity = resources.get("memory")
    if quantity is not None:
        memory = parse_size("resources.mem", quantity, minimum=6 << 20)  # docker's floor
    return cpus, memory


VOLUME_TYPES = ("persistent_volume_claim", "empty_dir")


def parse_volumes(volumes: list[dict[str, Any]]) -> tuple[Volume, ...]:
    """Engine mounts for DigitalHub volume specs (see :func:`start_job`).

    Raises:
        ConfigurationError: a malformed spec or an unknown ``volume_type``.
    """
    parsed = []
    for entry in volumes if isinstance(volumes, list) else [volumes]:
        if not isinstance(entry, dict) or not isinstance(entry.get("mount_path"), str):
            raise ConfigurationError(f"volumes: each is a dict with volume_type, name and "
                                     f"mount_path, not {entry!r}")
        kind, target = entry.get("volume_type"), entry["mount_path"]
        if kind == "persistent_volume_claim":
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"volume at {target!r}: name the volume")
            parsed.append(Volume("volume", target, name, bool(entry.get("read_only", True))))
        elif kind == "empty_dir":
            size = (entry.get("spec") or {}).get("size_limit")
            _, size_bytes = parse_resources({"memory": size}) if size is not None else (0, 0)
            parsed.append(Volume("tmpfs", target, read_only=False,
                                 size=str(size_bytes) if size_bytes else None))
        else:
            raise ConfigurationError(f"volume at {target!r}: volume_type={kind!r}; the types "
                                     f"are {', '.join(VOLUME_TYPES)}")
    return tuple(parsed)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")
    return value
