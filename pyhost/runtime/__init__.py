"""The python runtime: functions of kind ``python`` run as jobs in sandboxed sessions, with
runs, results and the artifacts, dataitems and models they produce recorded in an embedded
catalog. DigitalHub's names, no server::

    import pyhost.runtime as dh
    project = dh.get_or_create_project("demo", description="a demo")
    fn = dh.new_function(project="demo", name="f", kind="python", code_src="main.py",
                         handler="f")
    run = fn.run(action="job", parameters={"x": 1}, wait=True)
    run.status.state, run.results()  # {"output_0": ...}; run.result("result") answers too

See ``docs/runtime.md``.
"""

from hxpy.runtime.handler import handler

from .context import Runtime, configure, get_runtime
from .entities import Artifact, Dataitem, Entity, Model
from .function import Function
from .project import (
    Project,
    get_artifact,
    get_dataitem,
    get_function,
    get_model,
    get_or_create_project,
    get_project,
    get_run,
    list_runs,
    log_artifact,
    log_dataitem,
    log_model,
    new_dataitem,
    new_function,
    new_project,
)
from .runs import Run, RunStatus

__all__ = [
    "Artifact",
    "Dataitem",
    "Entity",
    "Function",
    "Model",
    "Project",
    "Run",
    "RunStatus",
    "Runtime",
    "configure",
    "get_artifact",
    "get_dataitem",
    "get_function",
    "get_model",
    "get_or_create_project",
    "get_project",
    "get_run",
    "get_runtime",
    "handler",
    "list_runs",
    "log_artifact",
    "log_dataitem",
    "log_model",
    "new_dataitem",
    "new_function",
    "new_project",
]
