"""Values in the catalog's JSON documents: JSON as it is, and anything else the session codec
carries (bytes, arrays, Haystack values, dates...) as its codec bytes, tagged. Never pickle."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from hxpy import codec

__all__ = ["from_json", "to_json"]

_TAG = "$hxpy"
_EXACT = frozenset((str, int, bool, type(None)))  # exactly these types, not subclasses


def to_json(value: Any) -> Any:
    """``value`` if JSON holds it exactly, else ``{"$hxpy": <base64 of its codec bytes>}``.

    Raises:
        hxpy.codec.MarshalError: the codec cannot carry it either.
    """
    kind = type(value)
    if kind in _EXACT or (kind is float and math.isfinite(value)):
        return value  # JSON holds it exactly: no round trip to find out (a run's parameters)
    try:
        if json.loads(json.dumps(value, allow_nan=False)) == value and not _tagged(value):
            return value
    except (TypeError, ValueError):
        pass
    return {_TAG: base64.b64encode(codec.encode(value)).decode("ascii")}


def from_json(value: Any) -> Any:
    """The value :func:`to_json` was given."""
    if _tagged(value):
        return codec.decode(base64.b64decode(value[_TAG]))
    return value


def _tagged(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {_TAG}
