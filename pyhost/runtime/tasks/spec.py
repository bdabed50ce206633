"""What every task of a python function takes, checked once: where it runs (``launcher``,
``image``), its environment (``envs``, ``secrets``), its limits (``resources``, the store
quota and log cap), its mounts (``volumes``) and its placement (``node_selector``,
``affinity``, ``tolerations``: the DigitalHub/Kubernetes shapes, handed to the launcher as
they are; the launcher's ``check()`` refuses what it cannot express). Each task's spec adds
only its own fields. Nothing here starts or records anything.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, ImageNotFound
from ...launchers import Launcher, get_launcher
from ...launchers.base import LaunchSpec, PublishedPort, Volume, as_mapping
from ..limits import RunLimits, parse_size
from ..sources import PYTHON_VERSIONS, python_wanted

if TYPE_CHECKING:
    from ..function import Function

__all__ = ["COMMON_SETTINGS", "VOLUME_TYPES", "TaskSpec", "check_envs",
           "check_python", "common_settings", "parse_resources", "parse_volumes",
           "resolve_secrets", "run_image"]

#: The settings every task takes (``fn.run(action=..., <these>=...)``).
COMMON_SETTINGS = ("launcher", "envs", "secrets", "resources", "volumes", "node_selector",
                   "affinity", "tolerations", "store_quota", "log_cap", "open_uploads")
VOLUME_TYPES = ("persistent_volume_claim", "empty_dir")


@dataclass
class TaskSpec:
    """The settings every task shares, checked (see :func:`common_settings`)."""

    launcher: str | Launcher = "docker"
    image: str | None = None  # the image the task's sessions run (None: the default)
    envs: dict[str, str] = field(default_factory=dict)
    # name -> value: never recorded, never shown by repr
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    cpus: float | None = None
    mem_limit: int | None = None
    volumes: tuple[Volume, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: dict[str, Any] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    limits: RunLimits = field(default_factory=RunLimits)  # store_quota, log_cap, open_uploads

    def record(self) -> dict[str, Any]:
        """What the run's spec records: these fields and the task's own, never a secret's
        value."""
        return {
            "launcher": self.launcher if isinstance(self.launcher, str) else
            type(self.launcher).__name__, "image": self.image,
            "envs": [{"name": k, "value": v} for k, v in self.envs.items()],
            "secrets": sorted(self.secrets),
            "resources": {"cpu": self.cpus, "memory": self.mem_limit},
            "volumes": [dataclasses.asdict(volume) for volume in self.volumes],
            "node_selector": self.node_selector or None, "affinity": self.affinity or None,
            "tolerations": self.tolerations or None, **self.limits.record(),
            **self.own_record()}

    def own_record(self) -> dict[str, Any]:
        """The task's own fields as the run records them (a task's spec overrides it)."""
        return {}

    def session_options(self) -> dict[str, Any]:
        """The options (for ``py()``) of a session that runs this task: the one place a job
        and a serve replica take them from."""
        return {"launcher": self.launcher, "io": None, "env": self.envs,
                "secrets": self.secrets, "image": self.image,
                "mem_limit": self.mem_limit or "1g", "cpus": self.cpus,
                "volumes": self.volumes, "node_selector": self.node_selector,
                "affinity": self.affinity, "tolerations": tuple(self.tolerations)}

    def check_launch(self, network: str | None = None,
                     ports: tuple[PublishedPort, ...] = ()) -> None:
        """Let the launcher refuse what it cannot do (mounts, placement, ports) now.

        Raises:
            ConfigurationError: the launcher's reason.
        """
        get_launcher(self.launcher).check(LaunchSpec(
            "check", volumes=self.volumes, network=network, ports=ports,
            node_selector=self.node_selector, affinity=self.affinity,
            tolerations=tuple(self.tolerations)))


def common_settings(action: str, launcher: Any = "docker", envs: Any = None,
                    secrets: Any = None, resources: Any = None, volumes: Any = None,
                    node_selector: Any = None, affinity: Any = None, tolerations: Any = None,
                    store_quota: Any = None, log_cap: Any = None, open_uploads: Any = None,
                    **unknown: Any) -> dict[str, Any]:
    """The shared settings of ``fn.run(action=...)``, checked: keyword arguments for a
    :class:`TaskSpec` (``image`` aside, which the task chooses).

    Raises:
        ConfigurationError: an unknown setting (named with the action), or a malformed one.
    """
    if unknown:
        raise ConfigurationError(f"fn.run(action={action!r}): unknown setting(s) "
                                 f"{', '.join(sorted(unknown))}")
    if not isinstance(launcher, (str, Launcher)):
        raise ConfigurationError(f"launcher={launcher!r}: a launcher name ('docker', "
                                 "'swarm', 'process', 'pkg.module:Class') or a Launcher")
    # A setting left out (or empty) is checked no further: most runs give few of them.
    cpus, mem_limit = parse_resources(resources) if resources else (None, None)
    return {"launcher": launcher, "envs": check_envs(envs) if envs else {},
            "secrets": resolve_secrets(secrets) if secrets else {}, "cpus": cpus,
            "mem_limit": mem_limit, "volumes": parse_volumes(volumes) if volumes else (),
            "node_selector": _check_selector(node_selector) if node_selector else {},
            "affinity": dict(as_mapping("affinity", affinity)) if affinity else {},
            "tolerations": _check_tolerations(tolerations) if tolerations else [],
            "limits": RunLimits.from_settings(store_quota, log_cap, open_uploads)}


def _check_selector(selector: Any) -> dict[str, str]:
    for key, value in as_mapping("node_selector", selector).items():
        if not isinstance(value, (str, int, bool)):
            raise ConfigurationError(f"node_selector: {key!r}: {value!r} is not a label "
                                     "value (a string)")
    return {key: str(value) for key, value in selector.items()}


def _check_tolerations(tolerations: Any) -> list[dict[str, Any]]:
    if not isinstance(tolerations, list):
        raise ConfigurationError(f"tolerations must be a list, not {tolerations!r}")
    return [dict(as_mapping(f"tolerations[{index}]", toleration))
            for index, toleration in enumerate(tolerations)]


def run_image(function: Function, launcher: str | Launcher) -> str | None:
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


def check_python(function: Function, launcher: str | Launcher, image: str | None, *,
                 local: bool = False, base: bool = False) -> None:
    """Refuse a python_version the run's Python is not, where that is known before a start:
    this interpreter for a local run, else the launcher's answer for ``image`` (a build's
    base with ``base``). The one host-side check; a container whose Python the launcher
    could not tell is checked when it starts (``hxpy.runtime.loader``).

    Raises:
        ConfigurationError: the Python differs (says what to pass instead).
    """
    wanted = python_wanted(function.spec)
    if wanted is None:
        return  # it asks for no Python: any will do
    if local:
        have: str | None = f"{sys.version_info.major}.{sys.version_info.minor}"
        where = "this process runs"
    elif not base and not (function.built_image() or function.spec.get("image")):
        return  # run_image took the launcher's image for this very version
    else:
        have = get_launcher(launcher).python_version(image)
        where = f"the {'base' if base else 'session'} image {image or '(default)'} has"
    if have is not None and have != wanted:
        what = "base_image= of an image" if base else "image= of an image"
        extra = "" if base else " and the hxpy server"
        raise ConfigurationError(
            f"python_version={function.spec['python_version']!r}: {where} Python {have}; "
            f"pass {what} with Python {wanted}{extra}, or use PYTHON{have.replace('.', '_')}")


def check_envs(envs: Any) -> dict[str, str]:
    """``{name: value}`` from DigitalHub's ``[{"name", "value"}]``.

    Raises:
        ConfigurationError: an entry of another shape.
    """
    checked = {}
    for entry in envs if isinstance(envs, list) else [envs]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("value"), str)):
            raise ConfigurationError(f"envs: each entry is {{'name': str, 'value': str}}, not "
                                     f"{entry!r}")
        checked[entry["name"]] = entry["value"]
    return checked


def resolve_secrets(names: Any) -> dict[str, str]:
    """The values of ``names``: from ``$PYHOST_SECRETS_DIR/<name>`` (a file per secret, as
    Docker and Kubernetes mount them) when that directory is set and holds it, else from
    this process's environment.

    Raises:
        ConfigurationError: a secret is found in neither (its value is never in a message).
    """
    directory = os.environ.get("PYHOST_SECRETS_DIR")
    values = {}
    for name in names if isinstance(names, list) else [names]:
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


def parse_resources(resources: Any) -> tuple[float | None, int | None]:
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
    quantity = resources.get("mem", resources.get("memory"))
    if quantity is not None:
        memory = parse_size("resources.mem", quantity, minimum=6 << 20)  # docker's floor
    return cpus, memory


def parse_volumes(volumes: Any) -> tuple[Volume, ...]:
    """Engine mounts for DigitalHub volume specs: ``{"volume_type":
    "persistent_volume_claim", "name", "mount_path", "read_only": True}`` (a named engine
    volume, read-only unless ``read_only`` is False) or ``{"volume_type": "empty_dir",
    "mount_path", "spec": {"size_limit": "1Gi"}}`` (a scratch tmpfs).

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
            size_bytes = parse_size(f"volume at {target!r}: size_limit", size,
                                    minimum=6 << 20) if size is not None else 0
            parsed.append(Volume("tmpfs", target, read_only=False,
                                 size=str(size_bytes) if size_bytes else None))
        else:
            raise ConfigurationError(f"volume at {target!r}: volume_type={kind!r}; the types "
                                     f"are {', '.join(VOLUME_TYPES)}")
    return tuple(parsed)
