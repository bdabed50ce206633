"""Dataitems, artifacts and models: a project's list of each, one entity's page (a table's
first rows read from its Parquet file without loading the rest), and its files."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyarrow.parquet as pq
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse

from ..errors import NotInCatalog
from ..runtime.catalog import Record
from ..runtime.entities import Entity, entity_class
from .render import page
from .state import console_of

__all__ = ["download", "entities", "entity"]

PREVIEW_ROWS = 100
_PLURALS = {"dataitems": "dataitem", "artifacts": "artifact", "models": "model"}


def entities(request: Request) -> HTMLResponse:
    """A project's dataitems, artifacts or models: each name's newest version."""
    runtime = console_of(request).runtime
    project = request.path_params["project"]
    entity_type = _PLURALS.get(request.path_params["plural"])
    if entity_type is None:
        raise NotInCatalog(f"a project has no {request.path_params['plural']!r} page (it has "
                           f"{', '.join(_PLURALS)})")
    runtime.latest("project", project, project)
    versions: dict[str, list[Record]] = defaultdict(list)
    for record in runtime.find(entity_type, project=project):
        versions[record.name].append(record)
    rows = [(name, found[-1], len(found), _total_size(found[-1]))
            for name, found in sorted(versions.items())]
    return page(request, "entities.html", project=project, entity_type=entity_type,
                plural=request.path_params["plural"], rows=rows)


def entity(request: Request) -> HTMLResponse:
    """One entity version: what the catalog says, its files, and a table's first rows."""
    found = _entity(request)
    preview = _table_preview(found) if found.entity_type == "dataitem" else None
    return page(request, "entity.html", entity=found, preview=preview, files=found.files,
                plural=found.entity_type + "s")


def download(request: Request) -> FileResponse:
    """One of the entity's files, by its path as the entity lists it (no other path is
    served: ``../`` and the like name no file of the entity)."""
    found = _entity(request)
    wanted = request.path_params["path"]
    if wanted not in {str(entry.get("path")) for entry in found.files}:
        raise NotInCatalog(f"{found.key} has no file {wanted!r}")
    path = found.runtime.store.resolve(f"{found.status['path']}/{wanted}")
    return FileResponse(path, filename=path.name)


def _entity(request: Request) -> Entity:
    runtime = console_of(request).runtime
    entity_type = request.path_params["entity_type"]
    if entity_type not in _PLURALS.values():
        raise NotInCatalog(f"there is no entity type {entity_type!r} here")
    record = runtime.get(entity_type, request.path_params["entity_id"])
    return entity_class(entity_type)(record.document, runtime)


def _table_preview(found: Entity) -> dict[str, Any] | None:
    """The schema, the row count and the first rows of a table dataitem's Parquet file
    (one batch read; None when it has none)."""
    parquet = [entry["path"] for entry in found.files
               if str(entry.get("path", "")).endswith(".parquet")]
    if not parquet:
        return None
    path = found.runtime.store.resolve(f"{found.status['path']}/{parquet[0]}")
    with pq.ParquetFile(path) as table:
        pandas = table.schema_arrow.pandas_metadata or {}
        index = {name for name in pandas.get("index_columns") or () if isinstance(name, str)}
        schema = [(field.name, str(field.type)) for field in table.schema_arrow
                  if field.name not in index]  # a stored index is not one of its columns
        first = next(table.iter_batches(batch_size=PREVIEW_ROWS), None)
        rows = first.to_pylist() if first is not None else []
        return {"schema": schema, "rows": rows, "count": table.metadata.num_rows,
                "file": parquet[0]}


def _total_size(record: Record) -> int | None:
    files = (record.document.get("status") or {}).get("files") or []
    sizes = [entry.get("size") for entry in files if isinstance(entry.get("size"), int)]
    return sum(sizes) if sizes else None
