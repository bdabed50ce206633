"""The sources of the code a session compiles, for the lines of its tracebacks.

Each source gets a file name, ``<hxpy-N>``, and a ``linecache`` entry under it, so that a
traceback (the server's error reply, or user code's own ``traceback.print_exc()``) shows the
offending lines. ``linecache`` imports ``tokenize`` and ``re``, which an eval that raises
nothing never needs: until something imports it, the entries wait here, and go into its cache
the moment it is imported (:mod:`hxpy.lazy`).
"""

from __future__ import annotations

import itertools
import sys
import threading

from .lazy import when_imported

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["register"]

_numbers = itertools.count(1)
_lock = threading.Lock()
_waiting: dict[str, tuple[int, None, list[str], str]] | None = None  # None: in linecache


def register(source: str) -> str:
    """A new file name for ``source``, whose lines ``linecache`` gives from now on."""
    global _waiting
    name = f"<hxpy-{next(_numbers)}>"
    # mtime None: linecache.checkcache keeps an entry that has no file behind it.
    entry = (len(source), None, source.splitlines(True), name)
    with _lock:
        if _waiting is not None:
            _waiting[name] = entry
            return name
        linecache = sys.modules.get("linecache")
        if linecache is None:
            _waiting = {name: entry}
    if linecache is None:
        when_imported("linecache", _fill)  # outside the lock: it may call _fill at once
    else:
        linecache.cache[name] = entry
    return name


def _fill(linecache: ModuleType) -> None:
    global _waiting
    with _lock:
        linecache.cache.update(_waiting or {})
        _waiting = None
