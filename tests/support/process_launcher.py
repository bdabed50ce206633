"""A launcher that runs the hxpy server as a local process: the session logic, the wire and
the server are exercised for real without Docker (no sandbox: tests only)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from pyhost.launcher import ExitStatus, Instance, Launcher, LaunchSpec
from pyhost.transport import Endpoint

CONTAINER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "container")


class ProcessInstance(Instance):
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

    def cleanup(self) -> None:
        self.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class ProcessLauncher(Launcher):
    def __init__(self) -> None:
        self.started: list[ProcessInstance] = []

    def start(self, spec: LaunchSpec) -> ProcessInstance:
        tmp = tempfile.mkdtemp(prefix="hxpy-test-")
        path = os.path.join(tmp, "hxpy.sock")
        env = {
            **os.environ, **spec.env,
            "PYTHONPATH": os.path.abspath(CONTAINER_DIR),
            "HXPY_KEY": spec.key, "HXPY_LISTEN": f"unix:{path}",
            "HXPY_MAX_FRAME": str(spec.max_frame), "HXPY_OUTPUT_CAP": str(spec.output_cap),
            "HXPY_SPIN_US": str(round(spec.spin * 1e6)), "HXPY_LOG_LEVEL": spec.log_level,
        }
        proc = subprocess.Popen([sys.executable, "-m", "hxpy"], env=env, cwd=spec.io_dir or tmp)
        instance = ProcessInstance(proc, Endpoint("unix", path), tmp)
        self.started.append(instance)
        return instance
