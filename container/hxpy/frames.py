"""pandas DataFrames, Series and indexes <-> grid columns, with no loop over rows in Python.

A DataFrame becomes grid columns that remember how to rebuild each pandas dtype, plus a
``pandas`` map (its index, its columns' name, whether it was a Series) that the grid carries
without showing it as a column. Written for pandas 1.5 to 3.x: pandas is imported only when a
function here runs, never when this module is imported.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import sys

from .columns import (
    ArrayColumn,
    CategoryColumn,
    Column,
    ListColumn,
    TextColumn,
    column_from_wire,
    dtype_problem,
    text_column,
)
from .zones import fixed_zone, zone_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = [
    "column_from_pandas",
    "column_name_problems",
    "column_to_pandas",
    "dataframe_from_parts",
    "label",
    "pandas_from_wire",
    "pandas_to_wire",
    "parts_from_dataframe",
    "parts_from_series",
]

_US = _dt.timedelta(microseconds=1)
# The nullable pandas dtypes an array column can name: numpy data plus an NA mask.
_MASKED_DTYPES = frozenset(
    [f"{sign}Int{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64)]
    + ["Float32", "Float64", "boolean"])


def _pandas() -> Any:
    return sys.modules.get("pandas") or importlib.import_module("pandas")


def _numpy() -> Any:
    return sys.modules.get("numpy") or importlib.import_module("numpy")


# -- pandas -> columns ------------------------------------------------------------------------


def _tz_to_wire(tz: _dt.tzinfo) -> Any:
    name = zone_name(tz)
    if name is not None:
        return name
    try:
        offset = tz.utcoffset(None)
    except Exception:  # a local-time zone needs a datetime; tzinfo APIs raise anything
        offset = None
    if offset is None:
        raise ValueError(f"time zone {tz!r} has neither a name nor a fixed offset")
    return offset // _US


def column_from_pandas(obj: Any) -> Column:
    """The column for a Series or an Index, remembering its pandas dtype.

    Raises:
        ValueError: the dtype has no encoding (e.g. ``float128``, a zone with no name).
    """
    pd, np = _pandas(), _numpy()
    dtype = obj.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind == "O":
            return text_column(obj.tolist(), {"dtype": "object"})
        problem = dtype_problem(dtype)
        if problem is not None:
            raise ValueError(f"column of dtype {dtype} is not marshallable")
        return ArrayColumn(np.asarray(obj))
    if isinstance(dtype, pd.CategoricalDtype):
        return CategoryColumn(np.asarray(obj.array.codes), column_from_pandas(dtype.categories),
                              bool(dtype.ordered))
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ArrayColumn(np.asarray(obj.array.tz_convert(None)), tz=_tz_to_wire(dtype.tz))
    if isinstance(dtype, pd.StringDtype):
        # pandas >= 3 "str" (missing is NaN) or the older "string" (missing is pd.NA).
        hint = {"dtype": "string" if getattr(dtype, "na_value", pd.NA) is pd.NA else "str"}
        if str(getattr(dtype, "storage", "python")).startswith("pyarrow"):
            hint["storage"] = "pyarrow"
        return text_column(obj.to_numpy(dtype=object, na_value=None).tolist(), hint)
    array = obj.array
    if isinstance(array, (pd.arrays.IntegerArray, pd.arrays.FloatingArray,
                          pd.arrays.BooleanArray)):
        numpy_dtype = dtype.numpy_dtype
        na = np.asarray(array.isna())
        data = array.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
        return ArrayColumn(data, na if na.any() else None, pandas_dtype=dtype.name)
    # Other extension dtypes (Sparse, Arrow, Period, ...) travel as their values.
    values = obj.to_numpy()
    if values.dtype.kind != "O" and dtype_problem(values.dtype) is None:
        return ArrayColumn(values)
    return ListColumn(values.tolist(), {"dtype": "object"})


def _index_info(index: Any) -> Optional[dict[str, Any]]:
    pd = _pandas()
    if isinstance(index, pd.MultiIndex):
        return {"enc": "multi", "names": list(index.names),
                "levels": [column_from_pandas(index.get_level_values(level))
                           for level in range(index.nlevels)]}
    if isinstance(index, pd.RangeIndex):
        if index.start == 0 and index.step == 1 and index.name is None:
            return None
        return {"enc": "range", "start": int(index.start), "stop": int(index.stop),
                "step": int(index.step), "name": index.name}
    info = {"enc": "values", "column": column_from_pandas(index), "name": index.name}
    freq = getattr(index, "freqstr", None)
    if freq:
        info["freq"] = freq
    return info


def column_name_problems(columns: Any) -> list[tuple[int, str]]:
    """``(position, reason)`` for each DataFrame column name that a grid cannot take."""
    problems = []
    seen: set[str] = set()
    for position, name in enumerate(columns):
        if not isinstance(name, str):
            problems.append((position, f"column name {name!r} is {type(name).__name__}, not str"))
        elif name in seen:
            problems.append((position, f"duplicate column name {name!r}"))
        else:
            seen.add(name)
    return problems


def parts_from_dataframe(df: Any) -> tuple[list[str], list[Column], dict[str, Any]]:
    """Column names, columns and the ``pandas`` map of a DataFrame.

    Raises:
        ValueError: a column name is not a str or is repeated, or a dtype has no encoding.
    """
    problems = column_name_problems(df.columns)
    if problems:
        position, reason = problems[0]
        raise ValueError(f"column {position}: {reason}")
    names = [str.__str__(name) for name in df.columns]
    columns = [column_from_pandas(df.iloc[:, position]) for position in range(len(names))]
    info: dict[str, Any] = {}
    index = _index_info(df.index)
    if index is not None:
        info["index"] = index
    if df.columns.name is not None:
        info["columns_name"] = df.columns.name
    return names, columns, info


def parts_from_series(series: Any) -> tuple[list[str], list[Column], dict[str, Any]]:
    """Like :func:`parts_from_dataframe`, for a Series: one column named after it or ``val``."""
    name = series.name
    info: dict[str, Any] = {"series": True, "name": name}
    index = _index_info(series.index)
    if index is not None:
        info["index"] = index
    col_name = str.__str__(name) if isinstance(name, str) else "val"
    return [col_name], [column_from_pandas(series)], info


# -- columns -> pandas ------------------------------------------------------------------------


def _str_dtype(storage: Optional[str], missing_is_nan: bool) -> Any:
    """The pandas string dtype asked for, falling back to what this pandas has; None: object."""
    pd, np = _pandas(), _numpy()
    for candidate in (storage, "python") if storage else ("python",):
        try:
            if missing_is_nan:
                return pd.StringDtype(storage=candidate, na_value=np.nan)
            return pd.StringDtype(storage=candidate)
        except TypeError:
            return None  # pandas < 2.3 has no NaN-missing string dtype
        except ImportError:
            continue  # pyarrow is not installed here
    return None


def _object_array(values: list[Any]) -> Any:
    return _numpy().fromiter(values, dtype=object, count=len(values))


def _arrow_strings(column: TextColumn) -> Any:
    """The cells as a pyarrow ``large_string`` array over the column's own buffers (no copy);
    None where pyarrow is not installed."""
    try:
        import pyarrow as pa
    except ImportError:
        return None
    bitmap = None
    if column.na is not None:
        bitmap = pa.py_buffer(_numpy().packbits(~column.na, bitorder="little"))
    return pa.LargeStringArray.from_buffers(len(column), pa.py_buffer(column.offsets),
                                            pa.py_buffer(column.data), bitmap)


def _text_to_pandas(column: TextColumn, text_as_str: bool) -> Any:
    """The column through Arrow, without a Python str per cell where the dtype allows; None
    when this pandas or the dtype needs the cells (python-backed strings, no pyarrow)."""
    pd = _pandas()
    kind = "str" if text_as_str else (column.pandas or {}).get("dtype")
    storage = "pyarrow" if text_as_str else (column.pandas or {}).get("storage")
    if kind in ("str", "string") and storage != "pyarrow":
        return None
    if kind not in ("str", "string", "object"):
        return None
    arrow = _arrow_strings(column)
    if arrow is None:
        return None
    if kind == "object":
        return pd.Series(arrow.to_numpy(zero_copy_only=False), dtype=object, copy=False)
    dtype = _str_dtype("pyarrow", kind == "str")
    if dtype is None or dtype.storage != "pyarrow":
        return None
    return pd.array(arrow, dtype=dtype)


def _all_text(values: list[Any]) -> bool:
    return all(type(value) is str or value is None for value in values)


def column_to_pandas(column: Column, text_as_str: bool = False) -> Any:
    """An array (or unindexed Series) for one DataFrame column, in its remembered dtype; with
    ``text_as_str``, a column of str cells (and nulls) in pandas' string dtype instead."""
    pd, np = _pandas(), _numpy()
    if isinstance(column, TextColumn):
        fast = _text_to_pandas(column, text_as_str)
        if fast is not None:
            return fast
        column = ListColumn(column.cells(), column.pandas)
    if isinstance(column, ListColumn):
        kind = (column.pandas or {}).get("dtype")
        if text_as_str and kind in ("object", "string") and _all_text(column.values):
            dtype = _str_dtype("pyarrow", True) or _str_dtype("pyarrow", False)
            if dtype is not None:
                return pd.array(column.values, dtype=dtype)
        if kind in ("str", "string"):
            dtype = _str_dtype((column.pandas or {}).get("storage"), kind == "str")
            if dtype is not None:
                return pd.array(column.values, dtype=dtype)
            if kind == "string":
                return pd.array(column.values, dtype="string")
            values = _object_array(column.values)
            values[pd.isna(values)] = np.nan  # how pandas < 3 marks a missing str
            return pd.Series(values, dtype=object, copy=False)
        if kind == "object":
            return pd.Series(_object_array(column.values), dtype=object, copy=False)
        return column.values  # a grid built row by row: pandas infers, as for records
    if isinstance(column, ArrayColumn):
        if column.pandas_dtype in _MASKED_DTYPES:
            dtype = pd.api.types.pandas_dtype(column.pandas_dtype)
            na = column.na if column.na is not None else np.zeros(len(column.data), dtype=bool)
            return dtype.construct_array_type()(column.data, na)
        if column.tz is not None:
            tz = column.tz if isinstance(column.tz, str) else fixed_zone(column.tz)
            return pd.DatetimeIndex(column.data).tz_localize("UTC").tz_convert(tz).array
        if column.na is not None:
            return pd.Series(_object_array(column.cells()), dtype=object, copy=False)
        return column.data
    if isinstance(column, CategoryColumn):
        categories = _plain_index(column_to_pandas(column.categories), None)
        dtype = pd.CategoricalDtype(categories, ordered=column.ordered)
        return pd.Categorical.from_codes(column.codes, dtype=dtype)
    raise TypeError(f"unknown column type {type(column).__name__}")


