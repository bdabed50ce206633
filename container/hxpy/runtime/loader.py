"""Loading a function's code where it runs, for jobs (:mod:`.job`) and serve replicas
(:mod:`.serve`) alike: check the Python version, write the function's files, import
``module:function`` from them, and read what the function takes.

Each step is its own function that both call in turn, not one that calls the others: a
user's traceback from a failing import then holds no more runtime frames than it did when
each loaded for itself (a local run's traceback is trimmed by counting frames).
"""

from __future__ import annotations

import _thread  # not threading: a job's cold start (see hxpy.startup)
import importlib
import os
import sys

from .shim import install as install_shim

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a job's cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["check_python", "import_function", "read_signature", "write_sources"]


def check_python(wanted: str | None) -> None:
    """Refuse to run a function that asks for another Python than this one. The host checks
    where it can before a start; this is the last word.

    Raises:
        RuntimeError: ``wanted`` (e.g. ``"3.11"``) is not this interpreter's version.
    """
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != have:
        raise RuntimeError(f"python_version asks for Python {wanted}, but this image runs "
                           f"Python {have}; run the function in an image with Python "
                           f"{wanted} (image=), or ask for PYTHON{have.replace('.', '_')}")


def write_sources(files: dict[str, bytes], directory: str | None = None) -> str:
    """Write the function's files into ``directory`` (default: a new one, under /tmp in a
    container; made with os.mkdir, as tempfile costs 3 ms to import in a fresh server).

    Raises:
        ValueError: a file's relative path would land outside ``directory``.
    """
    if directory is None:
        directory = os.path.join(os.environ.get("TMPDIR") or "/tmp",
                                 f"job-source-{os.getpid()}-{os.urandom(6).hex()}")
        os.mkdir(directory, 0o700)
    for relative, data in files.items():
        path = os.path.join(directory, relative)
        if os.path.commonpath([directory, os.path.abspath(path)]) != directory:
            raise ValueError(f"source file {relative!r} would land outside the source dir")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return directory


# One function's import at a time in a process. Local runs (in the host's process, many
# threads) share sys.modules and sys.path: one run dropping the modules of the last, or
# putting its directory first on sys.path, while another imports, made that one fail
# (KeyError naming a module it was importing) or import the other version's module.
_importing = _thread.RLock()


def import_function(directory: str, module_name: str, function_name: str,
                    before: Callable[[], None] | None = None) -> Callable[..., Any]:
    """Import ``module_name`` from ``directory`` (never an earlier run's module of that
    name) and take ``function_name`` from it. ``digitalhub_runtime_python`` is importable
    from here on (:mod:`.shim`; the real package when installed). ``before`` is called
    first, while no other thread imports a function (a local run drops what the last one
    imported).

    Raises:
        whatever importing the module raises; TypeError: ``function_name`` is not callable.
    """
    install_shim()
    top = module_name.split(".")[0]
    with _importing:
        if before is not None:
            before()
        earlier = sys.modules.pop(top, None)
        if hasattr(earlier, "__path__"):  # a package: its submodules go too (a module has
            for name in [name for name in sys.modules if name.startswith(top + ".")]:  # none)
                del sys.modules[name]
        sys.path.insert(0, directory)
        try:
            # The directory's own finder only, if it has one: every other finder of the
            # process (one per sys.path entry) has nothing of this function to forget, and
            # asking them all cost about 10 us a run (a local run is about 0.5 ms).
            invalidate = getattr(sys.path_importer_cache.get(directory), "invalidate_caches",
                                 None)
            if invalidate is not None:
                invalidate()
            module = importlib.import_module(module_name)
        finally:
            sys.path.remove(directory)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TypeError(f"{module_name}.{function_name} is not a function")
    return function  # type: ignore[no-any-return]


def read_signature(function: Callable[..., Any]) -> tuple[list[str], set[str], bool]:
    """The names a handler takes by keyword, those without a default, and whether it takes
    ``**kwargs``. Read from its code object: ``inspect`` costs 5 ms to import in a fresh
    server, more than the rest of a small job (``inspect`` still reads other callables)."""
    while hasattr(function, "__wrapped__"):  # functools.wraps: the function underneath
        function = function.__wrapped__
    code = getattr(function, "__code__", None)
    if code is None:
        import inspect

        signature = inspect.signature(function).parameters.values()
        named = [p for p in signature if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return ([p.name for p in named], {p.name for p in named if p.default is p.empty},
                any(p.kind is p.VAR_KEYWORD for p in signature))
    positional = code.co_varnames[:code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    defaults = getattr(function, "__defaults__", None) or ()
    keyword_defaults = getattr(function, "__kwdefaults__", None) or {}
    required = set(positional[:len(positional) - len(defaults)])
    required |= {name for name in keyword_only if name not in keyword_defaults}
    return list(positional + keyword_only), required, bool(code.co_flags & _CO_VARKEYWORDS)


_CO_VARKEYWORDS = 0x08  # the code flag of a function taking **kwargs
