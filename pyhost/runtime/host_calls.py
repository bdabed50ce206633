"""The host's answers to the calls a job makes on its ``project`` and ``run``: one method
per call name of :mod:`hxpy.runtime.calls`, dispatched through a table, each one catalog or
store operation. Registered on the job's session (``session.handle``), or called directly by
a local run.

What a job may do is checked here, on the host: only its own project's entities, names that
can name an entity and known kinds, files only through uploads the host stages itself, at
most ``open_uploads`` of them open at once and at most ``store_quota`` bytes added to the
store (:class:`~.limits.RunLimits`). A run that goes over a quota is refused the call that
went over, and remembered (:attr:`HostCalls.exceeded`): it ends ERROR even if its handler
swallowed the refusal. Secret values are masked in what is recorded (fields, metric names).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hxpy.runtime import calls

from ..errors import ConfigurationError, NotInCatalog
from .catalog import Record
from .entities import check_kind, check_name, entity_class, new_id, parse_key
from .limits import RunLimits, format_size
from .metric_series import MetricSeries, check_metrics, series_path
from .store import StoreError

if TYPE_CHECKING:
    from .context import Runtime
    from .store import Upload

__all__ = ["READ_OPTIONS", "HostCalls"]

# What a run may pass to pandas' read_csv / read_parquet through ``as_df``: how to parse the
# file, never where to read from or with what (no paths, filesystems, engines or callables).
READ_OPTIONS = frozenset({
    "columns", "comment", "decimal", "delimiter", "dtype", "encoding", "header", "index_col",
    "keep_default_na", "na_values", "names", "nrows", "parse_dates", "quotechar", "sep",
    "skiprows", "thousands", "usecols"})

log = logging.getLogger("pyhost.runtime")


class HostCalls:
    """The call table of one run; it remembers what the run produced and its metrics.

    Args:
        limits: the run's quotas; None (the host's own ``project.log_*``): none.
        mask: masks secret values in what is recorded (default: nothing to mask).

    Attributes:
        stored: bytes the run added to the store so far.
        exceeded: the message of the first quota the run went over, else None.
    """

    def __init__(self, runtime: Runtime, project: str, run_id: str, run_key: str,
                 limits: RunLimits | None = None,
                 mask: Callable[[Any], Any] | None = None) -> None:
        self.runtime = runtime
        self.project = project
        self.run_id = run_id
        self.run_key = run_key
        self.limits = limits
        self.mask = mask or (lambda value: value)
        self.produced: list[str] = []
        self.consumed: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.stored = 0
        self.exceeded: str | None = None
        self._uploads: dict[str, tuple[str, Upload]] = {}
        self._series: MetricSeries | None = None  # made at the first metric
        self._lock = threading.Lock()  # serve replicas share one table
        self._table: dict[str, Callable[..., Any]] | None = None

    def table(self) -> dict[str, Callable[..., Any]]:
        """Call name -> handler, each one telling the container nothing of where the host
        keeps its files (:meth:`without_host_paths`)."""
        if self._table is None:
            self._table = self._guarded_table()
        return self._table

    def _guarded_table(self) -> dict[str, Callable[..., Any]]:
        return {name: self.without_host_paths(handler) for name, handler in (
            (calls.LOG_ENTITY, self.log_entity),
            (calls.GET_ENTITY, self.get_entity),
            (calls.READ_TABLE, self.read_table),
            (calls.READ_CHUNK, self.read_chunk),
            (calls.UPLOAD_BEGIN, self.upload_begin),
            (calls.UPLOAD_CHUNK, self.upload_chunk),
            (calls.LOG_METRIC, self.log_metric),
            (calls.LOG_METRICS, self.log_metrics),
        )}

    def without_host_paths(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler``, whose errors say ``<store>`` and ``<catalog>`` where they named the
        host's directories: a handler learns that its call failed and why, not the host's
        layout (the host's own log keeps the full message)."""
        paths = [(str(self.runtime.store.root), "<store>")]
        catalog_path = getattr(self.runtime.catalog, "path", None)
        if catalog_path is not None:
            paths.append((str(catalog_path), "<catalog>"))
            paths.append((str(Path(catalog_path).parent), "<home>"))

        def answer(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except Exception as exc:
                text = str(exc)
                scrubbed = text
                for path, label in paths:
                    scrubbed = scrubbed.replace(path, label)
                if scrubbed == text:
                    raise
                log.info("run %s: host call failed: %s", self.run_id, text)
                exc.args = (scrubbed,)
                if str(exc) != scrubbed:  # an OSError's text comes from its filename
                    raise StoreError(scrubbed) from None
                raise

        return answer

    def dispatch(self, method: str, *args: Any) -> Any:
        """Call a handler by name (a local run's ``call_host``)."""
        handler = self.table().get(method)
        if handler is None:
            raise LookupError(f"the host has no handler for {method!r}")
        return handler(*args)

    # -- entities ------------------------------------------------------------------------

    def log_entity(self, entity_type: str, name: str, kind: str, fields: dict[str, Any],
                   uploads: list[str], data: Any = None) -> dict[str, Any]:
        """Record an entity made by the run: its fields, its uploaded files, its table."""
        cls = entity_class(entity_type)
        check_name(entity_type, name)
        check_kind(entity_type, kind)
        if self.mask(name) != name:
            raise ConfigurationError(f"a {entity_type}'s name may not hold a secret's value")
        if not isinstance(fields, dict):
            raise ConfigurationError(f"{entity_type} {name!r}: fields must be a dict")
        if not isinstance(uploads, list) or any(upload not in self._uploads
                                                for upload in uploads):
            raise ConfigurationError(f"{entity_type} {name!r}: uploads must name uploads "
                                     "this run has open")
        if data is not None and (entity_type != "dataitem" or kind != "table"):
            raise ConfigurationError(f"{entity_type} {name!r}: data= is for table "
                                     "dataitems; log files with source=")
        entity_id = new_id()
        store = self.runtime.store
        directory = store.path(self.project, entity_type, name, entity_id)
        try:
            document = self._record_version(cls, entity_type, name, kind, entity_id, directory,
                                            fields, uploads, data)
        except BaseException:
            # A version half made (the disk full, the catalog locked) is no version: none of
            # its files stays in the store for no record to name.
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.produced.append(document["key"])
        return document

    def _record_version(self, cls: Any, entity_type: str, name: str, kind: str,
                        entity_id: str, directory: Path, fields: dict[str, Any],
                        uploads: list[str], data: Any) -> dict[str, Any]:
        """Write the files of one entity version into ``directory``, then record it."""
        store = self.runtime.store
        status: dict[str, Any] = {"path": self._relative(directory), "files": []}
        if data is not None:
            status["table"] = store.write_table(self.project, name, entity_id,
                                                _as_dataframe(data))
            size = store.size(status["table"])
            self._count(size, f"the table {name!r}")
            status["files"].append({"path": os.path.basename(status["table"]),
                                    "size": size})
        for upload_id in uploads:
            relative, upload = self._uploads.pop(upload_id)
            staged = store.resolve(upload.commit())
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            status["files"].append({"path": relative, "size": target.stat().st_size})
        document = cls.document(self.project, name, kind, spec=self.mask(dict(fields)),
                                status=status,
                                metadata={"produced_by": self.run_key}, id=entity_id)
        self._add(document)
        return document

    def get_entity(self, entity_type: str, name_or_key: str) -> dict[str, Any]:
        """An entity of the run's project, by name (the latest version) or key."""
        document = self.find(entity_type, name_or_key)
        if document["key"] not in self.consumed:
            self.consumed.append(document["key"])
        return document

    def find(self, entity_type: str, name_or_key: str) -> dict[str, Any]:
        """The document of an entity of this project.

        Raises:
            ConfigurationError: a key of another project or type.
            NotInCatalog: no such entity.
        """
        entity_class(entity_type)
        if isinstance(name_or_key, str) and "://" in name_or_key:
            key = parse_key(name_or_key)
            if key.project != self.project:
                raise ConfigurationError(f"{name_or_key}: a run of project {self.project!r} "
                                         f"cannot use entities of project {key.project!r}")
            if key.entity_type != entity_type:
                raise ConfigurationError(f"{name_or_key} is a {key.entity_type}, not a "
                                         f"{entity_type}")
            record = (self.runtime.get(entity_type, key.id) if key.id
                      else self.runtime.latest(entity_type, self.project, key.name))
        else:
            record = self.runtime.latest(entity_type, self.project, check_name(entity_type,
                                                                               name_or_key))
        if record.project != self.project:
            raise NotInCatalog(f"{name_or_key} is not in project {self.project!r}")
        if "://" in str(name_or_key) and record.name != parse_key(name_or_key).name:
            raise NotInCatalog(f"{name_or_key}: its id is of another {entity_type}")
        return record.document

    def read_table(self, key: str, file_format: str | None = None,
                   options: dict[str, Any] | None = None) -> Any:
        """A dataitem's data as a DataFrame, read as :meth:`.Dataitem.as_df` reads it on the
        host, with the pandas ``options`` the host lets a run pass (:data:`READ_OPTIONS`)."""
        options = dict(options or {})
        unknown = sorted(set(options) - READ_OPTIONS) if isinstance(options, dict) else []
        if unknown:
            raise ConfigurationError(f"as_df(): {', '.join(map(str, unknown))} cannot be "
                                     f"passed from a run (it may pass "
                                     f"{', '.join(sorted(READ_OPTIONS))})")
        dataitem = entity_class("dataitem")(self.find("dataitem", key), self.runtime)
        return dataitem.as_df(file_format, **options)  # type: ignore[attr-defined]

    def read_chunk(self, key: str, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes (at most a chunk) of one of an entity's files, from ``offset``."""
        document = self.find(parse_key(key).entity_type, key)
        status = document.get("status") or {}
        if path not in {entry["path"] for entry in status.get("files") or []}:
            raise NotInCatalog(f"{key} has no file {path!r}")
        relative = f"{status['path']}/{path}"
        return self.runtime.store.read_chunk(relative, int(offset),
                                             min(int(size), calls.CHUNK_SIZE))

    # -- uploads -------------------------------------------------------------------------

    def upload_begin(self, relative: str) -> str:
        """Stage a file the run sends; its upload id."""
        parts = relative.split("/") if isinstance(relative, str) else []
        if not parts or any(part in ("", ".", "..") for part in parts):
            raise ConfigurationError(f"{relative!r} cannot name a file of an entity")
        self._check_quota()
        limits = self.limits
        if limits is not None and len(self._uploads) >= limits.open_uploads:
            raise ConfigurationError(
                f"open_uploads={limits.open_uploads}: the run has {len(self._uploads)} "
                "uploads open (begun, not yet logged); log them (project.log_*) before "
                "beginning another")
        upload_id = new_id()
        upload = self.runtime.store.upload(self.project, "run", self.run_id, "uploads",
                                           upload_id)
        self._uploads[upload_id] = (relative, upload)
        return upload_id

    def upload_chunk(self, upload_id: str, chunk: bytes) -> None:
        """Append a chunk (at most :data:`~hxpy.runtime.calls.CHUNK_SIZE` bytes) to an open
        upload, counted against the store quota: the chunk that would go over it is not
        written, and the upload is dropped."""
        if not isinstance(upload_id, str) or upload_id not in self._uploads:
            raise ConfigurationError(f"no upload {upload_id!r} is open")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"a chunk is bytes, not {type(chunk).__name__}")
        if len(chunk) > calls.CHUNK_SIZE:
            raise ConfigurationError(f"a chunk is at most {calls.CHUNK_SIZE} bytes")
        relative, upload = self._uploads[upload_id]
        try:
            self._count(len(chunk), f"the upload of {relative!r}")
        except ConfigurationError:
            self._uploads.pop(upload_id)
            upload.abort()
            raise
        upload.write(chunk)

    def abort_uploads(self) -> None:
        """Drop what the run staged and never logged."""
        for _, upload in self._uploads.values():
            upload.abort()
        self._uploads.clear()

    # -- the run -------------------------------------------------------------------------

    def log_metric(self, name: str, value: Any, step: int | None = None,
                   overwrite: bool = False) -> None:
        """Record a value of a metric (see :meth:`log_metrics`)."""
        self.log_metrics({name: value}, step, overwrite)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None,
                    overwrite: bool = False) -> None:
        """Record values of several metrics at once: each one point (a list: one per item)
        of its series (:mod:`.metric_series`), and its last point's value in ``metrics``;
        all or none.

        Raises:
            ConfigurationError: a malformed metric, or the call would go past the run's
                bounds (points, names, store quota).
        """
        if isinstance(metrics, dict):
            metrics = {self.mask(name): value for name, value in metrics.items()}
        checked = check_metrics(metrics, step, overwrite)
        self._check_quota()
        if self._series is None:
            with self._lock:
                if self._series is None:
                    path = self.runtime.store.root / series_path(self.project, self.run_id)
                    self._series = MetricSeries(path)
        self._series.log(checked, step, overwrite,
                         lambda size: self._count(size, "the metrics logged"))
        with self._lock:
            self.metrics.update((name, points[-1]) for name, points in checked.items()
                                if points)

    def log_table(self, name: str, data: Any) -> dict[str, Any]:
        """Record a table the handler returned (the host's half of an output)."""
        return self.log_entity("dataitem", name, "table", {}, [], data)

    # -- quotas --------------------------------------------------------------------------

    def count_logs(self, size: int) -> int:
        """Count ``size`` bytes of logs against the store quota; how many may be kept (all,
        or what the quota leaves)."""
        with self._lock:
            if self.limits is None:
                return size
            room = max(self.limits.store_quota - self.stored, 0)
            kept = min(size, room)
            self.stored += kept
            return kept

    def _count(self, size: int, what: str) -> None:
        """Count ``size`` more bytes against the store quota.

        Raises:
            ConfigurationError: they would go over it (the run is marked as over it).
        """
        self._check_quota()
        with self._lock:
            limits = self.limits
            if limits is not None and self.stored + size > limits.store_quota:
                self.exceeded = (
                    f"store_quota={format_size(limits.store_quota)} exceeded: {what} would "
                    f"bring the bytes this run added to the store past "
                    f"{limits.store_quota}; what it was writing was removed")
                raise ConfigurationError(self.exceeded)
            self.stored += size

    def _check_quota(self) -> None:
        if self.exceeded is not None:
            raise ConfigurationError(f"refused: the run went over a quota ({self.exceeded})")

    # -- helpers -------------------------------------------------------------------------

    def _add(self, document: dict[str, Any]) -> None:
        now = time.time()
        self.runtime.add(Record(document["entity_type"], document["project"],
                                document["name"], document["id"], document["kind"], now, now,
                                "", document))

    def _relative(self, path: Any) -> str:
        return str(os.path.relpath(path, self.runtime.store.root))


def _as_dataframe(data: Any) -> Any:
    """A DataFrame from what came over the channel (a Grid) or locally (a DataFrame).
    Text columns become pandas' str dtype, as the Parquet file gives them back anyway; that
    spares a Python str per cell on the way to Arrow."""
    if hasattr(data, "to_dataframe"):
        return data.to_dataframe(text_as_str=True)
    if type(data).__name__ == "DataFrame":
        return data
    raise ConfigurationError(
        f"a table dataitem needs a pandas DataFrame, not {type(data).__name__}")
