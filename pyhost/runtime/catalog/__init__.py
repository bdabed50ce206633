"""The catalog: one interface (:mod:`.base`), backends beside it (:mod:`.sqlite`,
:mod:`.memory`), and the JSON codec of their documents (:mod:`.document`)."""

from .base import (
    ENTITY_TYPES,
    Catalog,
    CatalogBusy,
    CatalogError,
    Cursor,
    Page,
    Record,
    StaleState,
    Tally,
)
from .memory import MemoryCatalog
from .sqlite import SqliteCatalog

__all__ = ["ENTITY_TYPES", "Catalog", "CatalogBusy", "CatalogError", "Cursor", "MemoryCatalog",
           "Page", "Record", "SqliteCatalog", "StaleState", "Tally"]
