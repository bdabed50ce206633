"""The Haystack Grid: grid meta, columns (name + meta) and rows, stored column by column.

A :class:`Grid` keeps each column's cells as a list or a numpy array (see
:mod:`hxpy.columns`), so a DataFrame converts to a grid and back, and travels, without a Python
loop over its rows. :class:`Row` objects are built only when rows are asked for (``rows()``,
iteration, ``get``), then cached.

The API is Haxall hxPy's (``hxpy.haystack.grid``): ``meta()``, ``cols()``, ``rows()``,
``first()`` are methods, a column has ``name()``, ``meta()`` and ``index()``, a row has
``cells()``, ``grid()`` and ``val(col)`` and is also a read-only mapping of column name to
cell, so ``row["siteRef"]`` and ``dict(row)`` work too.

Column names: :class:`GridBuilder` (and ``Grid(...)``) accept only Haystack tag names (an ASCII
lowercase letter, then ASCII letters, digits and ``_``). ``Grid.from_dataframe`` accepts any
distinct str names, so that DataFrame columns such as ``"Temp (°F)"`` survive the round trip;
check them with :func:`is_tag_name` before handing the grid to a strict Haystack consumer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

from . import frames
from .columns import Column, ListColumn, same_cells, same_value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, Optional, Union

__all__ = ["Col", "ColumnNotFound", "Grid", "GridBuilder", "Row", "RowLengthError",
           "is_tag_name"]

_TAG_NAME = re.compile(r"[a-z][A-Za-z0-9_]*")


class ColumnNotFound(KeyError, NameError):
    """A grid (or builder) has no column of that name.

    A ``KeyError``, as a mapping's missing key is, and a ``NameError``, which is what Haxall's
    hxPy raises there, so code written for either catches it.
    """


class RowLengthError(ValueError):
    """A row given as a list has more or fewer cells than the grid has columns; the message
    names the row's index and both counts."""


def is_tag_name(name: Any) -> bool:
    """Whether ``name`` is a valid Haystack tag name, e.g. ``siteRef`` (not ``Site``, ``a-b``)."""
    return isinstance(name, str) and _TAG_NAME.fullmatch(name) is not None


def _check_tag_name(name: Any) -> str:
    if not is_tag_name(name):
        raise ValueError(
            f"invalid column name {name!r}: a Haystack tag name starts with an ASCII lowercase "
            f"letter followed by ASCII letters, digits or '_'")
    return str.__str__(name)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _check_meta(meta: Optional[Mapping[str, Any]], what: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(meta).__name__}")
    return dict(meta)


class Col:
    """A grid column: its name, its meta and its position (its cells live in the grid).

    ``Col(name, meta)`` names a column for ``Grid(cols=...)``; the columns a grid hands out
    also know their ``index()``. Equal when name and meta are.
    """

    __slots__ = ("_name", "_meta", "_index")

    def __init__(self, name: str, meta: Optional[Mapping[str, Any]] = None,
                 index: Optional[int] = None) -> None:
        self._name = name
        self._meta = _check_meta(meta, "column meta")
        self._index = index

    def _at(self, index: int) -> Col:
        """This column at position ``index`` (itself if it is there already)."""
        if self._index == index:
            return self
        col = Col.__new__(Col)
        col._name, col._meta, col._index = self._name, self._meta, index
        return col

    def name(self) -> str:
        """The column name."""
        return self._name

    def meta(self) -> dict[str, Any]:
        """The column meta (``{}`` when it has none); treat it as read-only."""
        return self._meta

    def index(self) -> Optional[int]:
        """The column's position in its grid, from 0 (None for a Col made on its own)."""
        return self._index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Col):
            return self._name == other._name and same_value(self._meta, other._meta)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self._meta:
            return f"Col({self._name!r})"
        return f"Col({self._name!r}, {self._meta!r})"


if TYPE_CHECKING:
    ColumnKey = Union[str, Col, int]


class Row(Mapping[str, "Any"]):  # a string: typing is imported for type checkers only
    """One row of a grid: a read-only mapping of column name to cell (None for null), plus
    hxPy's ``cells()``, ``grid()`` and ``val(col)``. Equal to a dict with the same items."""

    __slots__ = ("_grid", "_cells")

    def __init__(self, grid: Grid, cells: Sequence[Any]) -> None:
        self._grid = grid
        self._cells = cells

    def cells(self) -> list[Any]:
        """The cells, one per column, in column order."""
        return list(self._cells)

    def grid(self) -> Grid:
        """The grid this row belongs to."""
        return self._grid

    def val(self, col: ColumnKey) -> Any:
        """The cell in ``col``: a :class:`Col` (matched by name, so a Col of another grid with
        the same columns works), a column name, or a column index.

        Raises:
            ColumnNotFound: there is no such column (a KeyError).
            IndexError: a column index is out of range.
            TypeError: ``col`` is none of those.
        """
        return self._cells[self._grid._position(col)]

    def __getitem__(self, name: str) -> Any:
        position = self._grid._positions.get(name)
        if position is None:
            raise KeyError(name)
        return self._cells[position]

    def __contains__(self, name: object) -> bool:
        return name in self._grid._positions

    def __iter__(self) -> Iterator[str]:
        return iter(self._grid._names)

    def __len__(self) -> int:
        return len(self._cells)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._grid._names, self._cells))!r})"