def label(value: Any) -> Any:
    """A pandas label as sent back: tuples travel as lists, but labels must be hashable."""
    if isinstance(value, list):
        return tuple(label(item) for item in value)
    return value


def _plain_index(values: Any, name: Any) -> Any:
    pd = _pandas()
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    # An object array must stay object: pandas 3 would infer "str" from one full of strs.
    plain = isinstance(values, _numpy().ndarray) and values.dtype.kind == "O"
    return pd.Index(values, dtype=object if plain else None, name=name)


def _index_to_pandas(info: Optional[dict[str, Any]], size: int) -> Any:
    pd = _pandas()
    if info is None:
        return pd.RangeIndex(size)
    if info["enc"] == "range":
        index = pd.RangeIndex(info["start"], info["stop"], info["step"],
                              name=label(info.get("name")))
    elif info["enc"] == "multi":
        levels = [_plain_index(column_to_pandas(level), None) for level in info["levels"]]
        index = pd.MultiIndex.from_arrays(levels, names=[label(name) for name in info["names"]])
    else:
        index = _plain_index(column_to_pandas(info["column"]), label(info.get("name")))
        freq = info.get("freq")
        if freq and isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            try:
                index = type(index)(index, freq=freq)
            except (ValueError, TypeError):
                pass  # a frequency alias this pandas spells differently; the values are kept
    if len(index) != size:
        raise ValueError(f"index has {len(index)} entries for {size} rows")
    return index


