"""Functions of kind ``python``: their fields, their versions, and ``fn.run()``.

A function is versioned: saving it with a changed spec or source makes a new version (a new
record under the same name); saving it unchanged returns the current one. Its source is
fetched once, on the host, and kept in the store beside the version; runs record the version
they ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import CatalogUnavailable, ConfigurationError
from .catalog import Record
from .entities import EntityKey, check_name, iso_time
from .sources import (
    PYTHON_VERSIONS,
    HandlerInfo,
    Source,
    load_source,
    redact_url,
    resolve_handler,
)
from .tasks import get_task

if TYPE_CHECKING:
    from .context import Runtime
    from .runs import Run

__all__ = ["KINDS", "Function", "save_function"]

log = logging.getLogger("pyhost.runtime")

KINDS = ("python",)
_SPEC_FIELDS = ("description", "labels", "embedded", "git_source", "lang", "init_function",
                "python_version", "image", "base_image", "requirements", "handler",
                "code_src")


class Function:
    """A version of a python function (obtain it from ``project.new_function``)."""

    def __init__(self, record: Record, runtime: Runtime) -> None:
        self._record = record
        self._runtime = runtime
        # A version never changes: read its files from the store and find its handler in
        # them once per Function, not on every run (a run needed the files twice).
        self._source: Source | None = None
        self._source_directory: str | None = None
        self._handler_info: HandlerInfo | None = None

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def kind(self) -> str:
        return self._record.kind

    @property
    def key(self) -> str:
        return str(self._record.document["key"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._record.document["spec"])

    def source(self) -> Source:
        """The function's files, as fetched when this version was saved."""
        if self._source is None:
            store = self._runtime.store
            root = store.resolve(self._record.document["status"]["source"])
            # A local run imports from here, so Python may have left __pycache__ beside.
            self._source = Source({path.relative_to(root).as_posix(): path.read_bytes()
                                   for path in sorted(root.rglob("*")) if path.is_file()
                                   and "__pycache__" not in path.relative_to(root).parts})
        return self._source

    def source_directory(self) -> str:
        """Where this version's files are in the store (a local run imports them there)."""
        if self._source_directory is None:
            self._source_directory = str(
                self._runtime.store.resolve(self._record.document["status"]["source"]))
        return self._source_directory

    def handler_info(self) -> HandlerInfo:
        if self._handler_info is None:
            self._handler_info = resolve_handler(self.source(), self.spec["handler"])
        return self._handler_info

    def built_image(self) -> dict[str, Any] | None:
        """The image this version's last build made: ``{"tag", "id", "run", "hash",
        "python", "built"}`` as recorded (read again from the catalog: another process may
        have built it); None before any build."""
        self._record = self._runtime.get("function", self.id)
        image = (self._record.document.get("status") or {}).get("image")
        return dict(image) if image else None

    def record_image(self, image: dict[str, Any]) -> None:
        """Record the image a build made on this version: in its status, so it is the same
        version still (its digest is of its spec and source alone)."""
        record = self._runtime.get("function", self.id)
        document = dict(record.document)
        document["status"] = {**(document.get("status") or {}), "image": image}
        now = time.time()
        document["metadata"] = {**(document.get("metadata") or {}), "updated": iso_time(now)}
        self._record = self._runtime.update("function", self.id, document, updated=now)

    def run(self, action: str = "job", log_info: bool = False, **settings: Any) -> Run:
        """Run this function as the task ``action`` names (:data:`pyhost.runtime.tasks.TASKS`):
        ``"job"`` with ``inputs``, ``parameters``, ``outputs``, ``wait``,
        ``local_execution`` (:class:`~pyhost.runtime.tasks.job.JobTask`); ``"build"`` with
        ``instructions`` (:class:`~pyhost.runtime.tasks.build.BuildTask`); ``"serve"`` with
        ``replicas``, ``service_type``, ``port``, ``init_parameters``
        (:class:`~pyhost.runtime.tasks.serve.ServeTask`); each with the settings every task
        shares (:func:`~pyhost.runtime.tasks.spec.common_settings`). ``log_info`` logs the
        run's start and end (logger ``pyhost.runtime``), as DigitalHub's does.

        Raises:
            ConfigurationError: an unknown action or setting, or arguments that do not fit
                the handler; raised before anything starts.
        """
        if not isinstance(log_info, bool):
            raise ConfigurationError(f"log_info is True or False, not {log_info!r}")
        run = get_task(action).start(self, self._runtime, **settings)
        if log_info:
            log.info("run %s of %s (%s): %s", run.id, self.key, action, run.status.state)
        return run

    def __repr__(self) -> str:
        return f"<Function {self.key}>"


def save_function(runtime: Runtime, project: str, name: str, kind: str = "python", *,
                  code: str | None = None, base64: str | None = None,
                  code_src: str | None = None, handler: str | None = None,
                  python_version: str | None = None, **fields: Any) -> Function:
    """Save a function version (see :meth:`Project.new_function`).

    Raises:
        ConfigurationError: a bad kind, name, field, source or handler.
    """
    if kind not in KINDS:
        raise ConfigurationError(f"kind={kind!r}: the function kinds are {', '.join(KINDS)}")
    check_name("function", name)
    unknown = sorted(set(fields) - set(_SPEC_FIELDS))
    if unknown:
        raise ConfigurationError(f"function {name!r}: unknown field(s) {', '.join(unknown)}; "
                                 f"the fields are {', '.join(_SPEC_FIELDS)}")
    if python_version is not None and python_version not in PYTHON_VERSIONS:
        raise ConfigurationError(f"python_version={python_version!r}: one of "
                                 f"{', '.join(PYTHON_VERSIONS)}, or None (the default image's "
                                 "Python, whatever it is)")
    if not handler:
        raise ConfigurationError(f"function {name!r}: handler is required (e.g. 'main' or "
                                 "'pkg.module:main')")
    source = load_source(code=code, base64=base64, code_src=code_src)
    resolve_handler(source, handler)  # a missing module or name fails now
    spec = {"lang": "python", **fields, "handler": handler, "python_version": python_version,
            # the catalog keeps where the source came from, never the credentials to it
            "code_src": redact_url(code_src) if code_src is not None else
            ("base64" if base64 is not None else "code"), "source_digest": source.digest}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    try:
        latest = runtime.latest("function", project, name)
    except LookupError:
        latest = None
    if latest is not None and latest.document["status"].get("digest") == digest:
        return Function(latest, runtime)
    # The id follows from the content and the version it replaces, so processes saving the
    # same change at once make the same version, not two; the project and the name are part
    # of it, or two projects saving the same function would share one record.
    function_id = hashlib.sha256(
        f"{project}/{name}:{digest}:{latest.id if latest else ''}".encode()).hexdigest()[:32]
    directory = runtime.store.path(project, "function", name, function_id) / "source"
    for relative, data in source.files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)  # a concurrent save of the same version writes the same
    now = time.time()
    document = {
        "entity_type": "function", "project": project, "name": name, "kind": kind,
        "id": function_id, "key": str(EntityKey(project, "function", kind, name, function_id)),
        "metadata": {"created": iso_time(now), "updated": iso_time(now),
                     "version": function_id},
        "spec": spec,
        "status": {"digest": digest,
                   "source": str(directory.relative_to(runtime.store.root))},
    }
    record = Record("function", project, name, function_id, kind, now, now, "", document)
    try:
        runtime.add(record)
    except CatalogUnavailable as exc:
        try:
            record = runtime.get("function", function_id)  # another process saved it first
        except LookupError:
            raise exc from None
    return Function(record, runtime)
