"""Warm pools: containers started and handshaken ahead of time, so ``py()`` answers at once.

A pool is keyed by the options a session would be opened with; ``py(**options)`` takes a
ready server from the pool for the same options, if any. A used server never returns to a
pool (no state leaks between sessions); the pool refills in the background and is bounded.

Three things keep the hand-over to one round trip, measured on a 2-CPU machine: a server
answers one batch that does nothing before it waits in the pool (a server's first batch
costs it about 2 ms of first-time work: a pooled server's first eval took 2.4 to 4 ms, its
second 0.4); the refill after one take from a full pool waits :data:`REFILL_DELAY` (a
container starting at once takes the CPUs from the session just handed over: ``pool_open``
6.6 ms against 2.9 ms with the refill deferred), while after a second take, or with the pool
empty, it starts at once; and that take does not even wake the refilling thread, which looks
at a full pool every :data:`REFILL_DELAY` instead.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
from typing import Any, Callable

from hxpy import codec, protocol

from ..errors import ConfigurationError
from .handshake import Opened

__all__ = ["WarmPool", "close_all_pools", "register", "take_warm"]

log = logging.getLogger("pyhost")

#: Seconds a refill waits after a take while the pool still holds a server.
REFILL_DELAY = 0.2
_WARM_UP_TIMEOUT = 30.0

_pools: dict[tuple[Any, ...], WarmPool] = {}
_pools_lock = threading.Lock()


def take_warm(key: tuple[Any, ...]) -> Opened | None:
    """A ready server for ``key`` from its pool, or None."""
    with _pools_lock:
        pool = _pools.get(key)
    return pool.take() if pool is not None else None


class WarmPool:
    """Keeps ``size`` ready servers made by ``open_one``; refills in a background thread."""

    def __init__(self, size: int, key: tuple[Any, ...], open_one: Callable[[], Opened]) -> None:
        if size < 1:
            raise ConfigurationError(f"a warm pool needs a size of at least 1, not {size}")
        self.size = size
        self.key = key
        self._open_one = open_one
        self._ready: collections.deque[Opened] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._failures = 0
        self._taken_at = -REFILL_DELAY  # when a server was last taken (monotonic)
        self._thread = threading.Thread(target=self._fill, name="pyhost-warm-pool", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> int:
        """How many servers wait in the pool now."""
        return len(self._ready)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the pool is full; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= self.size or self._closed,
                                       timeout)

    def take(self) -> Opened | None:
        """A ready server, or None when the pool is empty."""
        with self._cond:
            while self._ready:
                # The server readied last: its memory is the likeliest to be in the CPU's
                # caches still (a pooled open right after a refill: 0.49-0.53 ms taking the
                # first readied, 0.37-0.40 ms taking the last; after 0.3 s idle, alike).
                opened = self._ready.pop()
                self._taken_at = time.monotonic()
                if not self._ready or len(self._ready) < self.size - 1:  # refill now (_fill)
                    self._cond.notify_all()
                if _looks_alive(opened):
                    return opened
                log.warning("warm pool: a ready server had died; discarding it")
                _discard(opened)
        return None

    def close(self) -> None:
        """Stop refilling and remove every waiting server."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=120)
        with _pools_lock:
            if _pools.get(self.key) is self:
                del _pools[self.key]
        while self._ready:
            _discard(self._ready.popleft())

    def _fill(self) -> None:
        while True:
            with self._cond:
                # A take from a full pool does not wake this thread: the wake-up, and the GIL
                # it takes from the taker, cost the taker's first round trip about 0.15 ms
                # (measured: 0.82 against 0.68 ms). A full pool looks again every
                # REFILL_DELAY instead; a second take (a burst) or close() wakes it at once.
                while not self._closed and len(self._ready) >= self.size:
                    self._cond.wait(REFILL_DELAY)
                # One taken from a full pool: let the taker's first round trips run alone.
                # More taken (a burst), or none left: refill at once.
                while not self._closed and self._ready and len(self._ready) == self.size - 1:
                    left = self._taken_at + REFILL_DELAY - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed:
                    return
            try:
                opened = _warmed(self._open_one())
            except Exception as exc:
                self._failures += 1
                delay = min(30.0, 0.5 * 2 ** min(self._failures, 6))
                log.error("warm pool: could not start a server (%s); retrying in %.1f s", exc,
                          delay)
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, delay)
                continue
            self._failures = 0
            with self._cond:
                if self._closed:
                    _discard(opened)
                    return
                self._ready.append(opened)
                self._cond.notify_all()


def _warmed(opened: Opened) -> Opened:
    """``opened``, once it answered one batch that does nothing (``None``): the server's
    first-time work is done before a session takes it. A server that does not answer is
    removed.

    Raises:
        ConfigurationError: the server answered with something else than a result.
        OSError, PeerClosed, MarshalError: it did not answer.
    """
    try:
        opened.transport.send(protocol.pack_batch(0, _WARM_UP_TIMEOUT,
                                                  [protocol.pack_eval("None")]))
        reply = codec.decode(*opened.transport.recv(_WARM_UP_TIMEOUT))
        kind = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
        if kind != protocol.RESULT:
            raise ConfigurationError(f"the warm-up batch got {kind!r}, not a result")
    except BaseException:
        _discard(opened)
        raise
    return opened


def _discard(opened: Opened) -> None:
    """Close a server's connection and remove it."""
    opened.transport.close()
    opened.instance.cleanup()


def _looks_alive(opened: Opened) -> bool:
    return not opened.transport.hung_up()


def register(pool: WarmPool) -> WarmPool:
    """Make ``pool`` the pool for its key, closing one it replaces."""
    with _pools_lock:
        old = _pools.get(pool.key)
        _pools[pool.key] = pool
    if old is not None:
        old.close()
    return pool


@atexit.register
def close_all_pools() -> None:
    """Remove every waiting server (at exit, and from ``pyhost.close_all``)."""
    with _pools_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.close()
