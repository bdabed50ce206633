"""The codec on pandas: a DataFrame travels as a columnar Grid and comes back with its dtypes.

Runs on pandas 1.5 (the container's) and 3.x (the host's) alike.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hxpy.codec import MarshalError, decode, encode
from hxpy.haystack import Grid, GridBuilder, Marker, Number, Ref

PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
STR = "str" if PANDAS_3 else object  # the dtype pandas gives a column of strs
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def roundtrip(value: Any) -> Any:
    return decode(encode(value, where="x"))


def exactly(n: int, elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=n, max_size=n)


naive_times = st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1))
object_cells = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=4),
    st.just(Marker()), st.builds(Number, st.floats(), st.just("kW")),
    st.builds(Ref, st.text(min_size=1, max_size=4)), st.lists(st.integers(0, 9), max_size=2),
)


@st.composite
def series(draw: Any, n: int) -> pd.Series:
    kind = draw(st.sampled_from([
        "int64", "int8", "uint64", "float64", "float32", "bool", "complex128", "str", "string",
        "object", "datetime", "datetime_tz", "timedelta", "category", "Int64", "UInt8",
        "Float64", "boolean",
    ]))
    if kind in ("int64", "int8", "uint64"):
        info = np.iinfo(kind)
        return pd.Series(draw(exactly(n, st.integers(int(info.min), int(info.max)))), dtype=kind)
    if kind in ("float64", "float32"):
        width = 64 if kind == "float64" else 32
        return pd.Series(draw(exactly(n, st.floats(width=width))), dtype=kind)
    if kind == "bool":
        return pd.Series(draw(exactly(n, st.booleans())), dtype=bool)
    if kind == "complex128":
        return pd.Series(draw(exactly(n, st.complex_numbers())), dtype=kind)
    if kind in ("str", "string"):
        dtype = STR if kind == "str" else "string"
        return pd.Series(draw(exactly(n, st.none() | st.text(max_size=5))), dtype=dtype)
    if kind == "object":
        return pd.Series(draw(exactly(n, object_cells)), dtype=object)
    if kind == "datetime":
        return pd.Series(draw(exactly(n, st.none() | naive_times)), dtype="datetime64[ns]")
    if kind == "datetime_tz":
        zone = draw(st.sampled_from(ZONES + [dt.timezone(dt.timedelta(hours=-3))]))
        naive = pd.Series(draw(exactly(n, st.none() | naive_times)), dtype="datetime64[ns]")
        return naive.dt.tz_localize("UTC").dt.tz_convert(zone)
    if kind == "timedelta":
        spans = st.none() | st.timedeltas(min_value=dt.timedelta(days=-9999),
                                          max_value=dt.timedelta(days=9999))
        return pd.Series(draw(exactly(n, spans)), dtype="timedelta64[ns]")
    if kind == "category":
        values = draw(exactly(n, st.sampled_from(["lo", "mid", "hi", None])))
        categories = draw(st.permutations(["lo", "mid", "hi"]))
        return pd.Series(pd.Categorical(values, categories=categories,
                                        ordered=draw(st.booleans())))
    if kind in ("Int64", "UInt8"):
        top = 2**63 - 1 if kind == "Int64" else 255
        low = -(2**63) if kind == "Int64" else 0
        return pd.Series(draw(exactly(n, st.none() | st.integers(low, top))), dtype=kind)
    if kind == "Float64":
        return pd.Series(draw(exactly(n, st.none() | st.floats(allow_nan=False))), dtype=kind)
    return pd.Series(draw(exactly(n, st.none() | st.booleans())), dtype="boolean")


@st.composite
def indexes(draw: Any, n: int) -> Any:
    kind = draw(st.sampled_from(["default", "range", "str", "int", "datetime", "multi"]))
    name = draw(st.none() | st.text(max_size=3))
    if kind == "default":
        return None
    if kind == "range":
        start, step = draw(st.integers(-50, 50)), draw(st.integers(1, 5)) * draw(
            st.sampled_from([1, -1]))
        return pd.RangeIndex(start, start + n * step, step, name=name)
    if kind == "str":
        return pd.Index(draw(exactly(n, st.text(max_size=3))), dtype=STR, name=name)
    if kind == "int":
        return pd.Index(draw(exactly(n, st.integers(-(2**63), 2**63 - 1))), dtype="int64",
                        name=name)
    if kind == "datetime":
        tz = draw(st.sampled_from([None] + ZONES))
        return pd.date_range("2021-03-14", periods=n, freq="h", tz=tz, name=name)
    return pd.MultiIndex.from_arrays(
        [draw(exactly(n, st.integers(0, 3))), draw(exactly(n, st.text(max_size=2)))],
        names=[name, "second"])


@st.composite
def frames(draw: Any) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.text(max_size=5), max_size=5, unique=True))
    df = pd.DataFrame({name: draw(series(n)) for name in names}) if names else \
        pd.DataFrame(index=pd.RangeIndex(n))
    index = draw(indexes(n))
    if index is not None:
        df.index = index
    return df


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_dataframe_becomes_a_grid_and_comes_back_with_dtypes(df: pd.DataFrame) -> None:
    grid = roundtrip(df)
    assert isinstance(grid, Grid)
    assert grid.col_names() == list(df.columns) and len(grid) == len(df)
    pd.testing.assert_frame_equal(grid.to_dataframe(), df, check_exact=True,
                                  check_column_type=True, check_index_type=True)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 5).flatmap(lambda n: st.tuples(series(n), indexes(n))),
       st.none() | st.text(max_size=3))
def test_series_becomes_a_one_column_grid(pair: Any, name: Any) -> None:
    values, index = pair
    values.name = name
    if index is not None:
        values.index = index
    grid = roundtrip(values)
    assert grid.col_names() == [name if name is not None else "val"]
    pd.testing.assert_series_equal(grid.to_series(), values, check_exact=True,
                                   check_index_type=True)


def test_grid_cells_are_python_values() -> None:
    df = pd.DataFrame({
        "i": [1, 2], "f": [1.5, np.nan], "b": [True, False],
        "s": pd.Series(["a", None], dtype=STR),
        "t": pd.to_datetime(["2020-01-01 12:00", None]).tz_localize("America/New_York"),
        "n": pd.Series([None, 7], dtype="Int64"),
        "c": pd.Categorical(["x", None]),
        "naive": pd.to_datetime(["2020-01-01 00:00:00.123456789", None]),
    })
    grid = roundtrip(df)
    first, second = grid.rows()
    assert first["i"] == 1 and type(first["i"]) is int and first["f"] == 1.5
    assert np.isnan(second["f"]) and first["b"] is True and first["s"] == "a"
    assert second["s"] is None and second["t"] is None and second["naive"] is None
    assert first["t"] == dt.datetime(2020, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    assert first["t"].tzinfo.key == "America/New_York"
    assert first["n"] is None and second["n"] == 7 and first["c"] == "x" and second["c"] is None
    assert first["naive"] == dt.datetime(2020, 1, 1, 0, 0, 0, 123456)
    assert grid.get(-1) == second and grid.val(0, "i") == 1 and grid.first() == first
    assert roundtrip(grid) == grid


def test_rebuilt_frames_are_writable() -> None:
    df = pd.DataFrame({"f": [1.0, 2.0], "i": [1, 2], "n": pd.Series([1, None], dtype="Int64"),
                       "s": pd.Series(["a", "b"], dtype=STR)})
    out = roundtrip(df).to_dataframe()
    out.iloc[0, 0] = 5.0
    out.loc[1, "i"] = 9
    out.loc[0, "n"] = 3
    out.loc[0, "s"] = "z"
    assert out["f"].tolist() == [5.0, 2.0] and out["i"].tolist() == [1, 9]
    assert out["n"].tolist()[0] == 3 and out["s"].tolist()[0] == "z"


def test_from_dataframe_keeps_any_distinct_str_names_but_builder_checks() -> None:
    df = pd.DataFrame({"Temp (°F)": [70.5], "site name": ["HQ"]})
    grid = Grid.from_dataframe(df, meta={"dis": "Readings"})
    assert grid.col_names() == ["Temp (°F)", "site name"] and grid.meta() == {"dis": "Readings"}
    assert roundtrip(grid).to_dataframe().equals(df)
    with pytest.raises(ValueError, match="invalid column name 'Temp'"):
        GridBuilder().add_col("Temp")


def test_builder_from_dataframe_then_meta_and_rows() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=["p", "q"])
    builder = GridBuilder.from_dataframe(df, meta={"dis": "t"})
    grid = builder.set_col_meta("a", {"unit": "kW"}).to_grid()
    assert grid.meta() == {"dis": "t"} and grid.col("a").meta() == {"unit": "kW"}
    pd.testing.assert_frame_equal(roundtrip(grid).to_dataframe(), df)
    grid = builder.add_row({"a": 3}).to_grid()
    assert grid.rows()[-1] == {"a": 3, "b": None} and len(grid) == 3
    assert list(grid.to_dataframe().index) == [0, 1, 2]


def test_row_built_grid_to_dataframe_infers_dtypes() -> None:
    grid = roundtrip(Grid(rows=[{"a": 1, "b": "x"}, {"a": 2, "b": Marker()}]))
    df = grid.to_dataframe()
    assert df["a"].dtype == np.int64 and df["b"].dtype == object
    assert df["b"].tolist() == ["x", Marker()]


def test_pandas_scalars() -> None:
    stamp = pd.Timestamp("2021-06-01 08:30:00.123456789", tz="Europe/Paris")
    back = roundtrip(stamp)
    assert type(back) is dt.datetime and back.tzinfo.key == "Europe/Paris"
    assert back == stamp.to_pydatetime(warn=False) and back.microsecond == 123456
    assert roundtrip([pd.NaT, pd.NA]) == [None, None]


def test_empty_frames() -> None:
    for df in (pd.DataFrame(), pd.DataFrame({"a": pd.Series([], dtype="float64")}),
               pd.DataFrame(index=pd.RangeIndex(3))):
        pd.testing.assert_frame_equal(roundtrip(df).to_dataframe(), df)


def test_datetime_index_keeps_its_frequency() -> None:
    df = pd.DataFrame({"v": range(4)},
                      index=pd.date_range("2020", periods=4, freq="15min", tz="UTC"))
    out = roundtrip(df).to_dataframe()
    assert out.index.freq == df.index.freq
    pd.testing.assert_frame_equal(out, df)


REFUSED = [
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), "x.columns[1]: duplicate column name 'a'"),
    (pd.DataFrame([[1]]), "x.columns[0]: column name 0 is int, not str"),
    (pd.DataFrame({"a": [1, 2, {3}]}), "x['a'].iloc[2]: set is not marshallable"),
    ({"df": pd.DataFrame({"a": [1]}, index=pd.Index([object()], dtype=object))},
     "x['df'].index[0]: object is not marshallable"),
    (pd.Series([1], name=object()), "x.name: object is not marshallable"),
    (pd.Series([1, 2j], dtype=object), "x.iloc[1]: complex is not marshallable"),
    (pd.DataFrame({"p": pd.period_range("2020", periods=2, freq="D")}),
     "x['p'].iloc[0]: Period is not marshallable"),
    (pd.DataFrame({"a": pd.Series([dt.time(1, tzinfo=dt.timezone.utc)], dtype=object)}),
     "x['a'].iloc[0]: time with a tzinfo is not marshallable (a Haystack Time has no zone)"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_refusals_name_the_column_and_row(value: Any, message: str) -> None:
    with pytest.raises(MarshalError) as caught:
        encode(value, where="x")
    assert str(caught.value) == message


def test_from_dataframe_refuses_bad_names_with_value_error() -> None:
    with pytest.raises(ValueError, match="duplicate column name 'a'"):
        Grid.from_dataframe(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(TypeError):
        Grid.from_dataframe({"a": [1]})
