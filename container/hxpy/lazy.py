"""Set up a module the moment it is first imported, by whoever imports it.

A cold start waits for every module the server imports, so the server imports only what it
needs to serve; what it must set up in other modules (``logging``'s handlers, ``linecache``'s
copies of batch sources) waits for their first import. :func:`when_imported` puts a finder
first on ``sys.meta_path`` that lets the real finders find the module and hands it back with
a loader that runs the set-up right after the module's own code, inside the same import: no
importer ever sees the module before its set-up. The finder steps aside when it has nothing
left to wait for.
"""

from __future__ import annotations

import sys
import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

    SetUp = Callable[[ModuleType], None]

__all__ = ["when_imported"]

_lock = threading.Lock()
_waiting: dict[str, list[SetUp]] = {}


def when_imported(name: str, set_up: SetUp) -> None:
    """Call ``set_up(module)`` right after module ``name`` (a dotted name for a submodule) is
    first imported, before its importer gets it; now, if it is imported already."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _waiting.setdefault(name, []).append(set_up)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    set_up(module)


class _Finder:
    """Finds nothing itself: it wraps the loader of a module that has set-ups waiting."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _waiting:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if finder is not self and find else None
            if spec is not None:
                break
        else:
            return None
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _SettingUp(spec.loader)
        return spec


_FINDER = _Finder()


class _SettingUp:
    """The real loader of a module, and the set-ups after its code."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # The module is as its real loader made it (linecache and importlib.resources ask
        # __loader__).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _lock:
            set_ups = _waiting.pop(module.__name__, [])
            if not _waiting and _FINDER in sys.meta_path:
                # Not during a search (this runs after one): the import system iterates
                # sys.meta_path itself.
                sys.meta_path.remove(_FINDER)
        for set_up in set_ups:
            set_up(module)
