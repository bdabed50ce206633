"""Haystack values in Python, the same on the host and in the container.

=====================  =========================================================
Haystack               Python
=====================  =========================================================
null, Bool, Str        None, bool, str
Number                 int / float; :class:`Number` when it has a unit
Marker, NA, Remove     the singletons :class:`Marker`, :class:`NA`, :class:`Remove`
Ref                    :class:`Ref` (``ref.id()``, ``ref.dis()``)
Uri                    :class:`Uri` (a str)
Date, Time, DateTime   ``datetime.date``, ``datetime.time``, ``datetime.datetime``
Coord, XStr, Symbol    :class:`Coord`, :class:`XStr`, :class:`Symbol`
Buf                    bytes
Dict, List             dict (str keys), list
Grid                   :class:`Grid` (built with :class:`GridBuilder`)
=====================  =========================================================

The submodules are the module paths of Haxall's hxPy (``hxpy.haystack.grid``,
``.marker``, ``.na``, ``.remove``, ``.ref``, ``.coord``), so code written for hxPy imports
unchanged; each re-exports the one class defined in :mod:`hxpy.values` or :mod:`hxpy.grid`.
``docs/marshalling.md`` says how each travels and what numpy and pandas values become.
"""

from __future__ import annotations

from ..grid import Col, ColumnNotFound, Grid, GridBuilder, Row, RowLengthError, is_tag_name
from ..values import NA, Coord, Marker, Number, Ref, Remove, Symbol, Uri, XStr

__all__ = [
    "NA",
    "Col",
    "ColumnNotFound",
    "Coord",
    "Grid",
    "GridBuilder",
    "Marker",
    "Number",
    "Ref",
    "Remove",
    "Row",
    "RowLengthError",
    "Symbol",
    "Uri",
    "XStr",
    "is_tag_name",
]
