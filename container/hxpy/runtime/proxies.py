"""What a handler holds in the container: ``project``, ``run`` and the entities it gets or
logs. Each method is one call to the host (:mod:`hxpy.runtime.calls`); nothing here touches
the catalog or the store, which the container never sees.

The proxies call through ``call``: ``hxpy.server.call_host`` in a container, or the host's
handler table directly when a run executes locally (``local_execution=True``).
"""

from __future__ import annotations

import os

from . import calls

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a job's cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    Call = Callable[..., Any]

__all__ = ["Entity", "Project", "Run", "upload_files"]


class Entity:
    """An artifact, dataitem or model of the catalog, as the handler sees it.

    Attributes:
        key: ``store://<project>/<type>/<kind>/<name>:<id>``.
        project, name, kind, id, entity_type: the parts of the key.
        metadata, spec, status: the entity's fields.
    """

    def __init__(self, document: dict[str, Any], call: Call) -> None:
        self._document = document
        self._call = call
        self.key: str = document["key"]
        self.project: str = document["project"]
        self.name: str = document["name"]
        self.kind: str = document["kind"]
        self.id: str = document["id"]
        self.entity_type: str = document["entity_type"]
        self.metadata: dict[str, Any] = document.get("metadata") or {}
        self.spec: dict[str, Any] = document.get("spec") or {}
        self.status: dict[str, Any] = document.get("status") or {}

    def as_df(self, file_format: str | None = None, **kwargs: Any) -> Any:
        """A dataitem's data as a pandas DataFrame: a logged table, or the CSV or Parquet file
        it was logged from (``file_format`` ``"csv"``/``"parquet"``, None: by extension),
        read on the host with pandas options such as ``sep=";"`` (``kwargs``).

        Raises:
            HostCallError: no readable table, or an option the host does not take.
        """
        value = self._call(calls.READ_TABLE, self.key, file_format, kwargs)
        return value.to_dataframe() if hasattr(value, "to_dataframe") else value

    def download(self, destination: str | None = None) -> str:
        """Copy the entity's files to ``destination`` (a directory; by default a new one
        under /tmp) in chunks; the path of the file (one file) or of the directory."""
        destination = destination or os.path.join("/tmp", "entities", self.name, self.id)
        files = self.status.get("files") or []
        for entry in files:
            target = os.path.join(destination, entry["path"])
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            with open(target, "wb") as out:
                offset = 0
                while offset < entry["size"]:
                    chunk = self._call(calls.READ_CHUNK, self.key, entry["path"], offset,
                                       calls.CHUNK_SIZE)
                    if not chunk:
                        break
                    out.write(chunk)
                    offset += len(chunk)
        if len(files) == 1:
            return os.path.join(destination, files[0]["path"])
        return destination

    def __repr__(self) -> str:
        return f"<{self.entity_type} {self.key}>"


class Project:
    """The run's project: log and read entities through the host."""

    def __init__(self, name: str, call: Call) -> None:
        self.name = name
        self._call = call

    def log_artifact(self, name: str, kind: str = "artifact", source: str | None = None,
                     **fields: Any) -> Entity:
        """Record an artifact; ``source`` (a file or a directory) is copied to the store."""
        return self._log("artifact", name, kind, source, fields)

    def log_dataitem(self, name: str, kind: str = "table", data: Any = None,
                     source: str | None = None, **fields: Any) -> Entity:
        """Record a dataitem: ``data`` (a DataFrame, for ``table``) or a ``source`` file."""
        return self._log("dataitem", name, kind, source, fields, data)

    def log_model(self, name: str, kind: str = "model", source: str | None = None,
                  framework: str | None = None, metrics: dict[str, Any] | None = None,
                  **fields: Any) -> Entity:
        """Record a model: its files (``source``), framework and metrics."""
        fields.update(framework=framework, metrics=metrics or {})
        return self._log("model", name, kind, source, fields)

    def get_artifact(self, name_or_key: str) -> Entity:
        return self._get("artifact", name_or_key)

    def get_dataitem(self, name_or_key: str) -> Entity:
        return self._get("dataitem", name_or_key)

    def get_model(self, name_or_key: str) -> Entity:
        return self._get("model", name_or_key)

    def _get(self, entity_type: str, name_or_key: str) -> Entity:
        return Entity(self._call(calls.GET_ENTITY, entity_type, name_or_key), self._call)

    def _log(self, entity_type: str, name: str, kind: str, source: str | None,
             fields: dict[str, Any], data: Any = None) -> Entity:
        uploads = upload_files(self._call, source) if source is not None else []
        document = self._call(calls.LOG_ENTITY, entity_type, name, kind, fields, uploads, data)
        return Entity(document, self._call)


    def __repr__(self) -> str:
        return f"<project {self.name}>"


class Run:
    """The running run: its id, and the metrics it logs."""

    def __init__(self, run_id: str, call: Call) -> None:
        self.id = run_id
        self._call = call

    def log_metric(self, name: str, value: Any, step: int | None = None,
                   overwrite: bool = False, single_value: bool = False) -> None:
        """Record a value of a metric: a number, or a list of numbers (one point each, at
        consecutive steps), as DigitalHub's ``log_metric`` takes. The host keeps every
        point with its ``step`` (None: the point's index in its series) and time; the run's
        ``status.metrics[name]`` is the last point's value. ``overwrite`` drops the points
        logged before; ``single_value`` is DigitalHub's and changes nothing here (the
        status holds the last value either way)."""
        self._call(calls.LOG_METRIC, name, value, step, overwrite)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None,
                    overwrite: bool = False) -> None:
        """Record values of several metrics in one call to the host (each as
        :meth:`log_metric` records it)."""
        self._call(calls.LOG_METRICS, metrics, step, overwrite)

    def __repr__(self) -> str:
        return f"<run {self.id}>"


def upload_files(call: Call, source: str) -> list[str]:
    """Send a file, or every file under a directory, to the host in chunks; their upload
    ids. (The host's own ``project.log_*`` stages its files this same way.)"""
    if os.path.isdir(source):
        paths = sorted(os.path.join(root, name) for root, _, names in os.walk(source)
                       for name in names)
        pairs = [(path, os.path.relpath(path, source).replace(os.sep, "/")) for path in paths]
    else:
        pairs = [(source, os.path.basename(source))]
    uploads = []
    for path, relative in pairs:
        with open(path, "rb") as handle:
            upload = call(calls.UPLOAD_BEGIN, relative)
            while chunk := handle.read(calls.CHUNK_SIZE):
                call(calls.UPLOAD_CHUNK, upload, chunk)
        uploads.append(upload)
    return uploads
