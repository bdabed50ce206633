"""Told, not polled: a process waiting for a run that another process executes learns of its
end at once.

A waiter opens ``<home>/waits/<run id>``, a FIFO (owner-only, made by the first waiter), for
reading. Whoever records a run's end (its supervisor, a ``stop``, the settling of a dead
owner's runs: :func:`pyhost.runtime.runs.transition`) opens it for writing and closes it:
the last writer's close is an end of file that every reader sees at once. No byte is
written, so there is nothing to read, parse or trust; a process that opens the FIFO for
nothing costs a waiter one more read of the run. The teller then removes the FIFO; nobody
waiting costs it one failed ``open``.

A waiter opens the FIFO *before* it reads the run, so an end recorded in between is seen by
that read; it re-reads the run every :data:`FALLBACK` seconds as well, for a teller that died
between recording the end and telling it.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
from pathlib import Path

__all__ = ["FALLBACK", "EndWatch", "tell_ended"]

FALLBACK = 1.0  # seconds between two reads of a run when nobody tells
_DIRECTORY = "waits"


def tell_ended(home: Path, run_id: str) -> None:
    """Wake every process waiting for run ``run_id`` of ``home`` (after its end is
    recorded)."""
    path = os.path.join(home, _DIRECTORY, run_id)  # at every end: no pathlib
    if not os.access(path, os.W_OK):  # nobody ever waited: no FIFO (no exception made for
        return  # it, as a failed open makes: most runs' ends)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # nobody waits now (ENXIO), or the FIFO went meanwhile
        return
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


class EndWatch:
    """The waiting end for run ``run_id`` of ``home``: open it, then read the run, then
    :meth:`wait`.

    Raises:
        OSError: the home cannot hold the FIFO (read-only, another user's): poll instead.
    """

    def __init__(self, home: Path, run_id: str) -> None:
        directory = home / _DIRECTORY
        directory.mkdir(mode=0o700, exist_ok=True)
        self._path = directory / run_id
        self._fd = self._open()

    def wait(self, timeout: float) -> bool:
        """Until told (True) or ``timeout`` seconds (False); read the run again either way."""
        if self._fd < 0:  # told before, yet the run goes on (someone opened it for nothing)
            self._fd = self._open()
        told = bool(select.select([self._fd], [], [], max(timeout, 0.0))[0])
        if told:  # the end of file stays; a next wait opens it afresh (not now: the FIFO
            self.close()  # was removed by its teller, and would be made again for nothing)
        return told

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EndWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> int:
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self._path, 0o600)
        fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):  # planted: it would wake us forever
            os.close(fd)
            raise OSError(f"{self._path} is not a FIFO")
        return fd
