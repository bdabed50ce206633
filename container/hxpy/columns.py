"""How a :class:`~hxpy.grid.Grid` keeps its cells: column by column.

A column is one of:

* :class:`ListColumn`: a Python list of Haystack values (a grid built row by row, a str or
  object column of a DataFrame). It travels as one msgpack array.
* :class:`ArrayColumn`: a 1-D numpy array (bool, int, uint, float, complex, datetime64,
  timedelta64), with an optional boolean ``na`` mask (True where the cell is null) and, for
  datetime64 holding UTC instants, the time zone. It travels as one raw buffer.
* :class:`CategoryColumn`: integer codes into a column of categories (``-1`` is null).

Cells are materialised as Python values only when rows are asked for. Nothing here imports
numpy at module level; only an array column needs it, and it exists only when numpy does.
Conversion to and from pandas lives in :mod:`hxpy.frames`.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import sys
from typing import Any, Optional, Union

from .zones import fixed_zone, named_zone

__all__ = [
    "ArrayColumn",
    "CategoryColumn",
    "Column",
    "ListColumn",
    "column_from_wire",
    "dtype_problem",
    "same_cells",
    "same_value",
    "tz_from_wire",
]

_UTC = _dt.timezone.utc
_FLOAT_SIZES = {"f": (2, 4, 8), "c": (8, 16)}
# Units finer than a microsecond: Python's datetime and timedelta stop at microseconds.
_FINE_UNITS = ("ns", "ps", "fs", "as")


def dtype_problem(dtype: Any) -> Optional[str]:
    """Why numpy ``dtype`` cannot travel as raw bytes, or None if it can."""
    kind = dtype.kind
    if kind == "O":
        return "ndarray of dtype object is not marshallable"
    if kind not in "biufcmMUS" or dtype.fields is not None or dtype.subdtype is not None:
        return f"ndarray of dtype {dtype} is not marshallable"
    if kind in _FLOAT_SIZES and dtype.itemsize not in _FLOAT_SIZES[kind]:
        return f"ndarray of dtype {dtype} is not marshallable (no portable layout)"
    if dtype.itemsize == 0:
        return f"ndarray of zero-width dtype {dtype} is not marshallable"
    return None


def tz_from_wire(tz: Union[str, int]) -> _dt.tzinfo:
    """The tzinfo for a zone as sent: an IANA name, or an offset in microseconds."""
    if isinstance(tz, str):
        zone = named_zone(tz)
        if zone is None:
            raise ValueError(f"unknown time zone {tz!r} (is tzdata installed?)")
        return zone
    return fixed_zone(tz)


def _numpy() -> Any:
    return sys.modules.get("numpy") or importlib.import_module("numpy")


class Column:
    """The cells of one grid column; treat as immutable."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def cells(self) -> list[Any]:
        """All cells as Python values (built once, then cached)."""
        raise NotImplementedError

    def cell(self, index: int) -> Any:
        """The cell at ``index`` (no bounds check beyond Python's own)."""
        raise NotImplementedError

    def to_wire(self) -> dict[str, Any]:
        """The column as a msgpack map (see ``docs/marshalling.md``)."""
        raise NotImplementedError


class ListColumn(Column):
    """Cells kept as a Python list.

    Attributes:
        values: the cells.
        pandas: how to rebuild the pandas dtype, e.g. ``{"dtype": "str"}``; None when the
            column did not come from pandas (``to_dataframe`` then lets pandas infer).
    """

    __slots__ = ("values", "pandas")

    def __init__(self, values: list[Any], pandas: Optional[dict[str, Any]] = None) -> None:
        self.values = values
        self.pandas = pandas

    def __len__(self) -> int:
        return len(self.values)

    def cells(self) -> list[Any]:
        return self.values

    def cell(self, index: int) -> Any:
        return self.values[index]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"enc": "list", "cells": self.values}
        if self.pandas:
            wire.update(self.pandas)
        return wire


class ArrayColumn(Column):
    """Cells kept as a 1-D numpy array.

    Attributes:
        data: the values; for a zoned datetime column, the UTC instants as naive datetime64.
        na: None, or a bool array, True where the cell is null (the data there is ignored).
        tz: None, or the zone of a datetime column as sent (IANA name or offset in µs).
        pandas_dtype: None for the numpy dtype of ``data``, else the name of a nullable pandas
            dtype (``"Int64"``, ``"Float32"``, ``"boolean"``...).
    """

    __slots__ = ("data", "na", "tz", "pandas_dtype", "_cells")

    def __init__(self, data: Any, na: Any = None, tz: Union[str, int, None] = None,
                 pandas_dtype: Optional[str] = None) -> None:
        self.data = data
        self.na = na
        self.tz = tz
        self.pandas_dtype = pandas_dtype
        self._cells: Optional[list[Any]] = None

    def __len__(self) -> int:
        return len(self.data)

    def _convert(self, data: Any, na: Any) -> list[Any]:
        kind = data.dtype.kind
        if kind in "mM":
            np = _numpy()
            unit = np.datetime_data(data.dtype)[0]
            if unit in _FINE_UNITS:
                data = data.astype(f"{kind}8[us]")
        values: list[Any] = data.tolist()
        if self.tz is not None:
            zone = tz_from_wire(self.tz)
            values = [value if value is None else value.replace(tzinfo=_UTC).astimezone(zone)
                      for value in values]
        if na is not None:
            values = [None if missing else value for value, missing in zip(values, na.tolist())]
        return values

    def cells(self) -> list[Any]:
        if self._cells is None:
            self._cells = self._convert(self.data, self.na)
        return self._cells

    def cell(self, index: int) -> Any:
        if self._cells is not None:
            return self._cells[index]
        index = range(len(self.data))[index]
        stop = index + 1
        na = None if self.na is None else self.na[index:stop]
        return self._convert(self.data[index:stop], na)[0]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"enc": "array", "data": self.data}
        if self.na is not None:
            wire["na"] = self.na
        if self.tz is not None:
            wire["tz"] = self.tz
        if self.pandas_dtype is not None:
            wire["dtype"] = self.pandas_dtype
        return wire