def dataframe_from_parts(names: list[str], columns: list[Column],
                         info: Optional[dict[str, Any]], size: int,
                         text_as_str: bool = False) -> Any:
    """Rebuild a DataFrame from grid columns and the ``pandas`` map (``text_as_str``: see
    :meth:`hxpy.grid.Grid.to_dataframe`)."""
    pd = _pandas()
    info = info or {}
    index = _index_to_pandas(info.get("index"), size)
    if not names:
        df = pd.DataFrame(index=index)
    else:
        df = pd.DataFrame({name: column_to_pandas(column, text_as_str)
                           for name, column in zip(names, columns)})
        df.index = index  # set, not passed: passing would align Series on their labels
    if info.get("columns_name") is not None:
        df.columns.name = label(info["columns_name"])
    return df


# -- the pandas map on the wire ---------------------------------------------------------------


def pandas_to_wire(info: dict[str, Any]) -> dict[str, Any]:
    """The ``pandas`` map with its columns turned into wire maps."""
    wire = dict(info)
    index = info.get("index")
    if index is not None:
        index = dict(index)
        if "column" in index:
            index["column"] = index["column"].to_wire()
        if "levels" in index:
            index["levels"] = [level.to_wire() for level in index["levels"]]
        wire["index"] = index
    return wire


def pandas_from_wire(wire: Any, size: int) -> dict[str, Any]:
    """Inverse of :func:`pandas_to_wire`.

    Raises:
        ValueError: the map is malformed.
    """
    if not isinstance(wire, dict):
        raise ValueError("'pandas' must be a map")
    info = dict(wire)
    index = info.get("index")
    if index is not None:
        if not isinstance(index, dict) or index.get("enc") not in ("range", "values", "multi"):
            raise ValueError("malformed pandas index")
        index = dict(index)
        if index["enc"] == "range":
            if not all(isinstance(index.get(key), int) for key in ("start", "stop", "step")):
                raise ValueError("a range index needs int start, stop and step")
        elif index["enc"] == "values":
            index["column"] = column_from_wire(index.get("column"), size)
        else:
            levels, names = index.get("levels"), index.get("names")
            if not isinstance(levels, list) or not isinstance(names, list):
                raise ValueError("a multi index needs 'levels' and 'names' lists")
            index["levels"] = [column_from_wire(level, size) for level in levels]
        info["index"] = index
    return info
