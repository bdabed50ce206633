"""Every row of the marshalling table, host -> container -> host, across the version gap
(the image runs Debian's numpy 1.24 / pandas 1.5; the host numpy 2 / pandas 2 or 3)."""

import datetime
import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from pyhost import (
    NA,
    Coord,
    Grid,
    GridBuilder,
    Marker,
    MarshalError,
    Number,
    Ref,
    Remove,
    Symbol,
    Uri,
    XStr,
    py,
)


@pytest.fixture
def s(client):
    with py(io=None) as session:
        yield session


NY = ZoneInfo("America/New_York")
SCALARS = [
    None, True, False, "text", "", 0, -(2**63), 2**64 - 1, 1.5, math.inf, -math.inf,
    Number(72.5, "°F"), Number(3, "kW"), Marker(), NA(), Remove(), Ref("p:demo:r:1", "Site 1"),
    Uri("http://example.org/x"), datetime.date(2024, 2, 29), datetime.time(13, 45, 7, 250),
    datetime.datetime(2024, 11, 3, 1, 30, tzinfo=NY), datetime.datetime(2024, 1, 1, 12, 0),
    Coord(37.55, -77.45), XStr("Bin", "text/plain"), Symbol("elec-meter"), b"\x00\xffbuf",
    {"nested": [1, {"k": [Marker(), None]}]}, [],
]


@pytest.mark.parametrize("value", SCALARS, ids=[type(v).__name__ for v in SCALARS])
def test_scalar_round_trip(s, value):
    back = s.define("v", value).eval("v")
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        assert str(back.tzinfo) == "America/New_York"
        assert s.eval("str(v.tzinfo)") == "America/New_York"


def test_nan_and_singletons_and_ref_identity(s):
    assert math.isnan(s.define("v", math.nan).eval("v"))
    assert s.define("m", Marker()).eval("type(m).__name__") == "Marker"
    assert s.eval("from hxpy.haystack import Marker; m is Marker()")
    assert s.define("r", Ref("a", "dis")).eval("r == __import__('hxpy.haystack').haystack.Ref('a')")


def test_tuples_arrive_as_lists(s):
    assert s.define("t", (1, (2, 3))).eval("t") == [1, [2, 3]]


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                   "uint32", "uint64", "float16", "float32", "float64",
                                   "complex64", "complex128", "datetime64[s]",
                                   "timedelta64[ms]"])
def test_ndarray_keeps_dtype_and_shape(s, dtype):
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    back = s.define("m", arr).eval("m")
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert s.eval("type(m).__module__ + '.' + type(m).__name__") == "numpy.ndarray"
    assert s.eval("str(m.dtype)") == str(arr.dtype)


def test_fortran_order_and_zero_d(s):
    arr = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    back = s.define("f", arr).eval("f")
    assert back.flags.f_contiguous
    np.testing.assert_array_equal(back, arr)
    assert s.define("z", np.array(5.0)).eval("z").shape == ()


def test_design_example_matrix_type(s):
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert s.define("data", matrix).eval("str(type(data))") == "<class 'numpy.ndarray'>"


def test_design_example_grid_to_dataframe(s):
    builder = GridBuilder().set_meta({"dis": "demo"}).add_col("a").add_col("b", {"unit": "kW"})
    builder.add_row({"a": 1, "b": 2.5}).add_row({"a": 3, "b": None})
    grid = builder.to_grid()
    text = s.define("grid", grid).eval("str(grid.to_dataframe())")
    assert "a" in text and "2.5" in text
    back = s.eval("grid")
    assert isinstance(back, Grid)
    assert back.col_names() == ["a", "b"] and back.meta()["dis"] == "demo"
    assert back.val(0, "b") == 2.5


def test_dataframe_comes_back_as_a_grid_with_dtypes(s):
    df = pd.DataFrame({
        "f": [1.5, math.nan, 3.0],
        "i": np.array([1, 2, 3], dtype="int64"),
        "b": [True, False, True],
        "s": ["x", None, "z"],
        "t": pd.to_datetime(["2024-01-01 00:00", "2024-06-01 12:00", None]).tz_localize(
            "America/New_York"),
        "c": pd.Categorical(["lo", "hi", "lo"]),
        "ni": pd.array([1, None, 3], dtype="Int64"),
        "nb": pd.array([True, None, False], dtype="boolean"),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))
    grid = s.define("df", df).eval("df")
    assert isinstance(grid, Grid)
    assert s.eval("type(df).__name__") == "Grid"
    in_container = s.eval("d = df.to_dataframe()\n{c: str(t) for c, t in d.dtypes.items()}")
    assert in_container["t"].startswith("datetime64") and "America/New_York" in in_container["t"]
    assert in_container["ni"] == "Int64" and in_container["c"] == "category"
    back = grid.to_dataframe()
    assert list(back.index) == ["r1", "r2", "r3"] and back.index.name == "row"
    for col in ("f", "i", "b", "c", "ni", "nb"):
        assert back[col].dtype == df[col].dtype, col
    assert str(back["t"].dt.tz) == "America/New_York"
    pd.testing.assert_series_equal(back["f"], df["f"])
    assert back["s"].isna().tolist() == [False, True, False]


def test_dataframe_made_in_the_container_arrives_as_grid(s):
    grid = s.eval("import pandas as pd, numpy as np\n"
                  "pd.DataFrame({'x': np.arange(5, dtype='int32'), 'y': list('abcde')})")
    df = grid.to_dataframe()
    assert df["x"].dtype == np.int32 and df["x"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("value, where", [
    ({"rows": [1, 2, 3, {4}]}, "x['rows'][3]: set"),
    ({1: "a"}, "x"),
    (object(), "x: object"),
    (len, "x: builtin_function_or_method"),
    (np.array([object()], dtype=object), "x"),
    (2**70, "x"),
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), "x"),
])
def test_marshal_errors_name_what_and_where_and_the_session_survives(s, value, where):
    with pytest.raises(MarshalError) as info:
        s.define("x", value)
    assert str(info.value).startswith(f"define('x'): {where}")
    assert s.eval("'usable'") == "usable"


def test_unmarshallable_result_from_the_container(s):
    with pytest.raises(MarshalError, match="set"):
        s.eval("{'a': {1, 2}}")
    assert s.eval("1 + 1") == 2
