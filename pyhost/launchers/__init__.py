"""Launchers: where session servers run, chosen by name.

``get_launcher("docker")`` (the sandbox, the default), ``get_launcher("process")`` (a local
process, NOT a sandbox: development and tests) or ``get_launcher("pkg.module:Class")`` for a
launcher of your own. Each name gives one shared launcher per process. The backends are
imported only when asked for, so importing this package never imports docker.
"""

from __future__ import annotations

import importlib
import threading

from ..errors import ConfigurationError
from .base import Endpoint, ExitStatus, Instance, Launcher, LaunchSpec

__all__ = ["Endpoint", "ExitStatus", "Instance", "LaunchSpec", "Launcher", "get_launcher"]

# name -> "module:Class", relative to this package
BUILTIN = {
    "docker": ".docker.launcher:DockerLauncher",
    "process": ".process:ProcessLauncher",
    "swarm": ".docker.swarm.launcher:SwarmLauncher",
}

_shared: dict[str, Launcher] = {}
_lock = threading.Lock()


def get_launcher(name: str | Launcher = "docker") -> Launcher:
    """The process-wide launcher called ``name`` (made on first use); a Launcher as is.

    Raises:
        ConfigurationError: no launcher has that name, or ``pkg.module:Class`` names no
            importable :class:`Launcher` class.
    """
    if isinstance(name, Launcher):
        return name
    with _lock:
        launcher = _shared.get(name)
        if launcher is None:
            launcher = _shared[name] = _load(name)()
        return launcher


def _load(name: str) -> type[Launcher]:
    target = BUILTIN.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ConfigurationError(
            f"launcher={name!r}: not a launcher name; use one of {', '.join(sorted(BUILTIN))} "
            "or 'package.module:LauncherClass'")
    try:
        module = importlib.import_module(module_name, __name__)
        found = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"launcher={name!r}: cannot load {target}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Launcher)):
        raise ConfigurationError(f"launcher={name!r}: {target} is not a Launcher class")
    return found
