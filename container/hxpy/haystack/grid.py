"""``hxpy.haystack.grid``, hxPy's module path for the grid classes defined in :mod:`hxpy.grid`.

``GridCol`` and ``GridRow`` are hxPy's names for :class:`Col` and :class:`Row`.
"""

from ..grid import Col, ColumnNotFound, Grid, GridBuilder, Row, RowLengthError, is_tag_name

GridCol = Col
GridRow = Row

__all__ = ["Col", "ColumnNotFound", "Grid", "GridBuilder", "GridCol", "GridRow", "Row",
           "RowLengthError", "is_tag_name"]
