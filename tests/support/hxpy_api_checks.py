"""Checks of the hxPy Grid/value API (Haxall's ``hxpy.haystack``), runnable anywhere.

Each ``check_*`` function asserts one part of the API and needs only hxpy and pandas, not
pytest, so the same source runs on the host (``tests/unit/test_hxpy_api.py``), in a session
of the process launcher, and in a real container (``tests/integration/test_hxpy_api_docker.py``):
the session ``exec``s this file's text and calls :func:`run_checks`.

The first three follow what hxPy's own non-brio Grid tests assert (in our own words); the
rest cover every other method of the API at least once.
"""

from __future__ import annotations

import datetime
import inspect
import re
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Callable, Optional
from zoneinfo import ZoneInfo

import pandas as pd

from hxpy.haystack import Grid, GridBuilder


@contextmanager
def raises(kind: type, match: Optional[str] = None) -> Iterator[None]:
    """Assert that the block raises ``kind`` (with ``match`` found in its message)."""
    try:
        yield
    except kind as exc:
        if match is not None:
            assert re.search(match, str(exc)), f"{str(exc)!r} does not match {match!r}"
    else:
        raise AssertionError(f"{kind.__name__} was not raised")


# -- what hxPy's own Grid tests rely on -------------------------------------------------------


def check_a_built_grid_goes_to_a_frame_and_back() -> None:
    grid = GridBuilder().add_col_names(["x", "y", "z"]).add_row([7, 8, 9]).to_grid()
    assert grid.col_names() == ["x", "y", "z"]
    frame = grid.to_dataframe()
    assert frame.columns.values.tolist() == ["x", "y", "z"]
    assert frame.values.tolist() == [[7, 8, 9]]
    again = Grid.from_dataframe(frame)
    assert again.col_names() == ["x", "y", "z"]
    assert again.rows()[0].cells() == [7, 8, 9]


def check_column_meta_set_before_and_after_rows() -> None:
    builder = GridBuilder().add_col_names(["x", "y", "z"])
    assert builder.to_grid().col("x").meta() == {}
    builder.set_col_meta("x", {"unit": "kW"})
    assert builder.to_grid().col("x").meta() == {"unit": "kW"}
    builder.add_row([1, 2, 3]).set_col_meta("y", {"enabled": True})
    grid = builder.to_grid()
    assert grid.col("x").meta() == {"unit": "kW"}
    assert grid.col("y").meta() == {"enabled": True}
    assert grid.col("z").meta() == {}


def check_a_timestamp_survives_a_frame_round_trip_read_through_a_column() -> None:
    zone = ZoneInfo("America/New_York")
    stamp = datetime.datetime(2021, 3, 14, 1, 30, tzinfo=zone)
    grid = GridBuilder().add_col("ts").add_col("v0").add_row([stamp, 41.5]).to_grid()
    col = grid.col("ts")
    assert grid.first().val(col) == stamp
    # A Col of the first grid reads the same column of the rebuilt one.
    again = Grid.from_dataframe(grid.to_dataframe())
    assert again.first().val(col) == stamp
    assert again.first().val(col).utcoffset() == stamp.utcoffset()


# -- the rest of the API ----------------------------------------------------------------------


def check_module_paths_reexport_one_class_each() -> None:
    import hxpy.grid
    import hxpy.haystack as haystack
    import hxpy.values
    from hxpy.haystack.coord import Coord
    from hxpy.haystack.grid import Grid as GridAtPath
    from hxpy.haystack.grid import GridBuilder as BuilderAtPath
    from hxpy.haystack.marker import Marker
    from hxpy.haystack.na import NA
    from hxpy.haystack.ref import Ref
    from hxpy.haystack.remove import Remove

    assert GridAtPath is Grid is haystack.Grid is hxpy.grid.Grid
    assert BuilderAtPath is GridBuilder is hxpy.grid.GridBuilder
    for cls in (Marker, NA, Remove, Ref, Coord):
        assert getattr(haystack, cls.__name__) is cls is getattr(hxpy.values, cls.__name__)
    assert Marker() is Marker() and NA() is NA() and Remove() is Remove()


def check_from_dataframe_is_static_on_grid_and_builder() -> None:
    for cls in (Grid, GridBuilder):
        assert isinstance(inspect.getattr_static(cls, "from_dataframe"), staticmethod)
    frame = pd.DataFrame({"a": [1, 2], "b": ["p", "q"]})
    builder = GridBuilder.from_dataframe(frame)
    assert isinstance(builder, GridBuilder)
    grid = builder.set_meta({"dis": "two"}).to_grid()
    assert grid.meta() == {"dis": "two"} and grid.size() == 2
    assert [(col.name(), col.index()) for col in grid.cols()] == [("a", 0), ("b", 1)]
    assert [row.cells() for row in grid.rows()] == [[1, "p"], [2, "q"]]
    assert grid.to_dataframe().equals(frame)


def check_the_empty_grid() -> None:
    empty = Grid.empty_grid()
    assert isinstance(empty, Grid) and empty.is_empty() and empty.size() == 0
    assert empty.meta() == {} and empty.cols() == [] and empty.col_names() == []
    assert empty.rows() == [] and empty.first() is None
    with raises(IndexError):
        empty.get(0)
    assert not GridBuilder().add_col("a").add_row([1]).to_grid().is_empty()


