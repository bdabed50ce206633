"""``hxpy.haystack.remove``, hxPy's module path for :class:`~hxpy.values.Remove`."""

from ..values import Remove

__all__ = ["Remove"]
