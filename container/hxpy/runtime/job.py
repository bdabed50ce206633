"""Running a job's handler: load the function's source (:mod:`.loader`), compose its
arguments, call it, sort what it returned into results, tables and entities.

The host sends the job as one value (``define("__job__", job)``) and evaluates
``run_job(__job__)``; the answer goes back as the eval's value. A local run
(``local_execution=True``) calls :func:`run_job` in the host process with the host's call
table instead of ``call_host``.
"""

from __future__ import annotations

from .. import codec
from .handler import output_names
from .loader import check_python, import_function, read_signature, write_sources
from .proxies import Entity, Project, Run

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a job's cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["RESERVED", "compose_arguments", "run_job"]

# Argument names the runtime fills in itself; context and event(s) belong to serve handlers.
RESERVED = ("project", "run", "context", "event", "events")


def run_job(job: dict[str, Any], call: Callable[..., Any] | None = None,
            directory: str | None = None,
            before_import: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run ``job`` (see the module docstring); ``{"results", "tables", "entities"}``.

    The function's files are written to ``directory`` (a new one under the temp directory by
    default: in a container, its tmpfs, gone with it; a local caller passes one it removes).
    ``before_import`` is called just before the handler's import, while no other thread of
    the process imports one (:func:`.loader.import_function`).

    Raises:
        whatever the handler raises (the session reports it with the user's traceback);
        TypeError: an argument cannot be composed, or a returned value cannot be recorded.
    """
    if call is None:
        from ..server import call_host

        call = call_host
    check_python(job.get("python"))
    directory = write_sources(job["files"], directory)
    function = import_function(directory, job["module"], job["function"], before_import)
    kwargs = compose_arguments(function, job, call)
    value = function(**kwargs)
    return _sort_outputs(output_names(function), value)


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
    names, required, takes_extra = read_signature(function)
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
