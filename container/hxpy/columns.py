"""How a :class:`~hxpy.grid.Grid` keeps its cells: column by column.

A column is one of:

* :class:`ListColumn`: a Python list of Haystack values (a grid built row by row, a str or
  object column of a DataFrame). It travels as one msgpack array.
* :class:`ArrayColumn`: a 1-D numpy array (bool, int, uint, float, complex, datetime64,
  timedelta64), with an optional boolean ``na`` mask (True where the cell is null) and, for
  datetime64 holding UTC instants, the time zone. It travels as one raw buffer.
* :class:`CategoryColumn`: integer codes into a column of categories (``-1`` is null).
* :class:`TextColumn`: a column of str cells (and nulls) as Arrow lays one out: the UTF-8
  bytes of every cell end to end, and where each begins. It travels as two raw buffers, so a
  peer with pyarrow turns it into an Arrow string array without a Python object per cell.
  Only sent to a peer that asked for it (:func:`send_text_columns`).

Cells are materialised as Python values only when rows are asked for. Nothing here imports
numpy at module level; only an array column needs it, and it exists only when numpy does.
Conversion to and from pandas lives in :mod:`hxpy.frames`.
"""

from __future__ import annotations

import datetime as _dt
import sys

from .zones import fixed_zone, named_zone

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

__all__ = [
    "ArrayColumn",
    "CategoryColumn",
    "Column",
    "ListColumn",
    "TextColumn",
    "column_from_wire",
    "dtype_problem",
    "same_cells",
    "same_value",
    "send_text_columns",
    "text_column",
    "tz_from_wire",
]

_UTC = _dt.timezone.utc
_FLOAT_SIZES = {"f": (2, 4, 8), "c": (8, 16)}
# Units finer than a microsecond: Python's datetime and timedelta stop at microseconds.
_FINE_UNITS = ("ns", "ps", "fs", "as")
# Below this many cells a list is as quick as two buffers, and smaller on the wire.
_TEXT_MIN_CELLS = 1024
_send_text = False


def send_text_columns(enabled: bool) -> None:
    """Whether this process sends str columns of pandas as :class:`TextColumn` (to a peer
    that said, in its hello, that it reads them; see ``docs/protocol.md``) or as lists."""
    global _send_text
    _send_text = enabled


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
    numpy = sys.modules.get("numpy")
    if numpy is None:
        import importlib  # here: a server imports this module at start, and seldom needs it

        numpy = importlib.import_module("numpy")
    return numpy


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


class TextColumn(Column):
    """Cells that are all str (or null), kept as UTF-8 bytes end to end.

    Attributes:
        data: uint8 array, the UTF-8 bytes of every cell in order.
        offsets: int64 array of ``len + 1`` entries; cell ``i`` is ``data[offsets[i]:
            offsets[i + 1]]``.
        na: None, or a bool array, True where the cell is null (its bytes are empty).
        pandas: the dtype hint, as for :class:`ListColumn`.
    """

    __slots__ = ("data", "offsets", "na", "pandas", "_cells")

    def __init__(self, data: Any, offsets: Any, na: Any = None,
                 pandas: Optional[dict[str, Any]] = None) -> None:
        self.data = data
        self.offsets = offsets
        self.na = na
        self.pandas = pandas
        self._cells: Optional[list[Any]] = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def cells(self) -> list[Any]:
        if self._cells is None:
            raw = self.data.tobytes()
            text = raw.decode("utf-8")
            bounds = self.offsets.tolist()
            # All ASCII: a character is a byte, so the text slices at the same offsets.
            source: Any = text if len(text) == len(raw) else raw
            values = [source[start:stop] for start, stop in zip(bounds, bounds[1:])]
            if source is raw:
                values = [value.decode("utf-8") for value in values]
            if self.na is not None:
                values = [None if missing else value
                          for value, missing in zip(values, self.na.tolist())]
            self._cells = values
        return self._cells

    def cell(self, index: int) -> Any:
        if self._cells is not None:
            return self._cells[index]
        index = range(len(self))[index]
        if self.na is not None and self.na[index]:
            return None
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.data[start:stop].tobytes().decode("utf-8")

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"enc": "text", "data": self.data, "offsets": self.offsets}
        if self.na is not None:
            wire["na"] = self.na
        if self.pandas:
            wire.update(self.pandas)
        return wire


def text_column(values: list[Any], pandas: Optional[dict[str, Any]]) -> Column:
    """The column for the cells of a pandas str or object column: a :class:`TextColumn` when
    sending them is on, there are enough cells, and every cell is a str or None; else a
    :class:`ListColumn`."""
    if not _send_text or len(values) < _TEXT_MIN_CELLS:
        return ListColumn(values, pandas)
    np = _numpy()
    na = None
    try:
        joined = "".join(values)
    except TypeError:  # a cell that is not a str: nulls are fine, anything else is a list
        missing = [value is None for value in values]
        texts = ["" if absent else value for value, absent in zip(values, missing)]
        try:
            joined = "".join(texts)
        except TypeError:
            return ListColumn(values, pandas)
        na = np.array(missing, dtype=bool)
    else:
        texts = values
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: refused as for any list column
        return ListColumn(values, pandas)
    count = len(texts)
    if len(data) == len(joined):
        lengths = np.fromiter(map(len, texts), np.int64, count)
    else:
        lengths = np.fromiter((len(text.encode("utf-8")) for text in texts), np.int64, count)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TextColumn(np.frombuffer(data, dtype=np.uint8), offsets, na, pandas)


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
    if enc == "text":
        return _text_from_wire(wire, size)
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


def _text_from_wire(wire: dict[str, Any], size: Optional[int]) -> TextColumn:
    """Check a text column fully: a peer's bad offsets or bytes must not reach pyarrow."""
    np = _numpy()
    offsets = wire.get("offsets")
    length = len(offsets) if size is None and isinstance(offsets, np.ndarray) else (size or 0) + 1
    offsets = _array(wire, "offsets", length, "i")
    data = wire.get("data")
    data = _array(wire, "data", len(data) if isinstance(data, np.ndarray) else 0, "u")
    if offsets.dtype != np.int64 or data.dtype != np.uint8 or len(offsets) == 0:
        raise ValueError("a text column needs int64 offsets and uint8 data")
    if offsets[0] != 0 or offsets[-1] != len(data) or (np.diff(offsets) < 0).any():
        raise ValueError("text column offsets must rise from 0 to the length of its data")
    try:
        data.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text column data is not UTF-8: {exc}") from None
    starts = offsets[:-1][offsets[:-1] < len(data)]
    if ((data[starts] & 0xC0) == 0x80).any():  # a cell that begins inside a character
        raise ValueError("text column offsets split a UTF-8 character")
    na = _array(wire, "na", len(offsets) - 1, "b") if "na" in wire else None
    pandas: dict[str, Any] = {key: wire[key] for key in ("dtype", "storage") if key in wire}
    return TextColumn(data, offsets, na, pandas or None)


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
