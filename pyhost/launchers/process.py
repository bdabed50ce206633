"""The process launcher: ``python -m hxpy`` as a plain local process.

**Not a sandbox.** User code runs with this process's user, files and network; no limit
applies (``mem_limit``, ``cpus`` are ignored). It is here for development, for machines
without an engine where the code is trusted anyway, and for the unit tests, which exercise the
real server, wire and session without Docker. ``py(launcher="process")`` selects it.

The server listens on a Unix socket in a private temporary directory; ``io`` is its working
directory (no ``/io`` mount: a process sees the host's paths as they are). Its session key
goes down a pipe to its standard input, and secrets over the channel, as for a container.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import hxpy
from hxpy.runtime.shim import SHIM_MODULES

from ..errors import ConfigurationError
from .base import (
    Endpoint,
    ExitStatus,
    Instance,
    Launcher,
    LaunchSpec,
    bind_env,
    key_line,
    server_env,
)

__all__ = ["HXPY_PATH", "InterpreterModules", "ProcessInstance", "ProcessLauncher",
           "interpreter_modules"]

# Where the hxpy package lives, so the child finds the same one we import.
HXPY_PATH = os.path.dirname(os.path.dirname(os.path.abspath(hxpy.__file__)))


class InterpreterModules:
    """The top-level modules this interpreter can import, asked one name at a time
    (``name in modules``) with ``importlib.util.find_spec`` and remembered: it sees what a
    listing misses (namespace packages, editable installs' import hooks). Also true for the
    modules the hxpy shim provides (:mod:`hxpy.runtime.shim`)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {name: True for name in SHIM_MODULES}
        self._known["hxpy"] = True

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        known = self._known.get(name)
        if known is None:
            try:
                known = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):  # a broken package: not importable as is
                known = False
            self._known[name] = known
        return known


_interpreter_modules: InterpreterModules | None = None


def interpreter_modules(fresh: bool = False) -> InterpreterModules:
    """The shared :class:`InterpreterModules` of this process; ``fresh``: a new one, after
    dropping the import system's caches (something may have been installed since)."""
    global _interpreter_modules
    if fresh or _interpreter_modules is None:
        if fresh:
            importlib.invalidate_caches()
        _interpreter_modules = InterpreterModules()
    return _interpreter_modules


class ProcessInstance(Instance):
    """A running ``python -m hxpy`` and its private socket directory."""

    def __init__(self, proc: subprocess.Popen[bytes], endpoint: Endpoint, tmp: str) -> None:
        self.proc = proc
        self.id = f"process-{proc.pid}"
        self.endpoint = endpoint
        self.tmp = tmp

    def poll(self) -> ExitStatus | None:
        code = self.proc.poll()
        return None if code is None else ExitStatus(code if code >= 0 else 128 - code)

    def wait(self, timeout: float) -> ExitStatus | None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def terminate(self, grace: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def cleanup(self) -> None:
        self.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ProcessLauncher(Launcher):
    """Starts servers as local processes (no sandbox; see the module docstring)."""

    name = "process"

    def __init__(self) -> None:
        # The latest servers started, newest last (tests look at them); bounded for long runs.
        self.started: collections.deque[ProcessInstance] = collections.deque(maxlen=1000)

    def check(self, spec: LaunchSpec) -> None:
        docker_only: dict[str, object] = {
            "io_host_path": spec.io_host_path, "io_volume": spec.io_volume,
            "network": spec.network, "volumes": spec.volumes,
            "node_selector": spec.node_selector, "affinity": spec.affinity}
        if spec.publish_address != LaunchSpec.publish_address:
            docker_only["publish_address"] = spec.publish_address
        given = [f"{name}={value!r}" for name, value in docker_only.items() if value]
        given += [f"a port on {port.host_address!r}" for port in spec.ports
                  if port.host_address != "127.0.0.1"]
        if given:
            raise ConfigurationError(
                f"{', '.join(given)}: the process launcher runs the server as a local process "
                "and has no containers, networks, volumes or nodes to choose; drop the option, "
                "or use launcher='docker'")

    def python_version(self, image: str | None) -> str | None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"  # this interpreter

    def importable_names(self, image: str | None,
                         fresh: bool = False) -> InterpreterModules:
        """This interpreter's modules (a process server runs it; it inherits this process's
        site-packages, not what this process added to ``sys.path`` at run time)."""
        return interpreter_modules(fresh)

    def describe_image(self, image: str | None) -> str:
        return f"this Python ({sys.executable}), which the process launcher runs,"

    def image_for_python(self, version: str) -> str | None:
        """None (no image: this interpreter) when ``version`` is this interpreter's.

        Raises:
            ConfigurationError: another version; a process server runs this interpreter.
        """
        have = self.python_version(None)
        if version != have:
            raise ConfigurationError(
                f"Python {version}: the process launcher runs its servers with this "
                f"interpreter, Python {have} ({sys.executable}); run with Python {version}, "
                "or use launcher='docker' and an image with that Python")
        return None

    def start(self, spec: LaunchSpec) -> ProcessInstance:
        self.check(spec)
        tmp = tempfile.mkdtemp(prefix="hxpy-process-")
        path = os.path.join(tmp, "hxpy.sock")
        ports = {port.container_port: ("127.0.0.1", port.host_port or _free_port())
                 for port in spec.ports}
        env = {**os.environ, **server_env(spec, f"unix:{path}"), "PYTHONPATH": HXPY_PATH,
               **{bind_env(inner): f"{host}:{outer}" for inner, (host, outer) in ports.items()}}
        cwd = spec.io_dir or tmp
        try:
            os.makedirs(cwd, exist_ok=True)
            proc = subprocess.Popen([sys.executable, "-m", "hxpy"], env=env, cwd=cwd,
                                    stdin=subprocess.PIPE)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ConfigurationError(f"cannot start the hxpy server in {cwd}: {exc}") from exc
        assert proc.stdin is not None
        try:
            proc.stdin.write(key_line(spec))  # a pipe holds it even before the child reads
            proc.stdin.close()
        except OSError:
            pass  # the child died at once: the handshake reports how it ended
        instance = ProcessInstance(proc, Endpoint("unix", path), tmp)
        instance.ports = ports
        self.started.append(instance)
        return instance


def _free_port() -> int:
    """A port free on loopback now (the server binds it a moment later: a small race that a
    development launcher can live with)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
