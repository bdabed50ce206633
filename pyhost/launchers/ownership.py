"""Who made a server: the owner labels every launcher puts on what it makes.

Everything pyhost starts carries its owner process (host, pid, process start) and its session
id, so that once the owner is gone, a later process (``pyhost gc``) can tell an orphan from a
live session and remove it. The pid's start time tells a reused pid from the owner.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LABEL_PREFIX", "SESSION_LABEL", "SUPERVISOR_LABEL", "Owner", "owner_alive"]

LABEL_PREFIX = "org.pyhost"
SESSION_LABEL = f"{LABEL_PREFIX}.session"
# On a run's owner: the owner is a run's own supervisor process, which a stop may signal.
SUPERVISOR_LABEL = f"{LABEL_PREFIX}.owner.supervisor"


@dataclass(frozen=True)
class Owner:
    """The process that made something."""

    host: str
    pid: int
    started: float  # process start, so a reused pid is not mistaken for us

    @classmethod
    def current(cls) -> Owner:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> Owner:
        """Process ``pid`` of this host (a child just started, say)."""
        return cls(socket.gethostname(), pid, _process_start(pid))

    def labels(self, session_id: str) -> dict[str, str]:
        """The labels that tie a container (or any engine object) to its session and owner."""
        return {
            SESSION_LABEL: session_id,
            f"{LABEL_PREFIX}.owner.host": self.host,
            f"{LABEL_PREFIX}.owner.pid": str(self.pid),
            f"{LABEL_PREFIX}.owner.started": repr(self.started),
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        """The owner named by :meth:`labels`; None when they are missing or malformed."""
        try:
            return cls(labels[f"{LABEL_PREFIX}.owner.host"],
                       int(labels[f"{LABEL_PREFIX}.owner.pid"]),
                       float(labels[f"{LABEL_PREFIX}.owner.started"]))
        except (KeyError, ValueError):
            return None


def owner_alive(owner: Owner) -> bool:
    """Whether the process that made something still runs (on this host)."""
    if owner.host != socket.gethostname():
        return True  # not ours to judge
    if owner.pid == os.getpid():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _zombie(owner.pid):  # ended, not yet reaped (its parent may be gone too)
        return False
    return owner.started == 0.0 or _process_start(owner.pid) == owner.started


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _process_start(pid: int) -> float:
    """Start time of ``pid`` in clock ticks since boot (Linux), or 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return float(fields[19])
    except (OSError, IndexError, ValueError):
        return 0.0
