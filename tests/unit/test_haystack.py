"""The Haystack value types and the Grid API, without the wire."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

import hxpy.haystack as haystack
from hxpy.haystack import (
    NA,
    Col,
    Coord,
    Grid,
    GridBuilder,
    Marker,
    Number,
    Ref,
    Remove,
    Symbol,
    Uri,
    XStr,
    is_tag_name,
)


def test_public_names() -> None:
    assert sorted(haystack.__all__) == sorted([
        "NA", "Col", "ColumnNotFound", "Coord", "Grid", "GridBuilder", "Marker", "Number",
        "Ref", "Remove", "Row", "RowLengthError", "Symbol", "Uri", "XStr", "is_tag_name"])
    for name in haystack.__all__:
        assert getattr(haystack, name).__doc__


@pytest.mark.parametrize(("cls", "text"), [(Marker, "M"), (NA, "NA"), (Remove, "R")])
def test_singletons(cls: type, text: str) -> None:
    value = cls()
    assert value is cls() and repr(value) == text
    assert copy.copy(value) is value and copy.deepcopy([value])[0] is value
    assert pickle.loads(pickle.dumps(value)) is value


def test_ref_is_equal_and_hashed_by_id() -> None:
    assert Ref("a", "Site A") == Ref("a") and hash(Ref("a", "x")) == hash(Ref("a"))
    assert Ref("a") != Ref("b") and Ref("a") != "a"
    assert repr(Ref("a", "A")) == "Ref('a', 'A')" and str(Ref("a")) == "@a"
    assert {Ref("a"): 1}[Ref("a", "dis")] == 1
    with pytest.raises(ValueError):
        Ref("")
    with pytest.raises(TypeError):
        Ref(1)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        Ref("a").id = "b"  # type: ignore[method-assign]


def test_number() -> None:
    assert Number(3) == 3 and Number(3) == 3.0 and hash(Number(3)) == hash(3)
    assert Number(3, "m") != 3 and Number(3, "m") == Number(3.0, "m")
    assert Number(math.nan, "s") == Number(math.nan, "s")
    assert hash(Number(math.nan, "s")) == hash(Number(float("nan"), "s"))
    assert Number(math.inf).val == math.inf and float(Number(2, "m")) == 2.0
    assert repr(Number(72.5, "°F")) == "Number(72.5, '°F')" and str(Number(72.5, "°F")) == "72.5°F"
    assert type(Number(1).val) is int and type(Number(1.0).val) is float
    for bad in (True, "1", None, 1j):
        with pytest.raises(TypeError):
            Number(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Number(1, 5)  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(Number(1, "m"))) == Number(1, "m")


def test_uri_coord_xstr_symbol() -> None:
    uri = Uri("http://x/")
    assert isinstance(uri, str) and uri == "http://x/" and repr(uri) == "Uri('http://x/')"
    assert Coord(37.5, -77.25) == Coord(37.5, -77.25) and str(Coord(1, 2)) == "C(1.0,2.0)"
    for lat, lng in ((91, 0), (0, -181), (math.nan, 0)):
        with pytest.raises(ValueError):
            Coord(lat, lng)
    assert XStr("Bin", "text/plain") == XStr("Bin", "text/plain") != XStr("Bin", "x")
    with pytest.raises(ValueError):
        XStr("bin", "x")
    assert Symbol("elec-meter") != "elec-meter" and str(Symbol("elec-meter")) == "^elec-meter"
    assert len({Coord(1, 2), Coord(1, 2), XStr("A", ""), XStr("A", ""), Symbol("s")}) == 3


@pytest.mark.parametrize(("name", "ok"), [
    ("siteRef", True), ("a", True), ("a_1B", True), ("Site", False), ("1a", False),
    ("a-b", False), ("", False), ("é", False), ("aé", False), ("a\n", False), (1, False),
])
def test_tag_names(name: object, ok: bool) -> None:
    assert is_tag_name(name) is ok


def make_grid() -> Grid:
    return (GridBuilder().set_meta({"dis": "Sites"})
            .add_col("id").add_col("area", {"unit": "ft²"})
            .add_row([Ref("a"), Number(1200, "ft²")])
            .add_row({"id": Ref("b")})
            .to_grid())


def test_grid_api() -> None:
    grid = make_grid()
    assert grid.meta() == {"dis": "Sites"}
    assert grid.cols() == [Col("id"), Col("area", {"unit": "ft²"})]
    assert grid.col_names() == ["id", "area"] and grid.col("area").meta() == {"unit": "ft²"}
    assert grid.has("id") and not grid.has("x") and grid.col("x", checked=False) is None
    with pytest.raises(KeyError):
        grid.col("x")
    assert len(grid) == grid.size() == 2
    assert grid.rows() == [{"id": Ref("a"), "area": Number(1200, "ft²")},
                         {"id": Ref("b"), "area": None}]
    assert grid.first() == grid.rows()[0] and grid.get(-1) == grid.rows()[1] == grid[1]
    assert list(grid) == grid.rows()
    assert grid.val(0, "area") == Number(1200, "ft²") and grid.val(grid.rows()[1], Col("id")) \
        == Ref("b")
    with pytest.raises(IndexError):
        grid.get(2)
    with pytest.raises(KeyError):
        grid.val(0, "x")
    assert Grid().first() is None and len(Grid()) == 0
    assert repr(grid) == "<Grid 2 rows × 2 cols [id, area]>"


def test_grid_constructor_takes_dict_or_list_rows() -> None:
    grid = Grid(meta={"m": Marker()}, rows=[{"a": 1}, {"b": 2}])
    assert grid.col_names() == ["a", "b"] and grid.rows() == [{"a": 1, "b": None},
                                                          {"a": None, "b": 2}]
    assert Grid(cols=["a", Col("b", {"x": 1})], rows=[[1, 2]]).rows() == [{"a": 1, "b": 2}]


def test_grid_equality_treats_nan_as_equal() -> None:
    assert Grid(rows=[{"a": math.nan}]) == Grid(rows=[{"a": math.nan}])
    assert Grid(rows=[{"a": 1}]) != Grid(rows=[{"a": 2}])
    assert Grid(rows=[{"a": 1}]) != Grid(meta={"x": 1}, rows=[{"a": 1}])


def test_builder_rules() -> None:
    with pytest.raises(ValueError, match="invalid column name 'Bad Name'"):
        GridBuilder().add_col("Bad Name")
    with pytest.raises(ValueError, match="duplicate column name 'a'"):
        GridBuilder().add_col("a").add_col("a")
    with pytest.raises(ValueError, match="unknown column 'b'"):
        GridBuilder().add_col("a").add_row({"b": 1})
    with pytest.raises(ValueError, match="row 0 has 2 cells but the grid has 1 column"):
        GridBuilder().add_col("a").add_row([1, 2])
    with pytest.raises(TypeError):
        GridBuilder().add_col("a").add_row("x")
    with pytest.raises(KeyError):
        GridBuilder().set_col_meta("a", {})
    with pytest.raises(ValueError):
        Grid(cols=["Nope"])


def test_builder_late_columns_and_snapshots() -> None:
    builder = GridBuilder().add_col("a").add_row([1])
    first = builder.to_grid()
    builder.add_col("b").add_row([2, 3])
    assert first.rows() == [{"a": 1}]
    assert builder.to_grid().rows() == [{"a": 1, "b": None}, {"a": 2, "b": 3}]
