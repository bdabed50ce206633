"""``hxpy.haystack.na``, hxPy's module path for :class:`~hxpy.values.NA`."""

from ..values import NA

__all__ = ["NA"]
