"""A serve run's settings, checked before anything starts: the handler fits ``event`` and
``context``; ``init_function`` exists and ``init_parameters`` fit it; replicas, service
type, ports; and the task settings a job has too (envs, secrets, resources, volumes), checked
by :mod:`.job_settings`. Nothing here starts or records anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..launchers import get_launcher
from ..launchers.base import LaunchSpec, PublishedPort
from .imports import check_imports
from .job_settings import (
    JobSettings,
    as_mapping,
    check_envs,
    check_placement,
    check_python_version,
    parse_resources,
    parse_volumes,
    resolve_secrets,
    run_image,
)
from .limits import RunLimits
from .sources import HandlerInfo, resolve_handler
from .values import to_json

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["CONTAINER_PORT", "SERVICE_TYPES", "ServeSettings", "check_serve"]

SERVICE_TYPES = ("NodePort", "ClusterIP", "LoadBalancer")
CONTAINER_PORT = 8080  # where a replica's HTTP server listens inside its container
_EVENT_NAMES = ("context", "event")


@dataclass
class ServeSettings:
    """A serve run's settings, checked (see :func:`pyhost.runtime.serve.start_serve`)."""

    task: JobSettings  # envs, secrets, resources, volumes, launcher
    replicas: int = 1
    service_type: str = "NodePort"
    port: int = 0  # the first replica's host port (replica i: port + i); 0: any free one
    address: str = "127.0.0.1"
    network: str | None = None
    init_function: str | None = None
    init_parameters: dict[str, Any] = field(default_factory=dict)
    workers: int = 4
    ready_timeout: float = 120.0
    wait: bool = True

    def published(self, replica: int) -> PublishedPort:
        """How replica ``replica``'s HTTP port is published (ClusterIP: not at all)."""
        if self.service_type == "ClusterIP":
            return PublishedPort(CONTAINER_PORT, None)
        return PublishedPort(CONTAINER_PORT, self.address,
                             self.port + replica if self.port else 0)

    def record(self) -> dict[str, Any]:
        """What the run's spec records: everything but secret values."""
        task = self.task.record()
        for job_only in ("inputs", "parameters", "outputs", "backoff_limit", "timeout",
                         "local_execution"):
            task.pop(job_only, None)
        return {**task, "replicas": self.replicas, "service_type": self.service_type,
                "port": self.port, "address": self.address, "network": self.network,
                "init_function": self.init_function,
                "init_parameters": {k: to_json(v) for k, v in self.init_parameters.items()},
                "workers": self.workers}


def check_serve(function: Function, runtime: Runtime, *, replicas: int = 1,
                service_type: str = "NodePort", port: int = 0, address: str = "127.0.0.1",
                network: str | None = None, init_function: str | None = None,
                init_parameters: dict[str, Any] | None = None, workers: int = 4,
                ready_timeout: float = 120.0, wait: bool = True,
                launcher: Any = "docker",
                envs: list[dict[str, str]] | None = None, secrets: list[str] | None = None,
                resources: dict[str, Any] | None = None,
                volumes: list[dict[str, Any]] | None = None, node_selector: Any = None,
                affinity: Any = None, tolerations: Any = None, store_quota: Any = None,
                log_cap: Any = None, open_uploads: Any = None,
                **unknown: Any) -> ServeSettings:
    """The settings of a serve run of ``function``, checked.

    Raises:
        ConfigurationError: an unknown or malformed setting, a handler that does not take
            ``event``/``context``, an ``init_function`` that is missing or does not fit
            ``init_parameters``, or a service type this launcher cannot give.
    """
    if unknown:
        raise ConfigurationError(f"fn.run(action='serve'): unknown setting(s) "
                                 f"{', '.join(sorted(unknown))}")
    task = JobSettings(envs=check_envs(envs or []), secrets=resolve_secrets(secrets or []),
                       volumes=parse_volumes(volumes or []), launcher=launcher,
                       placement=check_placement(launcher, node_selector, affinity,
                                                  tolerations),
                       limits=RunLimits.from_settings(store_quota, log_cap, open_uploads))
    task.cpus, task.mem_limit = parse_resources(resources or {})
    task.image = run_image(function, launcher)
    settings = ServeSettings(
        task, replicas=_positive("replicas", replicas), service_type=service_type,
        port=_port(port), address=address, network=network,
        init_function=init_function or function.spec.get("init_function") or None,
        init_parameters=dict(as_mapping("init_parameters", init_parameters or {})),
        workers=_positive("workers", workers), ready_timeout=_seconds(ready_timeout),
        wait=_flag("wait", wait))
    _check_service(settings, launcher)
    _check_handler(function.handler_info())
    _check_init(function, settings)
    for name, value in settings.init_parameters.items():
        try:
            to_json(value)
        except Exception as exc:
            raise ConfigurationError(f"init_parameters[{name!r}]: {exc}") from None
    get_launcher(launcher).check(LaunchSpec("check", volumes=task.volumes,
                                            network=settings.network,
                                            ports=(settings.published(0),)))
    check_python_version(function, task)
    check_imports(function, task)
    return settings


