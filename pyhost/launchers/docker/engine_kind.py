"""Which engine answers the Docker API, and what that changes for pyhost.

Engines users run speak the same API but differ where pyhost meets them:

* **Docker** (Linux): the default; nothing changes.
* **Podman** (``podman system service``): images built or imported here are stored as
  ``localhost/NAME`` or ``docker.io/library/NAME``, and an import may drop the tag asked for
  (pyhost tags the imported base itself, :mod:`.debian_base`). Podman gives each container an
  open-files and a process limit of its own (1048576 and 4194304, or its ``default_ulimits``)
  rather than the engine's, which fails where the engine may not raise its limits; pyhost's
  sessions ask for limits the engine can give (:func:`session_ulimits`).
* **Docker Desktop** (macOS, Windows, Linux): the engine runs in a VM, so a Unix socket made on
  this machine cannot be bind-mounted into a container; sessions are reached on a port
  published on ``publish_address`` (127.0.0.1), as on a remote engine.
* **rootless** (Docker or Podman): the engine runs as a user, and container uids are that
  user's subordinate ids; a session's uid is then no uid of this machine's accounts.

:func:`engine_kind` decides from the engine's ``/info`` and ``/version`` answers; these are
pure functions (the unit tests feed them engines' real answers).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EngineKind", "engine_kind", "session_ulimits"]

# Podman's own limits for a container that asks for none (libpod's RLimitDefaultValue).
_PODMAN_DEFAULT_LIMIT = 1048576


@dataclass(frozen=True)
class EngineKind:
    """What kind of engine answers.

    Attributes:
        product: ``"Docker"``, ``"Podman"`` or ``"Docker Desktop"``.
        version: the engine's version, e.g. ``4.3.1``.
        rootless: whether the engine runs as a user rather than root.
        in_vm: whether its containers run in a VM that a Unix socket of this machine does not
            reach (Docker Desktop, or any local engine of a machine that is not Linux).
    """

    product: str
    version: str | None = None
    rootless: bool = False
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
            said.append("images are stored as localhost/NAME and an imported base is tagged by "
                        "pyhost; sessions ask for the open-files and process limits the engine "
                        "can give rather than Podman's defaults")
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
    """Tell the engine's kind from its ``/info`` and ``/version`` answers.

    Args:
        info: the engine's ``/info`` answer.
        version: its ``/version`` answer.
        platform: this machine's ``sys.platform``: a local engine of a machine that is not
            Linux runs its containers in a VM, whatever it calls itself.
        local: whether the engine is reached on this machine (a socket or named pipe).
    """
    components = [str(part.get("Name") or "") for part in version.get("Components") or ()
                  if isinstance(part, Mapping)]
    platform_name = str((version.get("Platform") or {}).get("Name") or "")
    security = [str(option) for option in info.get("SecurityOptions") or ()]
    rootless = any(option.split(",")[0] == "name=rootless" for option in security)
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


def session_ulimits(kind: EngineKind, local: bool) -> dict[str, tuple[int, int]]:
    """The ulimits (name -> soft, hard) a session container asks for; none on Docker, which
    gives each container the engine's own limits.

    Podman instead sets open files and processes to 1048576 and 4194304 (or its
    ``default_ulimits``), which the container runtime cannot do where the engine may not raise
    its limits (no ``CAP_SYS_RESOURCE``: in a container, or rootless): the start fails with
    "error setting rlimits". A session on a local Podman asks for this process's limits
    (which a local engine started beside it shares), capped at Podman's own default; on a
    remote Podman nothing is known of its limits, so nothing is asked for.
    """
    if not kind.podman or not local:
        return {}
    import resource  # POSIX only, as is a local Podman

    return {"nofile": _own_limit(resource.getrlimit(resource.RLIMIT_NOFILE),
                                 resource.RLIM_INFINITY),
            "nproc": _own_limit(resource.getrlimit(resource.RLIMIT_NPROC),
                                resource.RLIM_INFINITY)}


def _own_limit(limits: tuple[int, int], infinity: int) -> tuple[int, int]:
    soft, hard = limits
    cap = _PODMAN_DEFAULT_LIMIT
    hard = cap if hard == infinity else min(hard, cap)
    soft = hard if soft == infinity else min(soft, hard)
    return soft, hard