class CategoryColumn(Column):
    """Cells kept as integer ``codes`` into ``categories`` (a column); code ``-1`` is null."""

    __slots__ = ("codes", "categories", "ordered", "_cells")

    def __init__(self, codes: Any, categories: Column, ordered: bool = False) -> None:
        self.codes = codes
        self.categories = categories
        self.ordered = ordered
        self._cells: Optional[list[Any]] = None

    def __len__(self) -> int:
        return len(self.codes)

    def cells(self) -> list[Any]:
        if self._cells is None:
            categories = self.categories.cells()
            self._cells = [None if code < 0 else categories[code] for code in self.codes.tolist()]
        return self._cells

    def cell(self, index: int) -> Any:
        code = int(self.codes[index])
        return None if code < 0 else self.categories.cell(code)

    def to_wire(self) -> dict[str, Any]:
        return {"enc": "category", "codes": self.codes, "categories": self.categories.to_wire(),
                "ordered": self.ordered}


def _array(wire: dict[str, Any], key: str, size: int, kinds: str) -> Any:
    np = sys.modules.get("numpy")
    value = wire.get(key)
    if np is None or not isinstance(value, np.ndarray) or value.ndim != 1:
        raise ValueError(f"column field {key!r} must be a 1-D ndarray")
    if value.dtype.kind not in kinds or len(value) != size:
        raise ValueError(f"column field {key!r} has dtype {value.dtype} and length "
                         f"{len(value)}; expected kind in {kinds!r} and length {size}")
    return value


def column_from_wire(wire: Any, size: Optional[int]) -> Column:
    """The column for a msgpack map made by :meth:`Column.to_wire`.

    Args:
        wire: the map.
        size: the number of cells it must have (None: any).

    Raises:
        ValueError: the map is malformed.
    """
    if not isinstance(wire, dict):
        raise ValueError("a column must be a map")
    enc = wire.get("enc")
    if enc == "list":
        values = wire.get("cells")
        if not isinstance(values, list) or (size is not None and len(values) != size):
            raise ValueError("a list column needs 'cells', a list with one value per row")
        pandas = {key: wire[key] for key in ("dtype", "storage") if key in wire}
        return ListColumn(values, pandas or None)
    if enc == "array":
        np = _numpy()
        data = wire.get("data")
        length = len(data) if size is None and isinstance(data, np.ndarray) else size
        data = _array(wire, "data", length or 0, "biufcmMUS")
        na = _array(wire, "na", len(data), "b") if "na" in wire else None
        tz = wire.get("tz")
        if tz is not None:
            # An unknown zone name is not an error here: pandas may know it (pytz carries its
            # own database); only building cells needs this side's zoneinfo to know it.
            if data.dtype.kind != "M" or not isinstance(tz, (str, int)):
                raise ValueError("'tz' needs a datetime64 column and a str or int zone")
        pandas_dtype = wire.get("dtype")
        if pandas_dtype is not None and not isinstance(pandas_dtype, str):
            raise ValueError("'dtype' must be a str")
        return ArrayColumn(data, na, tz, pandas_dtype)
    if enc == "category":
        np = _numpy()
        codes = wire.get("codes")
        length = len(codes) if size is None and isinstance(codes, np.ndarray) else size
        codes = _array(wire, "codes", length or 0, "iu")
        categories = column_from_wire(wire.get("categories"), None)
        if len(codes) and not -1 <= int(codes.min()) <= int(codes.max()) < len(categories):
            raise ValueError("category codes out of range")
        return CategoryColumn(codes, categories, bool(wire.get("ordered", False)))
    raise ValueError(f"unknown column encoding {enc!r}")


def same_value(a: Any, b: Any) -> bool:
    """Haystack equality: like ``==``, but NaN equals NaN, also inside lists and dicts."""
    if a is b:
        return True
    if type(a) is float and type(b) is float:
        return a == b or (a != a and b != b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
    return bool(a == b)


def _same_arrays(a: ArrayColumn, b: ArrayColumn) -> Optional[bool]:
    """Compare two array columns without building cells; None when that is not possible."""
    if a.data.dtype != b.data.dtype or a.tz != b.tz:
        return None
    np = _numpy()
    if (a.na is None) != (b.na is None):
        return None
    a_data, b_data = a.data, b.data
    if a.na is not None:
        if not np.array_equal(a.na, b.na):
            return False
        a_data, b_data = a_data[~a.na], b_data[~b.na]
    return bool(np.array_equal(a_data, b_data, equal_nan=a_data.dtype.kind in "fcmM"))


def same_cells(a: Column, b: Column) -> bool:
    """Whether two columns hold equal cells (NaN equal to NaN)."""
    if len(a) != len(b):
        return False
    if isinstance(a, ArrayColumn) and isinstance(b, ArrayColumn):
        same = _same_arrays(a, b)
        if same is not None:
            return same
    return all(map(same_value, a.cells(), b.cells()))
