"""The catalog interface: where projects, functions, runs and the entities they produce are
recorded.

Every entity is a :class:`Record`: a few indexed columns (type, project, name, id, kind,
state, times) and the whole entity as a JSON document (``metadata``/``spec``/``status``, as
DigitalHub's entities are). Nothing is ever pickled. Entities are immutable versions (a
changed function is a new record under the same name); a run is one record whose state and
document move forward, compare-and-set on its state, so two processes never both move it.

Backends: ``sqlite`` (embedded, the default: :mod:`.sqlite`) and ``memory`` (unit tests:
:mod:`.memory`); a server database later implements this same class.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ENTITY_TYPES", "Catalog", "CatalogBusy", "CatalogError", "Cursor", "Page", "Record",
           "StaleState", "Tally", "check_page_size"]

# What a record may be; "project" records have project == name.
ENTITY_TYPES = ("project", "function", "run", "artifact", "dataitem", "model")


class CatalogError(Exception):
    """A catalog operation failed (the backend's error is the cause). The runtime turns it
    into a pyhost error; backends raise only this (and :class:`StaleState`)."""


class CatalogBusy(CatalogError):
    """Another writer held the catalog's write lock past the busy timeout; nothing of the
    operation was written (trying it again later may succeed)."""


class StaleState(CatalogError):
    """A compare-and-set update found another state than the one expected."""


@dataclass(frozen=True)
class Record:
    """One entity version.

    Attributes:
        entity_type: one of :data:`ENTITY_TYPES`.
        project: the project's name (for a project record, its own name).
        name: the entity's name (a run's name is its id).
        id: unique across the catalog (a uuid4 hex).
        kind: e.g. ``python`` (function), ``python+job`` (run), ``table`` (dataitem).
        created: seconds since the epoch.
        updated: seconds since the epoch of the last change (runs change; others do not).
        state: a run's state (``CREATED`` ... ``COMPLETED``); ``""`` for other entities.
        document: the entity as JSON-able data; a copy is kept and a copy is returned.
    """

    entity_type: str
    project: str
    name: str
    id: str
    kind: str
    created: float
    updated: float
    state: str = ""
    document: dict[str, Any] = field(default_factory=dict)

    def with_document(self, document: dict[str, Any], state: str | None = None,
                      updated: float | None = None) -> Record:
        """This record with ``document`` (deep-copied) and, when given, ``state`` and
        ``updated``."""
        return replace(self, document=copy.deepcopy(document),
                       state=self.state if state is None else state,
                       updated=self.updated if updated is None else updated)


#: Where a page ends: the last record's ``(created, id)``; the next page starts after it.
Cursor = tuple[float, str]


@dataclass(frozen=True)
class Page:
    """Records newest first, and the cursor of the next page (None: this is the last)."""

    records: list[Record]
    next: Cursor | None


@dataclass(frozen=True, order=True)
class Tally:
    """How many records of one type and state a project has: ``versions`` of ``names``
    distinct names."""

    project: str
    entity_type: str
    state: str
    versions: int
    names: int


class Catalog(abc.ABC):
    """A store of :class:`Record` objects. Safe for threads and, for a shared backend, for
    several processes at once.

    Raises (every method):
        CatalogError: the backend failed.
    """

    #: The schema version this backend writes and reads.
    schema_version: int = 1

    @abc.abstractmethod
    def add(self, record: Record) -> None:
        """Insert a new record.

        Raises:
            CatalogError: a record with that id exists (of any entity type), the entity
                type is unknown, or the document is not JSON data (the message names the
                field).
        """

    @abc.abstractmethod
    def update(self, entity_type: str, id: str, document: dict[str, Any], *,
               state: str | None = None, expect_state: str | Sequence[str] | None = None,
               updated: float) -> Record:
        """Replace a record's document (and state), if its state is ``expect_state`` (one
        of, for a sequence) when given. Returns the new record.

        Raises:
            CatalogError: no such record, or the document is not JSON data.
            StaleState: its state is not the one expected (nothing was changed).
        """

    @abc.abstractmethod
    def get(self, entity_type: str, id: str) -> Record | None:
        """The record with ``id``, or None."""

    @abc.abstractmethod
    def latest(self, entity_type: str, project: str, name: str) -> Record | None:
        """The newest version of ``name`` (largest ``created``, then insertion), or None."""

    @abc.abstractmethod
    def find(self, entity_type: str, *, project: str | None = None, name: str | None = None,
             kind: str | None = None, state: str | Sequence[str] | None = None,
             limit: int | None = None) -> list[Record]:
        """Records matching every given filter, oldest first (``limit``: the newest that
        many, still oldest first).

        Raises:
            CatalogError: ``limit`` is negative.
        """

    @abc.abstractmethod
    def page(self, entity_type: str, *, project: str | None = None,
             state: str | Sequence[str] | None = None, functions: Sequence[str] | None = None,
             text: str | None = None, after: Cursor | None = None, size: int = 50) -> Page:
        """Records newest first (by ``created``, then ``id``), ``size`` at most, after the
        cursor ``after``; the filters as :meth:`find`'s, and ``functions`` (runs of these
        function keys) and ``text`` (a case-insensitive substring of the record's document).

        Raises:
            CatalogError: ``size`` is not 1 to 1000.
        """

    @abc.abstractmethod
    def summary(self) -> list[Tally]:
        """How many records of each project, type and state there are."""

    def close(self) -> None:
        """Release what the backend holds (idempotent)."""
        return None  # a backend that holds nothing has nothing to release


def check_page_size(size: int) -> None:
    """Refuse a page size a backend should not be asked for.

    Raises:
        CatalogError: ``size`` is not 1 to 1000.
    """
    if not isinstance(size, int) or not 1 <= size <= 1000:
        raise CatalogError(f"a page holds 1 to 1000 records, not {size!r}")
