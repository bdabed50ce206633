"""A handler's imports, checked against what its run's image can import before the run
starts.

What is checked: the top-level absolute imports (``import x``, ``from x import y``, straight
in a module's body) of the handler's module and of the source's modules it imports that way,
read with ``ast``, never run. An import inside a function, a class, an ``if`` or a ``try``
is left to the run (``try: import x / except ImportError`` is how code says "optional");
relative imports and modules of the source itself are the source's own. Modules of this
interpreter's standard library are not checked either: every image has a Python, and asking
one for them alone would cost a probe. ``digitalhub_runtime_python`` is there wherever a
handler runs (:mod:`hxpy.runtime.shim`).

What an image can import is the launcher's answer (``Launcher.importable_names``: a probe
of the image once per image id for Docker, this interpreter for the process launcher and for
``local_execution=True``); a launcher that cannot tell answers None and nothing is checked.
"""

from __future__ import annotations

import ast
import sys
import threading
from collections.abc import Container
from typing import TYPE_CHECKING

from hxpy.runtime.shim import SHIM_MODULES

from ..errors import ConfigurationError
from ..launchers import get_launcher
from ..launchers.process import interpreter_modules
from .sources import Source, parse_python

if TYPE_CHECKING:
    from ..launchers import Launcher
    from .function import Function

__all__ = ["ImportSite", "check_imports", "required_imports"]

#: (file, line) of the first top-level import of a module.
ImportSite = tuple[str, int]

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(
    sys.builtin_module_names) | {"__future__"}
_ALWAYS_THERE = _STDLIB | frozenset(SHIM_MODULES) | {"hxpy"}

# (function key, module) -> its imports: a version never changes, so a warm job reads
# its handler's imports with one lookup. Bounded: a long process sees many versions.
_MEMO_SIZE = 1024
_memo: dict[tuple[str, str], dict[str, ImportSite]] = {}
_memo_lock = threading.Lock()


def check_imports(function: Function, launcher: str | Launcher, image: str | None, *,
                  local: bool = False) -> None:
    """Refuse a run whose handler imports, at the top level of its source, a module the
    run's ``image`` on ``launcher`` (or this interpreter, for a ``local`` run) cannot
    import.

    Raises:
        ConfigurationError: such a module (the message names it, where it is imported, the
            image, and how to get it there).
    """
    needed = _memo_imports(function)
    if not needed:
        return

    def importable(fresh: bool) -> Container[str] | None:
        if local:
            return interpreter_modules(fresh)
        return get_launcher(launcher).importable_names(image, fresh)

    missing = _missing(needed, importable(False))
    if missing:  # the cached answer may be stale (a tag rebuilt, a package installed since)
        missing = _missing(needed, importable(True))
    if not missing:
        return
    name = missing[0]
    path, line = needed[name]
    others = f" (and {', '.join(map(repr, missing[1:]))})" if missing[1:] else ""
    where = f"handler {function.spec['handler']!r}: {path}:{line} imports {name!r}{others}"
    if local:
        raise ConfigurationError(
            f"{where}, which this Python ({sys.executable}) cannot import; a local run uses "
            "this interpreter: install the package that provides it here, or run the job in "
            "a container: give the function requirements=[...] with that package and build "
            "its image (fn.run(action='build', wait=True))")
    target = get_launcher(launcher).describe_image(image)
    raise ConfigurationError(
        f"{where}, which {target} cannot import; give the function requirements=[...] "
        f"with the package that provides it and build its image "
        f"(fn.run(action='build', wait=True)), or pass image= of an image that has it")


def _missing(needed: dict[str, ImportSite], available: Container[str] | None) -> list[str]:
    if available is None:
        return []
    return sorted(name for name in needed if name not in available)


def _memo_imports(function: Function) -> dict[str, ImportSite]:
    module = function.handler_info().module
    key = (function.key, module)
    found = _memo.get(key)
    if found is None:
        found = {name: site for name, site in
                 required_imports(function.source(), module).items()
                 if name not in _ALWAYS_THERE}
        with _memo_lock:
            if len(_memo) >= _MEMO_SIZE:
                _memo.pop(next(iter(_memo)))
            _memo[key] = found
    return found


def required_imports(source: Source, module: str) -> dict[str, ImportSite]:
    """The top-level modules ``module`` of ``source`` needs from outside the source (see the
    module docstring), each with where it is first imported; stdlib names included."""
    modules = _module_files(source)
    own = _top_names(modules)
    needed: dict[str, ImportSite] = {}
    seen: set[str] = set()
    queue = [module]
    while queue:
        name = queue.pop(0)
        if name in seen or name not in modules:
            continue
        seen.add(name)
        path = modules[name]
        try:
            tree = parse_python(source.files[path], path)
        except (SyntaxError, ValueError):
            continue  # not ours to judge here: the run reports it
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in tree.body:
            for target, line in _imported(node, package):
                top = target.split(".")[0]
                if top in own:
                    # the source's own: follow it (each of its packages runs its __init__)
                    parts = target.split(".")
                    queue.extend(".".join(parts[:end]) for end in range(1, len(parts) + 1))
                elif target and not target.startswith("."):
                    needed.setdefault(top, (path, line))
    return needed


def _imported(node: ast.stmt, package: str) -> list[tuple[str, int]]:
    """The modules a top-level statement imports, absolute (a relative import resolved
    against ``package``; one that climbs out of the source gives a leading dot)."""
    if isinstance(node, ast.Import):
        return [(alias.name, node.lineno) for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".") if package else []
        if node.level > len(anchor):  # beyond the top-level package: not ours to follow
            return [("." + base, node.lineno)]
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    if not base:
        return []
    # "from pkg import mod" may import a module of the source: followed if it is one
    return [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno)
                                    for alias in node.names if alias.name != "*"]


def _module_files(source: Source) -> dict[str, str]:
    """Import name -> file, for the source's Python files."""
    modules = {}
    for path in source.files:
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            modules[".".join(parts)] = path
    return modules


def _top_names(modules: dict[str, str]) -> set[str]:
    return {name.split(".")[0] for name in modules}