class Grid:
    """A Haystack grid. Treat it, its meta and its rows as read-only.

    ``Grid(meta, cols, rows)`` builds one like :class:`GridBuilder`: ``cols`` are names or
    :class:`Col` objects (default: the keys of the dict rows, in order of appearance) and
    each row is a dict or a sequence with one value per column.

    Raises:
        ValueError: a column name is not a Haystack tag name or is repeated, or a row does not
            fit the columns (:class:`RowLengthError` for a list of the wrong length).
    """

    __slots__ = ("_meta", "_cols", "_names", "_columns", "_size", "_pandas", "_positions",
                 "_rows")

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
                builder.add_col(col.name(), col.meta())
            else:
                builder.add_col(col)
        for row in rows:
            builder.add_row(row)
        grid = builder.to_grid()
        self._setup(grid._meta, grid._cols, grid._columns, grid._size, grid._pandas)

    def _setup(self, meta: dict[str, Any], cols: Sequence[Col], columns: Sequence[Column],
               size: int, pandas: Optional[dict[str, Any]]) -> None:
        self._meta = meta
        self._cols = tuple(col._at(index) for index, col in enumerate(cols))
        self._names = tuple(col._name for col in self._cols)
        self._columns = tuple(columns)
        self._size = size
        self._pandas = pandas or None
        self._positions = {name: position for position, name in enumerate(self._names)}
        self._rows: Optional[list[Row]] = None

    @staticmethod
    def _from_columns(meta: dict[str, Any], cols: Sequence[Col], columns: Sequence[Column],
                      size: int, pandas: Optional[dict[str, Any]] = None) -> Grid:
        """A grid over ready-made columns (no name checks, no copies)."""
        for column in columns:
            if len(column) != size:
                raise ValueError(f"a column has {len(column)} cells for {size} rows")
        grid = Grid.__new__(Grid)
        grid._setup(meta, cols, columns, size, pandas)
        return grid

    @staticmethod
    def empty_grid() -> Grid:
        """A grid with no meta, no columns and no rows."""
        return Grid._from_columns({}, (), (), 0)

    # -- structure ------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """The grid meta (``{}`` when it has none); treat it as read-only."""
        return self._meta

    def cols(self) -> list[Col]:
        """The columns, in order."""
        return list(self._cols)

    def col_names(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)

    def col(self, name: str, checked: bool = True) -> Optional[Col]:
        """The column called ``name``.

        Raises:
            ColumnNotFound: there is none and ``checked`` is true (else None is returned); a
                KeyError and a NameError.
        """
        position = self._positions.get(name)
        if position is None:
            if checked:
                raise ColumnNotFound(f"grid has no column {name!r}")
            return None
        return self._cols[position]

    def has(self, name: str) -> bool:
        """Whether the grid has a column called ``name``."""
        return name in self._positions

    def _position(self, col: ColumnKey) -> int:
        if isinstance(col, Col):
            name = col._name
        elif isinstance(col, str):
            name = col
        elif isinstance(col, int) and not isinstance(col, bool):
            return range(len(self._cols))[col]
        else:
            raise TypeError(f"a column is a name, a Col or an index, not {type(col).__name__}")
        position = self._positions.get(name)
        if position is None:
            raise ColumnNotFound(f"grid has no column {name!r}")
        return position

    def is_empty(self) -> bool:
        """Whether the grid has no rows."""
        return self._size == 0

    def size(self) -> int:
        """The number of rows."""
        return self._size

    def __len__(self) -> int:
        return self._size

    # -- rows -----------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Every row, built once and cached; treat the list as read-only."""
        if self._rows is None:
            if not self._cols:
                self._rows = [Row(self, ()) for _ in range(self._size)]
            else:
                cells = [column.cells() for column in self._columns]
                self._rows = [Row(self, values) for values in zip(*cells)]
        return self._rows

    def first(self) -> Optional[Row]:
        """The first row, or None for an empty grid (as Haystack's ``Grid.first``)."""
        return self.get(0) if self._size else None

    def get(self, index: int) -> Row:
        """The row at ``index`` (negative counts from the end).

        Raises:
            IndexError: there is no such row.
        """
        if self._rows is not None:
            return self._rows[index]
        index = range(self._size)[index]
        return Row(self, tuple(column.cell(index) for column in self._columns))

    def __getitem__(self, index: int) -> Row:
        return self.get(index)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows())

    def val(self, row: Union[int, Mapping[str, Any]], col: ColumnKey) -> Any:
        """The cell in ``row`` (an index or a row) and ``col`` (a name, a :class:`Col` or a
        column index).

        Raises:
            ColumnNotFound: there is no such column (a KeyError).
            IndexError: there is no such row, or column index.
            TypeError: ``col`` is neither a name, a Col nor an index.
        """
        position = self._position(col)
        if isinstance(row, Mapping):
            return row.get(self._names[position])
        return self._columns[position].cell(range(self._size)[row])

    # -- pandas ---------------------------------------------------------------------------

    @staticmethod
    def from_dataframe(frame: Any, meta: Optional[Mapping[str, Any]] = None) -> Grid:
        """The grid of a pandas DataFrame: one column per DataFrame column, columnar.

        The grid remembers each column's dtype and the index (which is not a column), so
        :meth:`to_dataframe` rebuilds the same frame. Column names may be any distinct strs.

        Raises:
            TypeError: ``frame`` is not a DataFrame.
            ValueError: a column name is not a str or is repeated, or a dtype has no encoding.
        """
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(frame, pandas.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, not {type(frame).__name__}")
        names, columns, info = frames.parts_from_dataframe(frame)
        cols = [Col(name) for name in names]
        return Grid._from_columns(_check_meta(meta, "grid meta"), cols, columns, len(frame),
                                  info)

    @staticmethod
    def _from_series(series: Any) -> Grid:
        names, columns, info = frames.parts_from_series(series)
        return Grid._from_columns({}, [Col(names[0])], columns, len(series), info)

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
        return frames.dataframe_from_parts(list(self._names), list(self._columns),
                                           self._pandas, self._size, text_as_str)

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
        names = ", ".join(self._names)
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

    @staticmethod
    def from_dataframe(frame: Any, meta: Optional[Mapping[str, Any]] = None) -> GridBuilder:
        """A builder holding the columns and rows of a pandas DataFrame (and ``meta``).

        Column names may be any distinct strs, as for :meth:`Grid.from_dataframe`. Rows added
        later turn the columns into plain lists, and the dtypes and index are then dropped.

        Raises:
            TypeError: ``frame`` is not a DataFrame.
            ValueError: as for :meth:`Grid.from_dataframe`.
        """
        grid = Grid.from_dataframe(frame, meta)
        builder = GridBuilder()
        builder._meta = grid._meta
        builder._cols = list(grid._cols)
        builder._cells = list(grid._columns)
        builder._positions = dict(grid._positions)
        builder._size = grid._size
        builder._pandas = grid._pandas
        return builder

    def set_meta(self, meta: Mapping[str, Any]) -> GridBuilder:
        """Replace the grid meta.

        Raises:
            TypeError: ``meta`` is not a dict.
        """
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
        self._cols.append(Col(name, meta, len(self._cols)))
        self._cells.append([None] * self._size)
        return self

    def add_col_names(self, names: Iterable[str]) -> GridBuilder:
        """Add a column, with no meta, for each name in turn.

        Raises:
            TypeError: ``names`` is a single str (a list of names is wanted).
            ValueError: a name is not a Haystack tag name or already used.
        """
        if isinstance(names, str):
            raise TypeError(f"add_col_names takes a list of names, not the str {names!r}")
        for name in names:
            self.add_col(name)
        return self

    def set_col_meta(self, name: str, meta: Mapping[str, Any]) -> GridBuilder:
        """Replace the meta of column ``name``.

        Raises:
            ColumnNotFound: there is no such column (a KeyError).
        """
        position = self._positions.get(name)
        if position is None:
            raise ColumnNotFound(f"no column {name!r} to set the meta of")
        self._cols[position] = Col(name, meta, position)
        return self

    def _cell_lists(self) -> list[list[Any]]:
        if any(not isinstance(cells, list) for cells in self._cells):
            # Rows added to a frame loaded by from_dataframe: its columns become plain lists,
            # so the pandas dtypes and index are no longer known.
            self._cells = [cells if isinstance(cells, list) else list(cells.cells())
                           for cells in self._cells]
            self._pandas = None
        return self._cells  # type: ignore[return-value]

    def add_row(self, cells: Union[Mapping[str, Any], Sequence[Any]]) -> GridBuilder:
        """Add a row: one value per column, in order, or a dict (missing columns are None).

        Raises:
            RowLengthError: the sequence has more or fewer cells than there are columns (the
                message says the row's index and both counts); a ValueError.
            ValueError: the dict names an unknown column.
            TypeError: ``cells`` is neither a sequence nor a dict.
        """
        if isinstance(cells, Mapping):
            unknown = [key for key in cells if key not in self._positions]
            if unknown:
                raise ValueError(f"row {self._size} has unknown column {unknown[0]!r}; "
                                 "add_col it first")
            for col, column in zip(self._cols, self._cell_lists()):
                column.append(cells.get(col._name))
        elif isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence):
            raise TypeError(f"a row must be a list or a dict, not {type(cells).__name__}")
        else:
            if len(cells) != len(self._cols):
                raise RowLengthError(
                    f"row {self._size} has {_count(len(cells), 'cell')} but the grid has "
                    f"{_count(len(self._cols), 'column')} ({', '.join(self._positions)})")
            for column, value in zip(self._cell_lists(), cells):
                column.append(value)
        self._size += 1
        return self

    def to_grid(self) -> Grid:
        """The grid built so far (later changes to the builder do not affect it)."""
        columns = [ListColumn(list(cells)) if isinstance(cells, list) else cells
                   for cells in self._cells]
        return Grid._from_columns(dict(self._meta), list(self._cols), columns, self._size,
                                  self._pandas)
