"""The runtime of this process: one catalog and one store, made on first use.

By default the catalog is SQLite at ``<home>/catalog.db`` and the store ``<home>/store``
(``home`` is ``$PYHOST_HOME``, see :mod:`.home`). :func:`configure` points this process at
another pair (tests use a temporary directory, or the in-memory catalog). Every catalog call
of the runtime goes through :class:`Runtime`, which turns the backend's errors into
:class:`~pyhost.errors.CatalogUnavailable`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import CatalogUnavailable, NotInCatalog
from .catalog import Catalog, CatalogError, Record, StaleState
from .limits import env_seconds
from .store import Store

__all__ = ["DEFAULT_BUSY_TIMEOUT", "Runtime", "busy_timeout", "configure", "get_runtime"]

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds; PYHOST_CATALOG_BUSY_TIMEOUT


class Runtime:
    """A catalog and a store, used together."""

    def __init__(self, catalog: Catalog, store: Store, home: Path | None = None) -> None:
        self.catalog = catalog
        self.store = store
        # The directory both are in, when they are a home's own (catalog.db and store/):
        # what a run's supervisor process opens again. None: given apart, or in memory.
        self.home = home

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, *, settle: bool = True,
             catalog: Catalog | None = None, store: Store | None = None) -> Runtime:
        """The runtime of ``home`` (default ``$PYHOST_HOME``): its ``catalog.db`` and
        ``store/``, or the ``catalog`` and ``store`` given. With ``settle``, the runs that
        dead processes left active are settled first (:meth:`settle_orphans`); without, the
        caller does it when it wants to know which.

        Raises:
            CatalogUnavailable: the catalog cannot be opened.
            ConfigurationError: ``PYHOST_CATALOG_BUSY_TIMEOUT`` is not a number of seconds.
        """
        from .catalog.sqlite import SqliteCatalog
        from .home import runtime_home

        root = Path(home) if home is not None else runtime_home()
        own = catalog is None and store is None
        if catalog is None:
            with _translated:
                catalog = SqliteCatalog(root / "catalog.db", busy_timeout=busy_timeout())
        runtime = cls(catalog, store or Store(root / "store"), root.absolute() if own else None)
        if settle:
            runtime.settle_orphans()
        return runtime

    def settle_orphans(self) -> list[str]:
        """Settle the runs whose owner process is gone (ERROR; a service STOPPED); their
        ids."""
        from .runs import settle_orphaned_runs

        return settle_orphaned_runs(self)

    def close(self) -> None:
        """Close the catalog (the runtime is not used after)."""
        self.catalog.close()

    def add(self, record: Record) -> Record:
        with _translated:
            self.catalog.add(record)
        return record

    def update(self, entity_type: str, id: str, document: dict[str, Any], *, updated: float,
               state: str | None = None,
               expect_state: str | Sequence[str] | None = None) -> Record:
        """Raises StaleState (a CatalogError) when ``expect_state`` does not hold."""
        with _translated:
            return self.catalog.update(entity_type, id, document, state=state,
                                       expect_state=expect_state, updated=updated)

    def get(self, entity_type: str, id: str) -> Record:
        with _translated:
            record = self.catalog.get(entity_type, id)
        if record is None:
            raise NotInCatalog(f"no {entity_type} with id {id}")
        return record

    def latest(self, entity_type: str, project: str, name: str) -> Record:
        with _translated:
            record = self.catalog.latest(entity_type, project, name)
        if record is None:
            raise NotInCatalog(f"project {project!r} has no {entity_type} named {name!r}")
        return record

    def find(self, entity_type: str, **filters: Any) -> list[Record]:
        with _translated:
            return self.catalog.find(entity_type, **filters)


def busy_timeout() -> float:
    """Seconds a catalog operation waits for another process's write lock before it fails
    with :class:`~pyhost.errors.CatalogUnavailable`: ``$PYHOST_CATALOG_BUSY_TIMEOUT``,
    default 10.

    Raises:
        ConfigurationError: the variable is not a number of seconds over 0.
    """
    return env_seconds("PYHOST_CATALOG_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT)


class _Translated:
    """A backend's CatalogError raised as CatalogUnavailable. A class, not a
    ``@contextmanager``: a fifth of its cost, on every catalog call (two per local run)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # StaleState is not a failure: another process moved the record first.
        if isinstance(exc, CatalogError) and not isinstance(exc, StaleState):
            raise CatalogUnavailable(f"the catalog failed: {exc}") from exc


_translated = _Translated()


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, made on first use from ``$PYHOST_HOME`` (settling the runs
    that dead processes left active)."""
    global _runtime
    with _lock:
        runtime, fresh = _runtime, _runtime is None
        if runtime is None:
            runtime = _runtime = Runtime.open(settle=False)
    if fresh:
        runtime.settle_orphans()
    return runtime


def configure(home: str | os.PathLike[str] | None = None, *, catalog: Catalog | None = None,
              store: Store | None = None) -> Runtime:
    """Point this process's runtime at ``home`` (a directory: ``catalog.db`` and
    ``store/`` inside), or at a given catalog and store; the runs dead processes left
    active there are settled.

    Raises:
        CatalogUnavailable: the catalog cannot be opened.
    """
    global _runtime
    runtime = Runtime.open(home, settle=False, catalog=catalog, store=store)
    with _lock:
        _runtime = runtime
    runtime.settle_orphans()
    return runtime
