"""Projects: the namespace of functions, runs and entities, with DigitalHub's methods."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from hxpy.runtime.proxies import upload_files

from ..errors import CatalogUnavailable, ConfigurationError, NotInCatalog
from .catalog import Record
from .context import Runtime, get_runtime
from .entities import Artifact, Dataitem, Entity, EntityKey, Model, check_name, entity_class
from .function import Function, save_function
from .host_calls import HostCalls
from .runs import Run

if TYPE_CHECKING:
    import pandas

__all__ = ["Project", "get_or_create_project", "get_project", "new_function", "new_project"]


class Project:
    """A project of the catalog (obtain it with :func:`get_or_create_project`)."""

    def __init__(self, record: Record, runtime: Runtime) -> None:
        self._record = record
        self._runtime = runtime
        self.name = record.name
        self.key = str(record.document["key"])

    # -- functions -----------------------------------------------------------------------

    def new_function(self, name: str, kind: str = "python", **fields: Any) -> Function:
        """Save a function (a new version if it changed): ``handler``, one of ``code``,
        ``base64`` or ``code_src``, ``python_version`` (default ``PYTHON3_11``) and the other
        fields of the design (description, labels, image, requirements, ...).

        Raises:
            ConfigurationError: a bad kind, field, source or handler (nothing is saved).
        """
        return save_function(self._runtime, self.name, name, kind, **fields)

    def get_function(self, name: str, version: str | None = None) -> Function:
        """The latest version of a function (or the one with id ``version``).

        Raises:
            NotInCatalog: no such function in this project (an id of another project's
                function, or of another function, is none of this one's versions).
        """
        record = (self._runtime.get("function", version) if version
                  else self._runtime.latest("function", self.name, name))
        if record.project != self.name or record.name != name:
            raise NotInCatalog(f"function {name!r} of project {self.name!r} has no version "
                               f"{version}")
        return Function(record, self._runtime)

    def list_functions(self) -> list[Function]:
        return [Function(record, self._runtime)
                for record in self._runtime.find("function", project=self.name)]

    # -- runs ----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        record = self._runtime.get("run", run_id)
        if record.project != self.name:
            raise NotInCatalog(f"run {run_id} is not in project {self.name!r}")
        return Run(record, self._runtime)

    def list_runs(self, state: str | None = None) -> list[Run]:
        return [Run(record, self._runtime)
                for record in self._runtime.find("run", project=self.name, state=state)]

    # -- entities ------------------------------------------------------------------------

    def log_dataitem(self, name: str, kind: str = "table", data: pandas.DataFrame | None = None,
                     source: str | None = None, **fields: Any) -> Dataitem:
        """Record a dataitem: a DataFrame (``data``, kept as Parquet) or a file."""
        return self._log("dataitem", name, kind, fields, source, data)  # type: ignore[return-value]

    def log_artifact(self, name: str, kind: str = "artifact", source: str | None = None,
                     **fields: Any) -> Artifact:
        """Record an artifact; ``source`` (a file or directory) is copied into the store."""
        return self._log("artifact", name, kind, fields, source)  # type: ignore[return-value]

    def log_model(self, name: str, kind: str = "model", source: str | None = None,
                  framework: str | None = None, metrics: dict[str, Any] | None = None,
                  **fields: Any) -> Model:
        """Record a model: its files, framework and metrics."""
        fields.update(framework=framework, metrics=metrics or {})
        return self._log("model", name, kind, fields, source)  # type: ignore[return-value]

    def get_dataitem(self, name_or_key: str) -> Dataitem:
        return self._get("dataitem", name_or_key)  # type: ignore[return-value]

    def get_artifact(self, name_or_key: str) -> Artifact:
        return self._get("artifact", name_or_key)  # type: ignore[return-value]

    def get_model(self, name_or_key: str) -> Model:
        return self._get("model", name_or_key)  # type: ignore[return-value]

    def list_dataitems(self) -> list[Dataitem]:
        return self._list("dataitem")  # type: ignore[return-value]

    def list_artifacts(self) -> list[Artifact]:
        return self._list("artifact")  # type: ignore[return-value]

    def list_models(self) -> list[Model]:
        return self._list("model")  # type: ignore[return-value]

    def _log(self, entity_type: str, name: str, kind: str, fields: dict[str, Any],
             source: str | None, data: Any = None) -> Entity:
        calls = HostCalls(self._runtime, self.name, "host", f"{self.key}")
        uploads = []
        if source is not None:
            if not os.path.exists(source):
                raise ConfigurationError(f"source={source!r}: no such file or directory")
            uploads = upload_files(calls.dispatch, source)  # staged as a job's files are
        document = calls.log_entity(entity_type, name, kind, fields, uploads, data)
        return entity_class(entity_type)(document, self._runtime)

    def _get(self, entity_type: str, name_or_key: str) -> Entity:
        calls = HostCalls(self._runtime, self.name, "host", self.key)
        return entity_class(entity_type)(calls.find(entity_type, name_or_key), self._runtime)

    def _list(self, entity_type: str) -> list[Entity]:
        cls = entity_class(entity_type)
        return [cls(record.document, self._runtime)
                for record in self._runtime.find(entity_type, project=self.name)]

    def __repr__(self) -> str:
        return f"<Project {self.name}>"


def new_project(name: str, description: str = "", runtime: Runtime | None = None) -> Project:
    """Create a project.

    Raises:
        ConfigurationError: a bad name, or a project of that name exists.
    """
    runtime = runtime or get_runtime()
    if not _insert_project(runtime, name, description):
        raise ConfigurationError(f"project {name!r} exists; use get_project or "
                                 "get_or_create_project")
    return get_project(name, runtime)


def _insert_project(runtime: Runtime, name: str, description: str) -> bool:
    """Record a project; False if it exists (also when another process made it first)."""
    check_name("project", name)
    if runtime.find("project", project=name, name=name):
        return False
    now = time.time()
    document = {"entity_type": "project", "project": name, "name": name, "kind": "project",
                "id": name, "key": str(EntityKey(name, "project", "project", name, None)),
                "metadata": {"created": now, "updated": now},
                "spec": {"description": description}, "status": {}}
    try:
        runtime.add(Record("project", name, name, name, "project", now, now, "", document))
    except CatalogUnavailable:
        if not runtime.find("project", project=name, name=name):
            raise
        return False  # the id is the name: the other insert won
    return True


def get_project(name: str, runtime: Runtime | None = None) -> Project:
    """An existing project.

    Raises:
        NotInCatalog: there is none of that name.
    """
    runtime = runtime or get_runtime()
    return Project(runtime.latest("project", name, name), runtime)


def get_or_create_project(name: str, runtime: Runtime | None = None) -> Project:
    """The project ``name``, created if it does not exist."""
    runtime = runtime or get_runtime()
    try:
        return get_project(name, runtime)
    except NotInCatalog:
        _insert_project(runtime, name, "")  # made here, or by a process that raced us
        return get_project(name, runtime)


def new_function(name: str, project: str, kind: str = "python", **fields: Any) -> Function:
    """``get_or_create_project(project).new_function(name, kind, **fields)``."""
    return get_or_create_project(project).new_function(name, kind, **fields)
