"""The Haystack Grid: grid meta, columns (name + meta) and rows, stored column by column.

A :class:`Grid` keeps each column's cells as a list or a numpy array (see
:mod:`hxpy.columns`), so a DataFrame converts to a grid and back, and travels, without a Python
loop over its rows. Row dicts are built only when rows are asked for (``rows``, iteration,
``get``), then cached.

Column names: :class:`GridBuilder` (and ``Grid(...)``) accept only Haystack tag names (an ASCII
lowercase letter, then ASCII letters, digits and ``_``). ``Grid.from_dataframe`` accepts any
distinct str names, so that DataFrame columns such as ``"Temp (°F)"`` survive the round trip;
check them with :func:`is_tag_name` before handing the grid to a strict Haystack consumer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from . import frames
from .columns import Column, ListColumn, same_cells, same_value

__all__ = ["Col", "Grid", "GridBuilder", "is_tag_name"]

_TAG_NAME = re.compile(r"[a-z][A-Za-z0-9_]*")


def is_tag_name(name: Any) -> bool:
    """Whether ``name`` is a valid Haystack tag name, e.g. ``siteRef`` (not ``Site``, ``a-b``)."""
    return isinstance(name, str) and _TAG_NAME.fullmatch(name) is not None


def _check_tag_name(name: Any) -> str:
    if not is_tag_name(name):
        raise ValueError(
            f"invalid column name {name!r}: a Haystack tag name starts with an ASCII lowercase "
            f"letter followed by ASCII letters, digits or '_'")
    return str.__str__(name)


def _check_meta(meta: Optional[Mapping[str, Any]], what: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(meta).__name__}")
    return dict(meta)


class Col:
    """A grid column's name and meta (its cells live in the grid)."""

    __slots__ = ("name", "meta")

    def __init__(self, name: str, meta: Optional[Mapping[str, Any]] = None) -> None:
        self.name = name
        self.meta = _check_meta(meta, "column meta")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Col):
            return self.name == other.name and same_value(self.meta, other.meta)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self.meta:
            return f"Col({self.name!r})"
        return f"Col({self.name!r}, {self.meta!r})"