def check_builder_methods_chain_and_grid_structure() -> None:
    builder = GridBuilder()
    assert builder.set_meta({"dis": "Sites"}) is builder
    assert builder.add_col("id") is builder
    assert builder.add_col("area", {"unit": "ft²"}) is builder
    assert builder.add_col_names(["geoCity", "tz"]) is builder
    assert builder.set_col_meta("tz", {"doc": "zone"}) is builder
    assert builder.add_row(["s1", 1200, "Richmond", "New_York"]) is builder
    grid = builder.add_row(["s2", None, None, None]).to_grid()
    assert grid.meta() == {"dis": "Sites"}
    assert grid.col_names() == ["id", "area", "geoCity", "tz"]
    assert [col.name() for col in grid.cols()] == grid.col_names()
    assert [col.index() for col in grid.cols()] == [0, 1, 2, 3]
    assert grid.col("area").meta() == {"unit": "ft²"} and grid.col("tz").meta() == {"doc": "zone"}
    assert grid.has("geoCity") and not grid.has("geocity")
    assert grid.size() == len(grid) == 2


def check_a_missing_column_is_both_a_key_error_and_a_name_error() -> None:
    grid = GridBuilder().add_col("a").to_grid()
    assert grid.col("b", False) is None and grid.col("b", checked=False) is None
    for kind in (KeyError, NameError):
        with raises(kind, match="no column 'b'"):
            grid.col("b")
        with raises(kind, match="no column 'b'"):
            grid.col("b", True)
        with raises(kind):
            GridBuilder().set_col_meta("b", {})


def check_rows_cells_and_values() -> None:
    grid = (GridBuilder().add_col_names(["a", "b"])
            .add_row([1, "one"]).add_row([2, None]).add_row([3, "three"]).to_grid())
    rows = grid.rows()
    assert [row.cells() for row in rows] == [[1, "one"], [2, None], [3, "three"]]
    assert grid.first() is rows[0] and grid.get(1) is rows[1] and grid.get(-1) is rows[2]
    with raises(IndexError):
        grid.get(3)
    second, b = rows[1], grid.col("b")
    assert second.grid() is grid
    assert second.val(b) is None and second.val("a") == 2 and second.val(0) == 2
    assert grid.val(2, b) == "three" and grid.val(2, "a") == 3 and grid.val(2, 1) == "three"
    assert grid.val(0, 0) == 1 and grid.val(second, "a") == 2
    with raises(KeyError):
        second.val("c")
    with raises(IndexError):
        grid.val(0, 2)


def check_a_row_is_a_read_only_mapping() -> None:
    grid = GridBuilder().add_col_names(["a", "b"]).add_row([1, "x"]).to_grid()
    row = grid.first()
    assert isinstance(row, Mapping) and not isinstance(row, dict)
    assert row["a"] == 1 and row.get("c") is None and "b" in row and "c" not in row
    assert list(row) == ["a", "b"] and len(row) == 2 and dict(row) == {"a": 1, "b": "x"}
    assert row == {"a": 1, "b": "x"} and row != {"a": 1}
    with raises(KeyError):
        row["c"]
    with raises(TypeError):
        row["a"] = 2  # type: ignore[index]
    cells = row.cells()
    cells.append("changed")
    assert row.cells() == [1, "x"]


def check_a_row_of_the_wrong_length_names_its_index_and_both_counts() -> None:
    builder = GridBuilder().add_col_names(["a", "b", "c"]).add_row([1, 2, 3])
    with raises(ValueError, match=r"row 1 has 2 cells but the grid has 3 columns \(a, b, c\)"):
        builder.add_row([1, 2])
    with raises(ValueError, match=r"row 1 has 4 cells but the grid has 3 columns"):
        builder.add_row([1, 2, 3, 4])
    assert builder.to_grid().size() == 1  # the refused rows left nothing behind
    with raises(TypeError, match="list of names"):
        GridBuilder().add_col_names("abc")  # would be three columns a, b, c


def check_ref_id_and_dis_are_methods() -> None:
    from hxpy.haystack import Ref

    ref = Ref("p:demo:r:1", "Site One")
    assert ref.id() == "p:demo:r:1" and ref.dis() == "Site One"
    assert Ref("x").dis() is None and Ref(id="y", dis="Y").id() == "y"
    assert ref == Ref("p:demo:r:1") and str(ref) == "@p:demo:r:1"


def check_coord_from_str() -> None:
    from hxpy.haystack import Coord

    coord = Coord.from_str("C(37.55,-77.45)")
    assert coord == Coord(37.55, -77.45)
    assert Coord.from_str(str(Coord(-0.00001, 180.0))) == Coord(-0.00001, 180.0)
    for bad in ("C(91,0)", "C(1;2)", "37.55,-77.45", "C(1,2", "C(nan,0)", "C(1e400,0)",
                "C(1_0,0)", " C(1,2)"):
        with raises(ValueError):
            Coord.from_str(bad)
        assert Coord.from_str(bad, checked=False) is None


CHECKS: dict[str, Callable[[], None]] = {
    name: value for name, value in dict(globals()).items() if name.startswith("check_")}


def run_checks() -> dict[str, str]:
    """Run every check here; the failed ones, by name, each with its traceback."""
    failed = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:  # noqa: BLE001 (reported, by name, to the test that asked)
            failed[name] = traceback.format_exc()
    return failed
