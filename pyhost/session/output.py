"""An eval's ``on_output``: the callback that is handed what user code prints while the eval
runs, and how both sessions call it.

A callback that raises must not break the session (the output is the user's convenience, the
eval's value is the point): its first failure in an eval is logged, later ones are not, and
the eval goes on. What it returns, when that is awaitable, the asyncio session awaits before
it reads on, so a slow consumer slows the printer instead of piling chunks up.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

__all__ = ["OutputCallback", "OutputListener", "check_callback"]

log = logging.getLogger("pyhost")

OutputCallback = Callable[[str], Any]  # a chunk of what user code printed, in order


def check_callback(on_output: object, awaitable: bool) -> None:
    """Refuse what cannot be an ``on_output`` (a coroutine function unless ``awaitable``).

    Raises:
        TypeError: not callable, or a coroutine function for the blocking session.
    """
    if not callable(on_output):
        raise TypeError(f"on_output must be callable, not {type(on_output).__name__}")
    if not awaitable and inspect.iscoroutinefunction(on_output):
        raise TypeError("on_output is a coroutine function: the blocking Session cannot "
                        "await it; pass a plain function, or use AsyncSession")


class OutputListener:
    """One eval's ``on_output``, with what it returned last if that is to be awaited, and
    whether it failed already."""

    __slots__ = ("callback", "session_id", "awaiting", "failed")

    def __init__(self, callback: OutputCallback, session_id: str) -> None:
        self.callback = callback
        self.session_id = session_id
        self.awaiting: Any = None
        self.failed = False

    def hand(self, text: str) -> None:
        """Call the callback with ``text``; keep an awaitable it returns in ``awaiting``."""
        try:
            result = self.callback(text)
        except Exception:
            self._report()
            return
        if result is not None and inspect.isawaitable(result):
            self.awaiting = result

    async def settle(self) -> None:
        """Await what the callback returned (the asyncio session, before it reads on)."""
        awaiting, self.awaiting = self.awaiting, None
        try:
            await awaiting
        except Exception:
            self._report()

    def _report(self) -> None:
        """Log the failure being handled, the first time in this eval."""
        if not self.failed:
            self.failed = True
            log.warning("session %s: on_output raised; the eval goes on and later failures "
                        "of this eval are not logged", self.session_id, exc_info=True)
