"""Time zones on the wire: a zone travels by name (``America/New_York``), else as a fixed offset.

Names come from whichever library made the ``tzinfo``: ``zoneinfo`` (``key``), pytz (``zone``)
or dateutil (its file name). They are turned back into ``zoneinfo.ZoneInfo`` objects, which
read the system time zone database (or the ``tzdata`` package).
"""

from __future__ import annotations

import datetime as _dt
import functools

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["fixed_zone", "named_zone", "zone_name"]


def zone_name(tz: Optional[_dt.tzinfo]) -> Optional[str]:
    """The IANA name of ``tz``, or None when it has none (a fixed offset, a local zone)."""
    for attr in ("key", "zone"):
        name = getattr(tz, attr, None)
        if isinstance(name, str) and name:
            return name
    filename = getattr(tz, "_filename", None)  # dateutil.tz.tzfile
    if isinstance(filename, str) and filename:
        if "zoneinfo/" in filename:
            return filename.rsplit("zoneinfo/", 1)[1]
        if not filename.startswith("/"):
            return filename
    return None


@functools.lru_cache(maxsize=256)
def named_zone(name: str) -> Optional[_dt.tzinfo]:
    """The ``ZoneInfo`` called ``name``, or None when this side does not know it."""
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def fixed_zone(offset_us: int, name: Optional[str] = None) -> _dt.timezone:
    """A fixed-offset zone, ``offset_us`` microseconds east of UTC."""
    offset = _dt.timedelta(microseconds=offset_us)
    return _dt.timezone(offset, name) if name is not None else _dt.timezone(offset)
