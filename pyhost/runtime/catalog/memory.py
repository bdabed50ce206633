"""The in-memory catalog: a dict per entity type, for unit tests and throw-away work. One
process only; gone when it ends."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .base import (
    ENTITY_TYPES,
    Catalog,
    CatalogError,
    Cursor,
    Page,
    Record,
    StaleState,
    Tally,
    check_page_size,
)
from .document import encode_document, encode_with_copy

__all__ = ["MemoryCatalog"]


class MemoryCatalog(Catalog):
    """Records in dicts, guarded by one lock; documents are copied in and out.

    A document goes through the same JSON codec as in the SQLite backend, so a test on this
    backend refuses (and normalises, e.g. tuples to lists) exactly what a real one would.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Record]] = {kind: {} for kind in ENTITY_TYPES}
        self._order: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, record: Record) -> None:
        table = self._table(record.entity_type)
        document = _json_copy(record.document)
        with self._lock:
            if record.id in self._order:  # ids are unique across entity types
                raise CatalogError(f"a record with id {record.id} exists")
            table[record.id] = record.with_document(document)
            self._order[record.id] = len(self._order)

    def update(self, entity_type: str, id: str, document: dict[str, Any], *,
               state: str | None = None, expect_state: str | Sequence[str] | None = None,
               updated: float) -> Record:
        table = self._table(entity_type)
        document = _json_copy(document)
        with self._lock:
            record = table.get(id)
            if record is None:
                raise CatalogError(f"no {entity_type} with id {id}")
            if expect_state is not None and record.state not in _states(expect_state):
                raise StaleState(f"{entity_type} {id} is {record.state}, not "
                                 f"{' or '.join(_states(expect_state))}")
            table[id] = record.with_document(document, state, updated)
            return self._copy(table[id])

    def get(self, entity_type: str, id: str) -> Record | None:
        with self._lock:
            record = self._table(entity_type).get(id)
            return None if record is None else self._copy(record)

    def latest(self, entity_type: str, project: str, name: str) -> Record | None:
        found = self.find(entity_type, project=project, name=name)
        return found[-1] if found else None

    def find(self, entity_type: str, *, project: str | None = None, name: str | None = None,
             kind: str | None = None, state: str | Sequence[str] | None = None,
             limit: int | None = None) -> list[Record]:
        if limit is not None and limit < 0:
            raise CatalogError(f"limit must be 0 or more, not {limit}")
        with self._lock:
            found = [record for record in self._table(entity_type).values()
                     if (project is None or record.project == project)
                     and (name is None or record.name == name)
                     and (kind is None or record.kind == kind)
                     and (state is None or record.state in _states(state))]
            found.sort(key=lambda record: (record.created, self._order[record.id]))
            if limit is not None:
                found = found[-limit:] if limit else []
            return [self._copy(record) for record in found]

    def page(self, entity_type: str, *, project: str | None = None,
             state: str | Sequence[str] | None = None, functions: Sequence[str] | None = None,
             text: str | None = None, after: Cursor | None = None, size: int = 50) -> Page:
        check_page_size(size)
        needle = text.lower() if text else None
        with self._lock:
            found = sorted(
                (record for record in self._table(entity_type).values()
                 if (project is None or record.project == project)
                 and (state is None or record.state in _states(state))
                 and (functions is None or
                      (record.document.get("spec") or {}).get("function") in functions)
                 and (needle is None or needle in encode_document(record.document).lower())
                 and (after is None or (record.created, record.id) < after)),
                key=lambda record: (record.created, record.id), reverse=True)
            records = [self._copy(record) for record in found[:size]]
        more = len(found) > size
        return Page(records, (records[-1].created, records[-1].id) if more else None)

    def summary(self) -> list[Tally]:
        counts: dict[tuple[str, str, str], list[Any]] = {}
        with self._lock:
            for entity_type, table in self._records.items():
                for record in table.values():
                    key = (record.project, entity_type, record.state)
                    counts.setdefault(key, [0, set()])
                    counts[key][0] += 1
                    counts[key][1].add(record.name)
        return [Tally(*key, versions, len(names))
                for key, (versions, names) in sorted(counts.items())]

    def _table(self, entity_type: str) -> dict[str, Record]:
        try:
            return self._records[entity_type]
        except KeyError:
            raise CatalogError(f"unknown entity type {entity_type!r}; the types are "
                               f"{', '.join(ENTITY_TYPES)}") from None

    @staticmethod
    def _copy(record: Record) -> Record:
        return record.with_document(record.document)  # a deep copy: callers may change it


def _json_copy(document: dict[str, Any]) -> dict[str, Any]:
    return encode_with_copy(document)[1]


def _states(state: str | Sequence[str]) -> tuple[str, ...]:
    return (state,) if isinstance(state, str) else tuple(state)
