"""``hxpy.haystack.marker``, hxPy's module path for :class:`~hxpy.values.Marker`."""

from ..values import Marker

__all__ = ["Marker"]
