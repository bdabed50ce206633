"""``hxpy.haystack.coord``, hxPy's module path for :class:`~hxpy.values.Coord`."""

from ..values import Coord

__all__ = ["Coord"]
