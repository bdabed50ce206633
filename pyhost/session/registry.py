"""The sessions of this process: those with a running server, and persistent ones by key.

Kept so that they can be listed (``pyhost.sessions()``) and closed together: at exit, on
SIGTERM, and by ``pyhost.close_all()``. Running sessions are held weakly: a session nobody
holds any more is not kept alive here (its container is removed when it is closed or at exit).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .blocking import Session

__all__ = ["close_all", "close_on_sigterm", "forget", "keep_sigterm", "live_sessions",
           "persistent", "remember", "sessions"]

log = logging.getLogger("pyhost")

_live: weakref.WeakSet[Session] = weakref.WeakSet()
_persistent: dict[str, Session] = {}
_lock = threading.Lock()
_sigterm_installed = False


def remember(session: Session) -> None:
    """Note a session whose server runs."""
    with _lock:
        _live.add(session)


def forget(session: Session) -> None:
    """Note a session that was closed."""
    with _lock:
        _live.discard(session)


def live_sessions() -> list[Session]:
    """Sessions with a running server in this process."""
    with _lock:
        return list(_live)


def persistent(key: str, make: Callable[[], Session]) -> Session:
    """The open session kept under ``key``, or a new one from ``make()`` kept there."""
    with _lock:
        session = _persistent.get(key)
    if session is not None and not session.closed:
        return session
    session = make()
    with _lock:
        existing = _persistent.get(key)
        if existing is not None and not existing.closed:
            return existing
        _persistent[key] = session
    return session


def sessions() -> list[Session]:
    """Open sessions of this process: those with a running server, and persistent ones."""
    with _lock:
        kept = [s for s in _persistent.values() if not s.closed]
    live = live_sessions()
    return live + [s for s in kept if s not in live]


def close_all() -> None:
    """Close every session of this process and forget the persistent ones."""
    for session in sessions():
        session.close()
    with _lock:
        _persistent.clear()


@atexit.register
def _close_at_exit() -> None:
    for session in sessions():
        try:
            session.close()
        except Exception:  # exiting: report nothing, remove what we can
            pass


def keep_sigterm() -> None:
    """This process handles SIGTERM itself and its sessions with it (a run's supervisor,
    which gives its run's session a grace period): :func:`close_on_sigterm` installs
    nothing here."""
    global _sigterm_installed
    _sigterm_installed = True


def close_on_sigterm() -> None:
    """Close sessions on SIGTERM, then let the previous disposition act (once per process).

    Installed only from the main thread and only over the default handler or one of the
    application's (which is chained), never over SIG_IGN.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        log.info("SIGTERM: closing %d session(s)", len(sessions()))
        try:
            close_all()
        finally:
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
