"""The one registry of msgpack ext type codes (documented in ``docs/protocol.md`` and
``docs/marshalling.md``), known to users as :class:`hxpy.codec.ExtCode`.

A module of its own so that the server's start does without ``enum``: :mod:`hxpy.codec`
imports it only when the Haystack table (:mod:`hxpy.exttypes`) loads, or when asked for
``codec.ExtCode``.
"""

from __future__ import annotations

import enum

__all__ = ["ExtCode"]


class ExtCode(enum.IntEnum):
    """Msgpack ext type codes; never renumber one that has shipped."""

    MARKER = 1
    NA = 2
    REMOVE = 3
    REF = 4
    URI = 5
    NUMBER = 6
    DATE = 7
    TIME = 8
    DATETIME = 9
    COORD = 10
    XSTR = 11
    SYMBOL = 12
    GRID = 13
    NDARRAY = 14
    TUPLE = 15  # reserved: tuples are sent as lists, as Haystack has no tuple