class Grid:
    """A Haystack grid. Treat it, its meta and its row dicts as read-only.

    ``Grid(meta, cols, rows)`` builds one like :class:`GridBuilder`: ``cols`` are names or
    :class:`Col` objects (default: the keys of the dict rows, in order of appearance) and
    each row is a dict or a sequence with one value per column.

    Raises:
        ValueError: a column name is not a Haystack tag name, is repeated, or a row does not
            fit the columns.
    """

    __slots__ = ("_meta", "_cols", "_columns", "_size", "_pandas", "_positions", "_rows")

    def __init__(self, meta: Optional[Mapping[str, Any]] = None,
                 cols: Optional[Sequence[Union[str, Col]]] = None,
                 rows: Iterable[Union[Mapping[str, Any], Sequence[Any]]] = ()) -> None:
        rows = list(rows)
        if cols is None:
            names: dict[str, None] = {}
            for row in rows:
                if isinstance(row, Mapping):
                    names.update(dict.fromkeys(row))
            cols = list(names)
        builder = GridBuilder().set_meta(meta or {})
        for col in cols:
            if isinstance(col, Col):
                builder.add_col(col.name, col.meta)
            else:
                builder.add_col(col)
        for row in rows:
            builder.add_row(row)
        grid = builder.to_grid()
        self._setup(grid._meta, grid._cols, grid._columns, grid._size, grid._pandas)

    def _setup(self, meta: dict[str, Any], cols: Sequence[Col], columns: Sequence[Column],
               size: int, pandas: Optional[dict[str, Any]]) -> None:
        self._meta = meta
        self._cols = tuple(cols)
        self._columns = tuple(columns)
        self._size = size
        self._pandas = pandas or None
        self._positions = {col.name: position for position, col in enumerate(self._cols)}
        self._rows: Optional[list[dict[str, Any]]] = None

    @classmethod
    def _from_columns(cls, meta: dict[str, Any], cols: Sequence[Col],
                      columns: Sequence[Column], size: int,
                      pandas: Optional[dict[str, Any]] = None) -> Grid:
        """A grid over ready-made columns (no name checks, no copies)."""
        for column in columns:
            if len(column) != size:
                raise ValueError(f"a column has {len(column)} cells for {size} rows")
        grid = cls.__new__(cls)
        grid._setup(meta, cols, columns, size, pandas)
        return grid

    # -- structure ------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        """The grid meta."""
        return self._meta

    @property
    def cols(self) -> list[Col]:
        """The columns, in order."""
        return list(self._cols)

    @property
    def col_names(self) -> list[str]:
        """The column names, in order."""
        return [col.name for col in self._cols]

    def col(self, name: str, checked: bool = True) -> Optional[Col]:
        """The column called ``name``.

        Raises:
            KeyError: there is none and ``checked`` is true (else None is returned).
        """
        position = self._positions.get(name)
        if position is None:
            if checked:
                raise KeyError(f"grid has no column {name!r}")
            return None
        return self._cols[position]

    def has(self, name: str) -> bool:
        """Whether the grid has a column called ``name``."""
        return name in self._positions

    def __len__(self) -> int:
        return self._size

    def size(self) -> int:
        """The number of rows."""
        return self._size

    # -- rows -----------------------------------------------------------------------------

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict of column name to value (None for null); built once."""
        if self._rows is None:
            names = self.col_names
            if not names:
                self._rows = [{} for _ in range(self._size)]
            else:
                cells = [column.cells() for column in self._columns]
                self._rows = [dict(zip(names, values)) for values in zip(*cells)]
        return self._rows

    @property
    def first(self) -> Optional[dict[str, Any]]:
        """The first row, or None for an empty grid."""
        return self.get(0) if self._size else None

    def get(self, index: int) -> dict[str, Any]:
        """The row at ``index`` (negative counts from the end).

        Raises:
            IndexError: there is no such row.
        """
        if self._rows is not None:
            return self._rows[index]
        index = range(self._size)[index]
        return {col.name: column.cell(index) for col, column in zip(self._cols, self._columns)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def val(self, row: Union[int, Mapping[str, Any]], col: Union[str, Col]) -> Any:
        """The cell in ``row`` (an index or a row dict) and ``col`` (a name or a Col).

        Raises:
            KeyError: there is no such column.
            IndexError: there is no such row.
        """
        name = col.name if isinstance(col, Col) else col
        position = self._positions.get(name)
        if position is None:
            raise KeyError(f"grid has no column {name!r}")
        if isinstance(row, Mapping):
            return row.get(name)
        return self._columns[position].cell(range(self._size)[row])

    # -- pandas ---------------------------------------------------------------------------

    @classmethod
    def from_dataframe(cls, df: Any, meta: Optional[Mapping[str, Any]] = None) -> Grid:
        """The grid of a pandas DataFrame: one column per DataFrame column, columnar.

        The grid remembers each column's dtype and the index (which is not a column), so
        :meth:`to_dataframe` rebuilds the same frame. Column names may be any distinct strs.

        Raises:
            TypeError: ``df`` is not a DataFrame.
            ValueError: a column name is not a str or is repeated, or a dtype has no encoding.
        """
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(df, pandas.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, not {type(df).__name__}")
        names, columns, info = frames.parts_from_dataframe(df)
        cols = [Col(name) for name in names]
        return cls._from_columns(_check_meta(meta, "grid meta"), cols, columns, len(df), info)

    @classmethod
    def _from_series(cls, series: Any) -> Grid:
        names, columns, info = frames.parts_from_series(series)
        return cls._from_columns({}, [Col(names[0])], columns, len(series), info)

    def to_dataframe(self, text_as_str: bool = False) -> Any:
        """A pandas DataFrame with one column per grid column.

        Columns that came from pandas get their dtype back, and the index too; columns of a
        grid built row by row get pandas' usual inference. Grid and column meta are dropped.

        Args:
            text_as_str: give every object or ``string`` column whose cells are all str (or
                null) pandas' ``str`` dtype (``string`` before pandas 2.3), Arrow-backed where
                pyarrow is installed: what a Parquet file gives back anyway, so a table bound
                for one skips a Python object per cell. The index keeps its dtype.
        """
        return frames.dataframe_from_parts(self.col_names, list(self._columns), self._pandas,
                                           self._size, text_as_str)

    def to_series(self) -> Any:
        """The single column of this grid as a pandas Series (the inverse of sending one).

        Raises:
            ValueError: the grid does not have exactly one column.
        """
        if len(self._cols) != 1:
            raise ValueError(f"to_series needs a grid with one column, not {len(self._cols)}")
        series = self.to_dataframe().iloc[:, 0]
        if self._pandas and self._pandas.get("series"):
            series.name = frames.label(self._pandas.get("name"))
        return series

    # -- values ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (self._size == other._size and self._cols == other._cols
                and same_value(self._meta, other._meta)
                and all(map(same_cells, self._columns, other._columns)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = ", ".join(self.col_names)
        return f"<Grid {self._size} rows × {len(self._cols)} cols [{names}]>"


class GridBuilder:
    """Builds a :class:`Grid` step by step; every method but ``to_grid`` returns the builder.

    Example::

        grid = (GridBuilder().set_meta({"dis": "Sites"})
                .add_col("id").add_col("area", {"unit": "ft²"})
                .add_row([Ref("a"), Number(1200, "ft²")])
                .add_row({"id": Ref("b")})
                .to_grid())
    """

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._cols: list[Col] = []
        self._cells: list[Union[list[Any], Column]] = []
        self._positions: dict[str, int] = {}
        self._size = 0
        self._pandas: Optional[dict[str, Any]] = None

    def set_meta(self, meta: Mapping[str, Any]) -> GridBuilder:
        """Replace the grid meta."""
        self._meta = _check_meta(meta, "grid meta")
        return self

    def add_col(self, name: str, meta: Optional[Mapping[str, Any]] = None) -> GridBuilder:
        """Add a column; rows added before it get None in it.

        Raises:
            ValueError: ``name`` is not a Haystack tag name or already used.
        """
        name = _check_tag_name(name)
        if name in self._positions:
            raise ValueError(f"duplicate column name {name!r}")
        self._positions[name] = len(self._cols)
        self._cols.append(Col(name, meta))
        self._cells.append([None] * self._size)
        return self

    def set_col_meta(self, name: str, meta: Mapping[str, Any]) -> GridBuilder:
        """Replace the meta of column ``name``.

        Raises:
            KeyError: there is no such column.
        """
        position = self._positions.get(name)
        if position is None:
            raise KeyError(f"no column {name!r}")
        self._cols[position] = Col(name, meta)
        return self

    def _cell_lists(self) -> list[list[Any]]:
        if any(not isinstance(cells, list) for cells in self._cells):
            # Rows added to a frame loaded by from_dataframe: its columns become plain lists,
            # so the pandas dtypes and index are no longer known.
            self._cells = [cells if isinstance(cells, list) else list(cells.cells())
                           for cells in self._cells]
            self._pandas = None
        return self._cells  # type: ignore[return-value]

    def add_row(self, row: Union[Mapping[str, Any], Sequence[Any]]) -> GridBuilder:
        """Add a row: a dict (missing columns are None) or one value per column, in order.

        Raises:
            ValueError: the dict names an unknown column, or the sequence has the wrong length.
        """
        cells = self._cell_lists()
        if isinstance(row, Mapping):
            unknown = [key for key in row if key not in self._positions]
            if unknown:
                raise ValueError(f"row has unknown column {unknown[0]!r}; add_col it first")
            for col, column in zip(self._cols, cells):
                column.append(row.get(col.name))
        elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise TypeError(f"a row must be a dict or a sequence, not {type(row).__name__}")
        else:
            if len(row) != len(self._cols):
                raise ValueError(f"row has {len(row)} values for {len(self._cols)} columns")
            for column, value in zip(cells, row):
                column.append(value)
        self._size += 1
        return self

    def from_dataframe(self, df: Any) -> GridBuilder:
        """Load the columns and rows of a pandas DataFrame into this (column-less) builder.

        The meta set so far is kept; column names may be any distinct strs, as for
        :meth:`Grid.from_dataframe`.

        Raises:
            ValueError: the builder already has columns, or as for ``Grid.from_dataframe``.
        """
        if self._cols:
            raise ValueError("from_dataframe needs a builder with no columns")
        grid = Grid.from_dataframe(df)
        self._cols = list(grid._cols)
        self._cells = list(grid._columns)
        self._positions = dict(grid._positions)
        self._size = grid._size
        self._pandas = grid._pandas
        return self

    def to_grid(self) -> Grid:
        """The grid built so far (later changes to the builder do not affect it)."""
        columns = [ListColumn(list(cells)) if isinstance(cells, list) else cells
                   for cells in self._cells]
        cols = [Col(col.name, col.meta) for col in self._cols]
        return Grid._from_columns(dict(self._meta), cols, columns, self._size, self._pandas)