def _check_service(settings: ServeSettings, launcher: Any) -> None:
    kind = settings.service_type
    if kind not in SERVICE_TYPES:
        raise ConfigurationError(f"service_type={kind!r}: one of {', '.join(SERVICE_TYPES)}")
    problem = get_launcher(launcher).load_balancer_problem() if kind == "LoadBalancer" else None
    if problem:
        raise ConfigurationError(
            f"service_type='LoadBalancer': {problem}; use 'NodePort' (a published port per "
            "replica, spread by run.invoke) or 'ClusterIP' (on an engine network)")
    if kind == "ClusterIP" and not settings.network:
        raise ConfigurationError(
            "service_type='ClusterIP' exposes the replicas only on an engine network: pass "
            "network= (a user-defined network this process can reach, e.g. its own "
            "container's); for a port on this machine use 'NodePort'")
    if kind == "NodePort" and settings.port and settings.port + settings.replicas - 1 > 65535:
        raise ConfigurationError(f"port={settings.port}: replicas take ports {settings.port} "
                                 f"to {settings.port + settings.replicas - 1}, past 65535")
    if settings.network and get_launcher(launcher).name == "process":
        raise ConfigurationError("network=: the process launcher has no engine network; use "
                                 "launcher='docker'")


def _check_handler(info: HandlerInfo) -> None:
    if info.params is None:
        return  # not a plain def: the container checks the call
    names = [param.name for param in info.params]
    wrong = [param.name for param in info.params
             if param.required and param.name not in _EVENT_NAMES]
    if wrong:
        raise ConfigurationError(
            f"handler {info.function}() of a serve run is called with context and event; "
            f"its argument(s) {', '.join(map(repr, wrong))} would have no value (it takes "
            f"{', '.join(names) or 'nothing'})")


def _check_init(function: Function, settings: ServeSettings) -> None:
    name = settings.init_function
    if not name:
        if settings.init_parameters:
            raise ConfigurationError("init_parameters are given, but the function has no "
                                     "init_function to take them")
        return
    info = function.handler_info()
    if ":" not in name:
        name = f"{info.module}:{name}"  # in the handler's module unless it says
    try:
        init = resolve_handler(function.source(), name)
    except ConfigurationError as exc:
        raise ConfigurationError(f"init_function={settings.init_function!r}: {exc}") from None
    settings.init_function = f"{init.module}:{init.function}"
    if init.params is None:
        return
    if not init.params:
        raise ConfigurationError(f"init_function {init.function}() takes no argument; it is "
                                 "called as init_function(context, **init_parameters)")
    rest = init.params[1:]
    names = {param.name for param in rest}
    missing = [p.name for p in rest if p.required and p.name not in settings.init_parameters]
    if missing:
        raise ConfigurationError(f"init_function {init.function}(): argument(s) "
                                 f"{', '.join(map(repr, missing))} have no value; give them "
                                 "in init_parameters")
    extra = sorted(set(settings.init_parameters) - names)
    if extra and not init.takes_kwargs:
        raise ConfigurationError(f"init_parameters: {init.function}() takes no argument "
                                 f"{', '.join(map(repr, extra))} (after context it takes "
                                 f"{', '.join(sorted(names)) or 'nothing'})")


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
        raise ConfigurationError(f"ready_timeout is a number of seconds > 0, not {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} is True or False, not {value!r}")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigurationError(f"port must be an int from 1 to 65535 (0: any free port), "
                                 f"not {value!r}")
    return value
