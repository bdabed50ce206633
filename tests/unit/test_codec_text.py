"""Text columns as two buffers (``enc: "text"``): what the server sends a host that has
pyarrow, so a str column reaches Arrow without a Python object per cell."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hxpy import columns, frames
from hxpy.codec import MarshalError, decode, encode_parts
from hxpy.columns import ListColumn, TextColumn, column_from_wire
from hxpy.haystack import Grid
from pyhost.session.handshake import hello
from tests.unit.conftest import session

PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
ROWS = 3000  # above the size where text columns start


@pytest.fixture
def sending() -> Iterator[None]:
    columns.send_text_columns(True)
    yield
    columns.send_text_columns(False)


def travel(df: pd.DataFrame) -> Grid:
    head, buffers = encode_parts(df, where="df")
    grid = decode(head, buffers)
    assert isinstance(grid, Grid)
    return grid


def texts(rows: int = ROWS) -> list[Any]:
    """ASCII, two-, three- and four-byte characters, empty strings and nulls."""
    cells: list[Any] = ["plain", "é", "", "日本語", "🙂x", None]
    return [cell if cell is None else f"{cell}{index}" for index, cell in
            zip(range(rows), cells * (rows // len(cells) + 1))]


def test_an_object_column_of_text_travels_as_text_and_comes_back_the_same(sending):
    df = pd.DataFrame({"name": pd.Series(texts(), dtype=object), "n": np.arange(ROWS)})
    grid = travel(df)
    column = grid._columns[0]
    assert isinstance(column, TextColumn)
    assert column.na is not None and int(column.na.sum()) == ROWS // 6
    back = grid.to_dataframe()
    assert back["name"].dtype == object
    assert back["name"].tolist() == df["name"].tolist()
    assert [row["name"] for row in grid.rows()] == df["name"].tolist()
    assert [column.cell(i) for i in (0, 1, 3, 4, 5, -1)] == [
        df["name"][i] for i in (0, 1, 3, 4, 5, ROWS - 1)]


@pytest.mark.parametrize("dtype", ["string", "str"])
def test_string_dtypes_keep_their_dtype_and_their_missing_value(sending, dtype):
    if dtype == "str" and not PANDAS_3:
        pytest.skip("pandas < 3 has no str dtype")
    series = pd.Series(texts(), dtype=dtype)
    back = travel(pd.DataFrame({"s": series})).to_dataframe()["s"]
    assert back.dtype == series.dtype
    pd.testing.assert_series_equal(back, series, check_names=False)


def test_without_pyarrow_the_cells_make_the_same_frame(sending, monkeypatch):
    monkeypatch.setattr(frames, "_arrow_strings", lambda column: None)
    df = pd.DataFrame({"o": pd.Series(texts(), dtype=object),
                       "s": pd.Series(texts(), dtype="string")})
    grid = travel(df)
    assert all(isinstance(column, TextColumn) for column in grid._columns)
    pd.testing.assert_frame_equal(grid.to_dataframe(), df)


def test_lists_remain_for_small_columns_other_cells_and_when_not_asked():
    df = pd.DataFrame({"name": pd.Series(texts(), dtype=object)})
    assert isinstance(travel(df)._columns[0], ListColumn)  # nobody asked
    columns.send_text_columns(True)
    try:
        small = pd.DataFrame({"name": pd.Series(texts(10), dtype=object)})
        assert isinstance(travel(small)._columns[0], ListColumn)
        mixed = pd.DataFrame({"o": pd.Series(texts()[:-1] + [7], dtype=object)})
        grid = travel(mixed)
        assert isinstance(grid._columns[0], ListColumn)
        assert grid.to_dataframe()["o"].tolist() == mixed["o"].tolist()
        surrogate = pd.DataFrame({"o": pd.Series(texts()[:-1] + ["\ud800"], dtype=object)})
        with pytest.raises(MarshalError, match="surrogates not allowed"):
            travel(surrogate)  # refused as a list column is: msgpack cannot encode it
    finally:
        columns.send_text_columns(False)


def test_text_as_str_gives_text_columns_the_string_dtype(sending):
    index = pd.Index([f"r{i}" for i in range(ROWS)], dtype=object)
    df = pd.DataFrame({"big": pd.Series(texts(), dtype=object, index=index),
                       "small": pd.Series(["a", None, "b"] * (ROWS // 3), dtype=object,
                                          index=index),
                       "mixed": pd.Series([1, "a", None] * (ROWS // 3), dtype=object,
                                          index=index)})
    back = travel(df).to_dataframe(text_as_str=True)
    expected = "str" if PANDAS_3 else "string"
    assert str(back["big"].dtype) == expected and str(back["small"].dtype) == expected
    assert back["mixed"].dtype == object
    assert back.index.dtype == object  # the index keeps its dtype
    assert back["big"].isna().sum() == ROWS // 6
    assert back["big"].dropna().tolist() == [t for t in texts() if t is not None]


def _wire(**changes: Any) -> dict[str, Any]:
    data = np.frombuffer("abé".encode(), dtype=np.uint8)
    wire = {"enc": "text", "data": data, "offsets": np.array([0, 1, 2, 4], dtype=np.int64)}
    wire.update(changes)
    return wire


@pytest.mark.parametrize("changes, message", [
    ({"offsets": np.array([1, 1, 2, 4], dtype=np.int64)}, "rise from 0"),
    ({"offsets": np.array([0, 2, 1, 4], dtype=np.int64)}, "rise from 0"),
    ({"offsets": np.array([0, 1, 2, 5], dtype=np.int64)}, "rise from 0"),
    ({"offsets": np.array([0, 1, 3, 4], dtype=np.int64)}, "split a UTF-8 character"),
    ({"offsets": np.array([0, 1, 2, 4], dtype=np.int32)}, "int64 offsets"),
    ({"data": np.frombuffer(b"ab\xff\xfe", dtype=np.uint8)}, "not UTF-8"),
    ({"offsets": [0, 1, 2, 4]}, "1-D ndarray"),
    ({"na": np.array([True, False], dtype=bool)}, "'na'"),
])
def test_a_malformed_text_column_is_refused(changes, message):
    assert column_from_wire(_wire(), 3).cells() == ["a", "b", "é"]
    with pytest.raises(ValueError, match=message):
        column_from_wire(_wire(**changes), 3)


def test_the_hello_asks_for_text_columns_and_the_server_sends_them(launcher):
    assert decode(hello("k"))["columns"] == ["text"]  # pyarrow is installed here
    with session(launcher) as s:
        grid = s.exec(f"import pandas as pd\ndf = pd.DataFrame({{'t': ['x'] * {ROWS}}})"
                      ).eval("df")
        assert s.eval("__import__('hxpy.columns').columns._send_text") is True
    assert isinstance(grid._columns[0], TextColumn)
    assert grid.to_dataframe()["t"].tolist() == ["x"] * ROWS
