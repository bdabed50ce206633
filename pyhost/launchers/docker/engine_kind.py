"""Which engine answers the Docker API, and what that changes for pyhost.

Engines users run speak the same API but differ where pyhost meets them:

* **Docker** (Linux): the default; nothing changes.
* **Podman** (``podman system service``): an image is stored as ``localhost/NAME`` (built) or
  ``docker.io/library/NAME`` (imported, loaded), and its import drops the tag asked for
  (pyhost tags the imported base itself, :func:`.debian_base.import_rootfs`). Where Docker
  gives a container the engine's own ulimits, Podman gives it open-files and process limits
  of 1048576 (or its ``default_ulimits``), which the runtime cannot set where the engine may
  not raise its limits (no ``CAP_SYS_RESOURCE``, as in a container): every start fails with
  "error setting rlimits". So pyhost's containers on a local Podman ask for the limits the
  engine's own process has (:func:`session_ulimits`), which is what Docker would give them.
* **Docker Desktop** (macOS, Windows, Linux): the engine runs in a VM, so a Unix socket made on
  this machine cannot be bind-mounted into a container; sessions are reached on a port
  published on ``publish_address`` (127.0.0.1), as on a remote engine.
* **rootless** (Docker or Podman): the engine runs as a user, and container uids are that
  user's subordinate ids; a session's uid is then no uid of this machine's accounts.

:func:`engine_kind` decides from the engine's ``/info`` and ``/version`` answers (pure: the
unit tests feed it engines' real answers). Podman names itself in the headers of its
``/_ping``, which is what a launcher asks: Podman's ``/info`` and ``/version`` run its OCI
runtime's and conmon's binaries and take a second or more.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PODMAN_PING_HEADER", "EngineKind", "engine_kind", "engine_process_limits",
           "parse_limits", "podman_version", "rlimit_advice", "session_ulimits"]

#: The header Podman's ``/_ping`` answer carries (its own API version); Docker's does not.
PODMAN_PING_HEADER = "Libpod-Api-Version"
# Podman's limits for a container that asks for none (libpod's RLimitDefaultValue); an
# unlimited engine limit is asked for as this.
_PODMAN_DEFAULT_LIMIT = 1048576
# The rows of /proc/PID/limits that session_ulimits copies, by Docker's ulimit names.
_LIMIT_ROWS = {"nofile": "Max open files", "nproc": "Max processes"}


@dataclass(frozen=True)
class EngineKind:
    """What kind of engine answers.

    Attributes:
        product: ``"Docker"``, ``"Podman"`` or ``"Docker Desktop"``.
        version: the engine's version, e.g. ``4.3.1``.
        rootless: whether the engine runs as a user rather than root; None when it was not
            asked (a launcher does not ask Podman, whose ``/info`` is slow).
        in_vm: whether its containers run in a VM that a Unix socket of this machine does not
            reach (Docker Desktop, or any local engine of a machine that is not Linux).
    """

    product: str
    version: str | None = None
    rootless: bool | None = False
    in_vm: bool = False

    @property
    def podman(self) -> bool:
        return self.product == "Podman"

    def __str__(self) -> str:
        words = [self.product, self.version or "(version unknown)"]
        if self.rootless:
            words.append("rootless")
        return " ".join(words)

    def changes(self) -> tuple[str, ...]:
        """What this kind changes for pyhost, one sentence each (``pyhost doctor``)."""
        said = []
        if self.podman:
            said.append("images are stored as localhost/NAME, and an imported base is tagged "
                        "by pyhost; containers ask for the engine's own open-files and "
                        "process limits rather than Podman's defaults")
        if self.in_vm:
            said.append("the engine runs in a VM: sessions are reached on a port published on "
                        "publish_address (127.0.0.1), not a Unix socket; /io mounts only "
                        "directories the VM shares")
        if self.rootless:
            said.append("the engine runs as a user: a session's uid is one of that user's "
                        "subordinate ids, not an account here; the io directory must let it "
                        "write (or use io_volume=)")
        return tuple(said)


def engine_kind(info: Mapping[str, Any], version: Mapping[str, Any],
                platform: str = sys.platform, local: bool = True) -> EngineKind:
    """Tell the engine's kind from its ``/info`` and ``/version`` answers (either may be
    empty when it was not asked).

    Args:
        info: the engine's ``/info`` answer.
        version: its ``/version`` answer (or :func:`podman_version`).
        platform: this machine's ``sys.platform``: a local engine of a machine that is not
            Linux runs its containers in a VM, whatever it calls itself.
        local: whether the engine is reached on this machine (a socket or named pipe).
    """
    components = [str(part.get("Name") or "") for part in version.get("Components") or ()
                  if isinstance(part, Mapping)]
    platform_name = str((version.get("Platform") or {}).get("Name") or "")
    security = [str(option) for option in info.get("SecurityOptions") or ()]
    rootless = (any(option.split(",")[0] == "name=rootless" for option in security)
                if info else None)
    desktop = (str(info.get("OperatingSystem") or "").startswith("Docker Desktop")
               or platform_name.startswith("Docker Desktop")
               or any(str(label).startswith("com.docker.desktop.")
                      for label in info.get("Labels") or ()))
    if any("podman" in name.lower() for name in components):
        product = "Podman"
    elif desktop:
        product = "Docker Desktop"
    else:
        product = "Docker"
    in_vm = desktop or (local and not platform.startswith("linux"))
    engine_version = version.get("Version") or info.get("ServerVersion")
    return EngineKind(product, str(engine_version) if engine_version else None, rootless,
                      in_vm)


def podman_version(api_version: str) -> dict[str, Any]:
    """The part of a ``/version`` answer :func:`engine_kind` reads, for a Podman known by
    its ping's :data:`PODMAN_PING_HEADER` (its API version is its own version)."""
    return {"Components": [{"Name": "Podman Engine", "Version": api_version}],
            "Version": api_version}


