"""Running a job's handler: load the function's source, compose its arguments, call it,
sort what it returned into results, tables and entities.

The host sends the job as one value (``define("__job__", job)``) and evaluates
``run_job(__job__)``; the answer goes back as the eval's value. A local run
(``local_execution=True``) calls :func:`run_job` in the host process with the host's call
table instead of ``call_host``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from .. import codec
from .handler import output_names
from .proxies import Entity, Project, Run
from .shim import install as install_shim

__all__ = ["RESERVED", "compose_arguments", "run_job", "write_sources"]

# Argument names the runtime fills in itself; context and event(s) belong to serve handlers.
RESERVED = ("project", "run", "context", "event", "events")


def run_job(job: dict[str, Any], call: Callable[..., Any] | None = None,
            directory: str | None = None) -> dict[str, Any]:
    """Run ``job`` (see the module docstring); ``{"results", "tables", "entities"}``.

    The function's files are written to ``directory`` (a new one under the temp directory by
    default: in a container, its tmpfs, gone with it; a local caller passes one it removes).

    Raises:
        whatever the handler raises (the session reports it with the user's traceback);
        TypeError: an argument cannot be composed, or a returned value cannot be recorded.
    """
    if call is None:
        from ..server import call_host

        call = call_host
    _check_python(job.get("python"))
    directory = write_sources(job["files"], directory)
    function = _load(directory, job["module"], job["function"])
    kwargs = compose_arguments(function, job, call)
    value = function(**kwargs)
    return _sort_outputs(output_names(function), value)


def _check_python(wanted: str | None) -> None:
    """The host checks the Python where it can before a start; this is the last word."""
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != have:
        raise RuntimeError(f"python_version asks for Python {wanted}, but this image runs "
                           f"Python {have}; run the function in an image with Python "
                           f"{wanted} (image=), or ask for PYTHON{have.replace('.', '_')}")


def write_sources(files: dict[str, bytes], directory: str | None = None) -> str:
    """Write the function's files into ``directory`` (default: a new one, under /tmp in a
    container; made with os.mkdir, as tempfile costs 3 ms to import in a fresh server)."""
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


def _load(directory: str, module_name: str, function_name: str) -> Callable[..., Any]:
    """Import ``module_name`` from ``directory`` (never an earlier run's module of that
    name) and take ``function_name`` from it. ``digitalhub_runtime_python`` is importable
    from here on (:mod:`.shim`; the real package when installed)."""
    install_shim()
    top = module_name.split(".")[0]
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        del sys.modules[name]
    sys.path.insert(0, directory)
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(directory)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TypeError(f"{module_name}.{function_name} is not a function")
    return function  # type: ignore[no-any-return]


def compose_arguments(function: Callable[..., Any], job: dict[str, Any],
                      call: Callable[..., Any]) -> dict[str, Any]:
    """The keyword arguments of the handler: inputs as entities, the reserved names, then
    parameters (extra parameters only when it takes ``**kwargs``).

    Raises:
        TypeError: a required argument has no value, or ``context``/``event`` in a job.
    """
    inputs: dict[str, Any] = job.get("inputs") or {}
    parameters: dict[str, Any] = dict(job.get("parameters") or {})
    reserved = {"project": lambda: Project(job["project"], call),
                "run": lambda: Run(job["run_id"], call)}
    kwargs: dict[str, Any] = {}
    names, required, takes_extra = _parameters(function)
    for name in names:
        if name in inputs:
            kwargs[name] = Entity(inputs[name], call)
        elif name in reserved:
            kwargs[name] = reserved[name]()
        elif name in ("context", "event", "events"):
            raise TypeError(f"{name!r}: jobs get project, run, inputs and parameters; "
                            "context and event(s) are for serve handlers")
        elif name in parameters:
            kwargs[name] = parameters.pop(name)
        elif name in required:
            raise TypeError(f"argument {name!r} has no value: give it in inputs or parameters")
    if takes_extra:
        kwargs.update(parameters)
    return kwargs


def _parameters(function: Callable[..., Any]) -> tuple[list[str], set[str], bool]:
    """The names a handler takes by keyword, those without a default, and whether it takes
    ``**kwargs``. Read from its code object: ``inspect`` costs 5 ms to import in a fresh
    server, more than the rest of a small job (``inspect`` still reads other callables)."""
    while hasattr(function, "__wrapped__"):  # functools.wraps: the function underneath
        function = function.__wrapped__
    code = getattr(function, "__code__", None)
    if code is None:
        import inspect

        parameters = inspect.signature(function).parameters.values()
        named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return ([p.name for p in named], {p.name for p in named if p.default is p.empty},
                any(p.kind is p.VAR_KEYWORD for p in parameters))
    positional = code.co_varnames[:code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    defaults = getattr(function, "__defaults__", None) or ()
    keyword_defaults = getattr(function, "__kwdefaults__", None) or {}
    required = set(positional[:len(positional) - len(defaults)])
    required |= {name for name in keyword_only if name not in keyword_defaults}
    return list(positional + keyword_only), required, bool(code.co_flags & _CO_VARKEYWORDS)


_CO_VARKEYWORDS = 0x08  # the code flag of a function taking **kwargs


def _sort_outputs(names: list[str], value: Any) -> dict[str, Any]:
    if len(names) > 1:
        if not isinstance(value, tuple) or len(value) != len(names):
            raise TypeError(f"the handler names {len(names)} outputs {names} but returned "
                            f"{type(value).__name__}, not a tuple of {len(names)}")
        values = list(value)
    else:
        values = [value]
    sorted_: dict[str, dict[str, Any]] = {"results": {}, "tables": {}, "entities": {}}
    for name, item in zip(names, values):
        if _is_dataframe(item):
            sorted_["tables"][name] = item
        elif isinstance(item, Entity):
            sorted_["entities"][name] = item.key
        else:
            try:
                codec.encode(item)
            except codec.MarshalError as exc:
                raise TypeError(
                    f"output {name!r}: {exc}; return a DataFrame (it becomes a table "
                    "dataitem), an entity, or a plain value (str, int, float, bool, bytes, "
                    "None, list, dict, numpy array)") from None
            sorted_["results"][name] = item
    return sorted_


def _is_dataframe(value: Any) -> bool:
    kind = type(value)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")
