"""The host's own system: finding programs and installing Debian packages.

Used to set up the engine (``docker.io``) and to make a Debian base image (``debootstrap``).
``apt-get`` is the only program run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Callable, Optional

from ...errors import InstallError

__all__ = ["SYSTEM_PATH", "Progress", "apt_install", "say", "which"]

Progress = Optional[Callable[[str], None]]

# dockerd, runc, debootstrap and apt-get live in sbin, which a non-login root shell may not
# have on PATH.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_APT_TIMEOUT = 900.0

_apt_updated = False


def apt_install(packages: Sequence[str], progress: Progress = None) -> None:
    """Install Debian packages with ``apt-get`` (running ``apt-get update`` once per process).

    Args:
        packages: package names.
        progress: called with a line before each apt step.

    Raises:
        InstallError: not root, no ``apt-get``, or apt failed (the tail of its output attached).
    """
    if os.geteuid() != 0 or which("apt-get") is None:
        raise InstallError(f"installing {' '.join(packages)} needs root and apt-get; "
                          f"as root run: apt-get install -y {' '.join(packages)}")
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
    steps: list[list[str]] = []
    if not _apt_updated:
        steps.append(["apt-get", "update"])
    steps.append(["apt-get", "install", "-y", *packages])
    for argv in steps:
        say(progress, "running " + " ".join(argv))
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=_APT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstallError(f"{' '.join(argv)} failed: {exc}") from exc
        if done.returncode != 0:
            tail = done.stdout.decode(errors="replace")[-2000:]
            raise InstallError(f"{' '.join(argv)} exited with {done.returncode}:\n{tail}")
        if argv[1] == "update":
            _apt_updated = True


def which(program: str) -> str | None:
    """Where ``program`` is, on PATH or in the system directories."""
    return shutil.which(program) or shutil.which(program, path=SYSTEM_PATH)


def say(progress: Progress, line: str) -> None:
    """Report one line of progress, if anyone listens."""
    if progress is not None:
        progress(line)