def session_ulimits(kind: EngineKind, engine_limits: Mapping[str, tuple[int, int]] | None,
                    ) -> dict[str, tuple[int, int]]:
    """The ulimits (name -> soft, hard) a container of ours asks for: on Podman the engine's
    own (read by :func:`engine_process_limits`), which it can always give; none on other
    engines, which give containers their own limits anyway, or when the engine's are
    unknown (a remote Podman: its ``default_ulimits`` then decide, see :func:`rlimit_advice`).
    """
    if not kind.podman or not engine_limits:
        return {}
    return {name: (min(soft, _PODMAN_DEFAULT_LIMIT), min(hard, _PODMAN_DEFAULT_LIMIT))
            for name, (soft, hard) in engine_limits.items()}


def parse_limits(text: str) -> dict[str, tuple[int, int]]:
    """The open-files and process limits of a ``/proc/PID/limits`` text, by Docker's ulimit
    names; ``unlimited`` as :data:`_PODMAN_DEFAULT_LIMIT` (what Podman would ask)."""
    found: dict[str, tuple[int, int]] = {}
    for name, row in _LIMIT_ROWS.items():
        match = re.search(rf"^{row}\s+(\S+)\s+(\S+)", text, re.MULTILINE)
        if match:
            soft, hard = (_PODMAN_DEFAULT_LIMIT if word == "unlimited" else int(word)
                          for word in match.groups())
            found[name] = (soft, hard)
    return found


def engine_process_limits(socket_path: str) -> dict[str, tuple[int, int]] | None:
    """The limits of the process that listens on the engine's Unix socket (found by the
    socket's peer credentials, read from ``/proc``); None when it cannot be told (not
    Linux, another pid namespace, a socket that systemd holds for the engine)."""
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    if peer_credentials is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(5)
            probe.connect(socket_path)
            pid, _, _ = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET,
                                                             peer_credentials, 12))
        if pid <= 1:  # not in our pid namespace, or systemd's socket activation
            return None
        with open(f"/proc/{pid}/limits", encoding="ascii", errors="replace") as handle:
            limits = parse_limits(handle.read())
    except (OSError, ValueError):
        return None
    return limits if set(limits) == set(_LIMIT_ROWS) else None


def rlimit_advice(engine_message: str) -> str:
    """What to do about a container start that failed setting its limits (empty when the
    message is about something else)."""
    if "error setting rlimit" not in engine_message:
        return ""
    return ("; the engine asked the container runtime for higher open-files or process "
            "limits than it may set (it has no CAP_SYS_RESOURCE; Podman asks 1048576 of "
            "each unless told): set `default_ulimits = []` in the [containers] table of the "
            "engine's containers.conf and restart it, so that containers keep the engine's "
            "own limits as on Docker")
