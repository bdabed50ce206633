"""Projects: the namespace of functions, runs and entities, with DigitalHub's methods."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from hxpy.runtime.proxies import upload_files

from ..errors import CatalogUnavailable, ConfigurationError, NotInCatalog
from .catalog import Record
from .context import Runtime, get_runtime
from .entities import (
    Artifact,
    Dataitem,
    Entity,
    EntityKey,
    Model,
    check_name,
    entity_class,
    iso_time,
    parse_key,
)
from .function import Function, save_function
from .host_calls import HostCalls
from .runs import Run

if TYPE_CHECKING:
    import pandas

__all__ = ["Project", "get_artifact", "get_dataitem", "get_function", "get_model",
           "get_or_create_project", "get_project", "get_run", "list_runs", "log_artifact",
           "log_dataitem", "log_model", "new_dataitem", "new_function", "new_project"]


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
        ``base64`` or ``code_src``, ``python_version`` (default None: the default image,
        whatever its Python; ``PYTHON3_X``: that version's image) and the other fields of
        the design (description, labels, image, requirements, ...).

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
        """A run of this project, by id or key.

        Raises:
            NotInCatalog: no such run in this project.
        """
        if run_id.startswith("store://"):
            run_id = parse_key(run_id).name
        try:
            record = self._runtime.get("run", run_id)
        except NotInCatalog:
            raise NotInCatalog(f"there is no run {run_id} in project {self.name!r}") from None
        if record.project != self.name:
            raise NotInCatalog(f"run {run_id} is not in project {self.name!r} (it is of "
                               f"project {record.project!r})")
        return Run(record, self._runtime)

    def list_runs(self, state: str | None = None) -> list[Run]:
        return [Run(record, self._runtime)
                for record in self._runtime.find("run", project=self.name, state=state)]

    # -- entities ------------------------------------------------------------------------

    def log_dataitem(self, name: str, kind: str = "table", data: pandas.DataFrame | None = None,
                     source: str | None = None, **fields: Any) -> Dataitem:
        """Record a dataitem: a DataFrame (``data``, kept as Parquet) or a file (``source``,
        e.g. a CSV or Parquet file :meth:`Dataitem.as_df` reads).

        Raises:
            ConfigurationError: a bad name or kind, a missing source, or both data and
                source.
        """
        if data is not None and source is not None:
            raise ConfigurationError(f"dataitem {name!r}: give data= or source=, not both")
        return self._log("dataitem", name, kind, fields, source, data)  # type: ignore[return-value]

    def new_dataitem(self, name: str, kind: str = "table", path: str | None = None,
                     **fields: Any) -> Dataitem:
        """Record a dataitem over a local file or directory ``path`` (copied into the
        store, as DigitalHub records one over a path of its stores).

        Raises:
            ConfigurationError: ``path`` is missing, or names a remote store (s3://...):
                pyhost has only its local store.
        """
        if path is None or "://" in path:
            raise ConfigurationError(f"dataitem {name!r}: path={path!r}; pyhost has no remote "
                                     "store: give a local file or directory")
        return self._log("dataitem", name, kind, {**fields, "path": path},  # type: ignore[return-value]
                         path)

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
        if source is not None and not os.path.exists(source):
            raise ConfigurationError(f"source={source!r}: no such file or directory")
        try:
            if source is not None:
                uploads = upload_files(calls.dispatch, source)  # staged as a job's files are
            document = calls.log_entity(entity_type, name, kind, fields, uploads, data)
        finally:
            calls.abort_uploads()  # what a failure left staged (none once logged)
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


def new_project(name: str, description: str | None = None, labels: list[str] | None = None,
                config: dict[str, Any] | None = None, runtime: Runtime | None = None,
                **sdk_options: Any) -> Project:
    """Create a project; ``description``, ``labels`` and ``config`` are recorded in its spec
    (DigitalHub's ``source``, ``context`` and ``setup_kwargs`` are accepted and unused:
    there is no server or local context directory here).

    Raises:
        ConfigurationError: a bad name or field, or a project of that name exists.
    """
    runtime = runtime or get_runtime()
    spec = _project_spec(description, labels, config, sdk_options)
    if not _insert_project(runtime, name, spec):
        raise ConfigurationError(f"project {name!r} exists; use get_project or "
                                 "get_or_create_project")
    return get_project(name, runtime)


_SDK_PROJECT_OPTIONS = ("source", "context", "setup_kwargs")


def _project_spec(description: Any, labels: Any, config: Any,
                  sdk_options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(sdk_options) - set(_SDK_PROJECT_OPTIONS))
    if unknown:
        raise ConfigurationError(f"project: unknown argument(s) {', '.join(unknown)}")
    if description is not None and not isinstance(description, str):
        raise ConfigurationError(f"project description is text, not {description!r}")
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(label, str) for label in labels)):
        raise ConfigurationError(f"project labels are a list of str, not {labels!r}")
    if config is not None and not isinstance(config, dict):
        raise ConfigurationError(f"project config is a dict, not {config!r}")
    return {"description": description or "", "labels": list(labels or []),
            "config": dict(config or {})}


def _insert_project(runtime: Runtime, name: str, spec: dict[str, Any]) -> bool:
    """Record a project; False if it exists (also when another process made it first)."""
    check_name("project", name)
    if runtime.find("project", project=name, name=name):
        return False
    now = time.time()
    document = {"entity_type": "project", "project": name, "name": name, "kind": "project",
                "id": name, "key": str(EntityKey(name, "project", "project", name, None)),
                "metadata": {"created": iso_time(now), "updated": iso_time(now)},
                "spec": spec, "status": {}}
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


def get_or_create_project(name: str, description: str | None = None,
                          labels: list[str] | None = None, config: dict[str, Any] | None = None,
                          runtime: Runtime | None = None, **sdk_options: Any) -> Project:
    """The project ``name``, created (with ``description``, ``labels``, ``config``; see
    :func:`new_project`) if it does not exist; an existing one is returned unchanged.

    Raises:
        ConfigurationError: a bad name or field.
    """
    runtime = runtime or get_runtime()
    spec = _project_spec(description, labels, config, sdk_options)
    try:
        return get_project(name, runtime)
    except NotInCatalog:
        _insert_project(runtime, name, spec)  # made here, or by a process that raced us
        return get_project(name, runtime)


# -- DigitalHub's module-level functions: the project is an argument -----------------------

def new_function(project: str, name: str, kind: str = "python", **fields: Any) -> Function:
    """``get_or_create_project(project).new_function(name, kind, **fields)``."""
    return get_or_create_project(project).new_function(name, kind, **fields)


def get_function(identifier: str, project: str | None = None,
                 entity_id: str | None = None) -> Function:
    """A function by key (``store://...``) or by name in ``project`` (the latest version,
    or ``entity_id``).

    Raises:
        NotInCatalog: there is none.
        ConfigurationError: a name without a project.
    """
    project, name, entity_id = _identify("function", identifier, project, entity_id)
    return get_project(project).get_function(name, entity_id)


def get_run(identifier: str, project: str | None = None) -> Run:
    """A run by key or id (``project`` checks where it is, when given).

    Raises:
        NotInCatalog: there is none (in ``project``).
    """
    if identifier.startswith("store://"):
        key = parse_key(identifier)
        project, identifier = project or key.project, key.name
    runtime = get_runtime()
    try:
        run = Run(runtime.get("run", identifier), runtime)
    except NotInCatalog:
        where = (f"project {project!r}" if project else
                 f"any project of {runtime.home or 'this catalog'}")
        raise NotInCatalog(f"there is no run {identifier} in {where}") from None
    if project is not None and run.project != project:
        raise NotInCatalog(f"run {identifier} is not in project {project!r} (it is of "
                           f"project {run.project!r})")
    return run


def list_runs(project: str, state: str | None = None, function: str | None = None,
              action: str | None = None) -> list[Run]:
    """The runs of ``project``, optionally of one state, function (name or key) and action."""
    runs = get_project(project).list_runs(state)
    if function is not None:
        runs = [run for run in runs if function in (run.spec.get("function"),
                                                    run.spec["function"].split("/")[-1]
                                                    .split(":")[0])]
    return [run for run in runs if action is None or run.spec.get("action") == action]


def get_dataitem(identifier: str, project: str | None = None,
                 entity_id: str | None = None) -> Dataitem:
    """A dataitem by key, or by name in ``project`` (see :func:`get_function`)."""
    return _get_entity("dataitem", identifier, project, entity_id)  # type: ignore[return-value]


def get_artifact(identifier: str, project: str | None = None,
                 entity_id: str | None = None) -> Artifact:
    """An artifact by key, or by name in ``project`` (see :func:`get_function`)."""
    return _get_entity("artifact", identifier, project, entity_id)  # type: ignore[return-value]


def get_model(identifier: str, project: str | None = None,
              entity_id: str | None = None) -> Model:
    """A model by key, or by name in ``project`` (see :func:`get_function`)."""
    return _get_entity("model", identifier, project, entity_id)  # type: ignore[return-value]


def log_dataitem(project: str, name: str, kind: str = "table", source: str | None = None,
                 data: pandas.DataFrame | None = None, **fields: Any) -> Dataitem:
    """``get_or_create_project(project).log_dataitem(...)``."""
    return get_or_create_project(project).log_dataitem(name, kind, data=data, source=source,
                                                       **fields)


def new_dataitem(project: str, name: str, kind: str = "table", path: str | None = None,
                 **fields: Any) -> Dataitem:
    """``get_or_create_project(project).new_dataitem(...)``."""
    return get_or_create_project(project).new_dataitem(name, kind, path, **fields)


def log_artifact(project: str, name: str, source: str | None = None, kind: str = "artifact",
                 **fields: Any) -> Artifact:
    """``get_or_create_project(project).log_artifact(...)``."""
    return get_or_create_project(project).log_artifact(name, kind, source, **fields)


def log_model(project: str, name: str, source: str | None = None, kind: str = "model",
              **fields: Any) -> Model:
    """``get_or_create_project(project).log_model(...)``."""
    return get_or_create_project(project).log_model(name, kind, source, **fields)


def _identify(entity_type: str, identifier: str, project: str | None,
              entity_id: str | None) -> tuple[str, str, str | None]:
    """``(project, name, id)`` from a key, or from a name and its project."""
    if identifier.startswith("store://"):
        key = parse_key(identifier)
        if key.entity_type != entity_type:
            raise ConfigurationError(f"{identifier} is a {key.entity_type}, not a "
                                     f"{entity_type}")
        return key.project, key.name, key.id or entity_id
    if project is None:
        raise ConfigurationError(f"{entity_type} {identifier!r}: give project= with a name "
                                 "(or a store:// key)")
    return project, identifier, entity_id


def _get_entity(entity_type: str, identifier: str, project: str | None,
                entity_id: str | None) -> Entity:
    project, name, entity_id = _identify(entity_type, identifier, project, entity_id)
    kind = entity_class(entity_type)
    if entity_id is None:
        return get_project(project)._get(entity_type, name)
    runtime = get_runtime()
    record = runtime.get(entity_type, entity_id)
    if record.project != project or record.name != name:
        raise NotInCatalog(f"{entity_type} {name!r} of project {project!r} has no version "
                           f"{entity_id}")
    return kind(record.document, runtime)
