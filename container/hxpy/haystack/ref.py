"""``hxpy.haystack.ref``, hxPy's module path for :class:`~hxpy.values.Ref`."""

from ..values import Ref

__all__ = ["Ref"]
