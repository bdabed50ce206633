"""The catalog: one interface (:mod:`.base`), backends beside it (:mod:`.sqlite`,
:mod:`.memory`)."""

from .base import ENTITY_TYPES, Catalog, CatalogError, Record, StaleState
from .memory import MemoryCatalog

__all__ = ["ENTITY_TYPES", "Catalog", "CatalogError", "MemoryCatalog", "Record", "StaleState"]
