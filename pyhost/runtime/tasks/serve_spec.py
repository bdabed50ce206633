"""A serve run's own settings, checked before anything starts: the handler fits ``event``
and ``context``; ``init_function`` exists and ``init_parameters`` fit it; replicas, service
type, ports. The settings every task shares are :mod:`.spec`'s. Nothing here starts or
records anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError
from ...launchers import get_launcher
from ...launchers.base import PublishedPort, as_mapping
from ..imports import check_imports
from ..sources import HandlerInfo, resolve_handler
from ..values import to_json
from .spec import TaskSpec, check_python, common_settings, run_image

if TYPE_CHECKING:
    from ..function import Function

__all__ = ["CONTAINER_PORT", "SERVICE_TYPES", "ServeSpec", "check_serve"]

SERVICE_TYPES = ("NodePort", "ClusterIP", "LoadBalancer")
CONTAINER_PORT = 8080  # where a replica's HTTP server listens inside its container
_EVENT_NAMES = ("context", "event")


@dataclass
class ServeSpec(TaskSpec):
    """A serve run's settings, checked (see :class:`~.serve.ServeTask`)."""

    replicas: int = 1
    service_type: str = "NodePort"
    port: int = 0  # the first replica's host port (replica i: port + i); 0: any free one
    address: str = "127.0.0.1"
    network: str | None = None
    init_function: str | None = None
    init_parameters: dict[str, Any] = field(default_factory=dict)
    workers: int = 4
    ready_timeout: float = 120.0

    def published(self, replica: int) -> PublishedPort:
        """How replica ``replica``'s HTTP port is published (ClusterIP: not at all)."""
        if self.service_type == "ClusterIP":
            return PublishedPort(CONTAINER_PORT, None)
        return PublishedPort(CONTAINER_PORT, self.address,
                             self.port + replica if self.port else 0)

    def own_record(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "service_type": self.service_type,
                "port": self.port, "address": self.address, "network": self.network,
                "init_function": self.init_function,
                "init_parameters": {k: to_json(v) for k, v in self.init_parameters.items()},
                "workers": self.workers, "ready_timeout": self.ready_timeout}


def check_serve(function: Function, *, replicas: Any = 1, service_type: Any = "NodePort",
                port: Any = 0, address: Any = "127.0.0.1", network: Any = None,
                init_function: Any = None, init_parameters: Any = None, workers: Any = 4,
                ready_timeout: Any = 120.0, **settings: Any) -> ServeSpec:
    """The settings of a serve run of ``function``, checked.

    Raises:
        ConfigurationError: an unknown or malformed setting, a handler that does not take
            ``event``/``context``, an ``init_function`` that is missing or does not fit
            ``init_parameters``, or a service type this launcher cannot give.
    """
    spec = ServeSpec(
        **common_settings("serve", **settings),
        replicas=_positive("replicas", replicas), service_type=service_type,
        port=_port(port), address=address, network=network,
        init_function=init_function or function.spec.get("init_function") or None,
        init_parameters=dict(as_mapping("init_parameters", init_parameters or {})),
        workers=_positive("workers", workers), ready_timeout=_seconds(ready_timeout))
    spec.image = run_image(function, spec.launcher)
    _check_service(spec)
    _check_handler(function.handler_info())
    _check_init(function, spec)
    for name, value in spec.init_parameters.items():
        try:
            to_json(value)
        except Exception as exc:
            raise ConfigurationError(f"init_parameters[{name!r}]: {exc}") from None
    spec.check_launch(network=spec.network, ports=(spec.published(0),))
    check_python(function, spec.launcher, spec.image)
    check_imports(function, spec.launcher, spec.image)
    return spec


def _check_service(settings: ServeSpec) -> None:
    kind = settings.service_type
    if kind not in SERVICE_TYPES:
        raise ConfigurationError(f"service_type={kind!r}: one of {', '.join(SERVICE_TYPES)}")
    launcher = get_launcher(settings.launcher)
    problem = launcher.load_balancer_problem() if kind == "LoadBalancer" else None
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


def _check_init(function: Function, settings: ServeSpec) -> None:
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


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigurationError(f"port must be an int from 1 to 65535 (0: any free port), "
                                 f"not {value!r}")
    return value
