"""The codec on Haystack scalars, nested dicts and lists, and row-built grids.

Round trips are property tests; a few ext encodings are pinned byte for byte; every refusal is
a MarshalError that names the type and the path.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import math
import struct
import subprocess
import sys
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hxpy import codec
from hxpy.codec import ExtCode, MarshalError, decode, encode
from hxpy.haystack import (
    NA,
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
)

CONTAINER = Path(__file__).resolve().parents[2] / "container"


# -- a strict equality: same types, same bits, same zones -------------------------------------


def _zone_id(value: dt.datetime) -> Any:
    tz = value.tzinfo
    return getattr(tz, "key", None) or (tz.tzname(value) if tz else None)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type; NaN equals NaN; datetimes keep wall time and zone."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dt.datetime):
        return (a == b and a.replace(tzinfo=None, fold=0) == b.replace(tzinfo=None, fold=0)
                and a.utcoffset() == b.utcoffset() and _zone_id(a) == _zone_id(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, Mapping):  # a dict, or a grid's Row
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, Number):
        return same(a.val, b.val) and a.unit == b.unit
    if isinstance(a, Ref):
        return a.id() == b.id() and a.dis() == b.dis()
    if isinstance(a, Grid):
        return (same(a.meta(), b.meta()) and a.col_names() == b.col_names()
                and all(same(x.meta(), y.meta()) for x, y in zip(a.cols(), b.cols()))
                and same(a.rows(), b.rows()))
    return bool(a == b)


def as_sent(value: Any) -> Any:
    """What ``value`` decodes as: tuples arrive as lists."""
    if isinstance(value, (list, tuple)):
        return [as_sent(item) for item in value]
    if isinstance(value, dict):
        return {key: as_sent(item) for key, item in value.items()}
    if isinstance(value, Grid):
        builder = GridBuilder().set_meta(as_sent(value.meta()))
        for col in value.cols():
            builder.add_col(col.name(), as_sent(col.meta()))
        for row in value.rows():
            builder.add_row(as_sent(dict(row)))
        return builder.to_grid()
    return value


def roundtrip(value: Any) -> Any:
    return decode(encode(value, where="x"))


# -- strategies -------------------------------------------------------------------------------

tag_names = st.from_regex(r"[a-z][A-Za-z0-9_]{0,6}", fullmatch=True)
int64ish = st.integers(-(2**63), 2**64 - 1)
fixed_zones = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59),
                  max_value=dt.timedelta(hours=23, minutes=59)),
) | st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-14), max_value=dt.timedelta(hours=14)),
    st.text(min_size=1, max_size=5),
)
datetimes = (st.datetimes() | st.datetimes(timezones=st.timezones())
             | st.datetimes(timezones=fixed_zones))
scalars = st.one_of(
    st.none(), st.booleans(), int64ish, st.floats(), st.text(), st.binary(),
    st.sampled_from([Marker(), NA(), Remove()]),
    st.builds(Ref, st.text(min_size=1), st.none() | st.text()),
    st.builds(Uri, st.text()),
    st.builds(Number, int64ish | st.floats(), st.none() | st.text()),
    st.builds(Coord, st.floats(-90, 90), st.floats(-180, 180)),
    st.builds(XStr, st.from_regex(r"[A-Z][A-Za-z0-9]{0,5}", fullmatch=True), st.text()),
    st.builds(Symbol, st.text(min_size=1)),
    st.dates(), st.times(), datetimes,
)


@st.composite
def grids(draw: Any, cells: st.SearchStrategy[Any]) -> Grid:
    names = draw(st.lists(tag_names, max_size=4, unique=True))
    builder = GridBuilder().set_meta(draw(st.dictionaries(st.text(), cells, max_size=2)))
    for name in names:
        builder.add_col(name, draw(st.dictionaries(st.text(), cells, max_size=2)))
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            builder.add_row(draw(st.lists(cells, min_size=len(names), max_size=len(names))))
        else:
            keys = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
            builder.add_row({key: draw(cells) for key in keys})
    return builder.to_grid()


values = st.recursive(
    scalars,
    lambda children: (st.lists(children, max_size=4)
                      | st.tuples(children, children)
                      | st.dictionaries(st.text(), children, max_size=4)
                      | grids(children)),
    max_leaves=12,
)


# -- round trips ------------------------------------------------------------------------------


@given(scalars)
def test_every_scalar_round_trips(value: Any) -> None:
    assert same(roundtrip(value), value)


@settings(max_examples=300)
@given(values)
def test_nested_values_round_trip(value: Any) -> None:
    assert same(roundtrip(value), as_sent(value))


@given(grids(scalars))
def test_grids_round_trip_with_their_api(grid: Grid) -> None:
    back = roundtrip(grid)
    assert isinstance(back, Grid)
    assert back == grid
    assert back.col_names() == grid.col_names() and len(back) == len(grid) == back.size()
    assert back.cols() == grid.cols()
    assert same(back.rows(), grid.rows())
    assert same(list(back), grid.rows())
    for index in range(len(grid)):
        assert same(back.get(index), grid.rows()[index])
        for name in grid.col_names():
            assert same(back.val(index, name), grid.rows()[index][name])


def test_datetime_keeps_zone_name_offset_and_fold() -> None:
    new_york = zoneinfo.ZoneInfo("America/New_York")
    first = dt.datetime(2021, 11, 7, 1, 30, tzinfo=new_york)
    second = first.replace(fold=1)
    for value in (first, second):
        back = roundtrip(value)
        assert back.tzinfo is new_york and back.fold == value.fold
        assert back.utcoffset() == value.utcoffset()
    named = dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5), "PKT"))
    assert roundtrip(named).tzname() == "PKT"
    assert roundtrip(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)).tzinfo is dt.timezone.utc
    assert roundtrip(dt.datetime(2020, 1, 1, 12)).tzinfo is None


def test_unknown_zone_name_falls_back_to_the_offset() -> None:
    payload = codec.msgpack.packb([0, 3_600_000_000, "Nowhere/Atlantis"])
    value = decode(codec.msgpack.packb(codec.msgpack.ExtType(ExtCode.DATETIME, payload)))
    assert value.utcoffset() == dt.timedelta(hours=1)
    assert value.replace(tzinfo=None) == dt.datetime(1970, 1, 1)


def test_python_subclasses_travel_as_their_base() -> None:
    class Color(enum.IntEnum):
        RED = 1

    ordered = collections.OrderedDict(a=1)
    point = collections.namedtuple("point", "x y")(1, 2)
    assert same(roundtrip([Color.RED, ordered, point]), [1, {"a": 1}, [1, 2]])
    assert same(roundtrip(bytearray(b"ab")), b"ab")


# -- golden bytes -----------------------------------------------------------------------------

GOLDEN = [
    (Marker(), "c7 00 01"),
    (NA(), "c7 00 02"),
    (Remove(), "c7 00 03"),
    (Ref("p:demo", "Demo"), "c7 0d 04 92 a6 70 3a 64 65 6d 6f a4 44 65 6d 6f"),
    (Ref("a"), "c7 03 04 91 a1 61"),
    (Number(72.5, "°F"), "c7 0e 06 92 cb 40 52 20 00 00 00 00 00 a3 c2 b0 46"),
    (Number(3, "m"), "d6 06 92 03 a1 6d"),
    (Uri("http://a/b"), "c7 0a 05 68 74 74 70 3a 2f 2f 61 2f 62"),
    (dt.date(2024, 1, 31), "d6 07 e8 07 01 1f"),
    (dt.time(13, 45, 30, 123), "c7 07 08 0d 2d 1e 7b 00 00 00"),
    (dt.datetime(2024, 1, 31, 13, 45, 30), "c7 0a 09 91 cf 00 06 10 3e 17 96 32 80"),
    (Coord(37.5, -77.25), "d8 0a 00 00 00 00 00 c0 42 40 00 00 00 00 00 50 53 c0"),
    (GridBuilder().add_col("a").add_row([1]).to_grid(),
     "c7 32 0d 83 a4 6d 65 74 61 80 a4 72 6f 77 73 01 a4 63 6f 6c 73 91 84 a4 6e 61 6d 65 a1 61 "
     "a4 6d 65 74 61 80 a3 65 6e 63 a4 6c 69 73 74 a5 63 65 6c 6c 73 91 01"),
]


@pytest.mark.parametrize(("value", "golden"), GOLDEN, ids=[repr(v) for v, _ in GOLDEN])
def test_golden_bytes(value: Any, golden: str) -> None:
    assert encode(value).hex(" ") == golden
    assert same(decode(bytes.fromhex(golden)), value)


def test_ext_codes_are_stable() -> None:
    assert {code.name: int(code) for code in ExtCode} == {
        "MARKER": 1, "NA": 2, "REMOVE": 3, "REF": 4, "URI": 5, "NUMBER": 6, "DATE": 7,
        "TIME": 8, "DATETIME": 9, "COORD": 10, "XSTR": 11, "SYMBOL": 12, "GRID": 13,
        "NDARRAY": 14, "TUPLE": 15,
    }


# -- refusals ---------------------------------------------------------------------------------


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


REFUSED = [
    ({"rows": [0, 1, 2, {1}]}, "x['rows'][3]: set is not marshallable"),
    (object(), "x: object is not marshallable"),
    (len, "x: builtin_function_or_method is not marshallable"),
    ([lambda: 0], "x[0]: function is not marshallable"),
    ({1: "a"}, "x: dict key 1 is int, not str"),
    ({"a": [{"b": {2: 3}}]}, "x['a'][0]['b']: dict key 2 is int, not str"),
    ({"a": {b"k": 1}}, "x['a']: dict key b'k' is bytes, not str"),
    ({"u": {Uri("k"): 1}}, "x['u']: dict key Uri('k') is Uri, not str"),
    (2**64, "x: int does not fit in 64 bits"),
    ([-(2**63) - 1], "x[0]: int does not fit in 64 bits"),
    ({"n": Number(2**70, "m")}, "x['n'].val: int does not fit in 64 bits"),
    (1j, "x: complex is not marshallable"),
    (dt.timedelta(1), "x: timedelta is not marshallable"),
    (dt.time(1, tzinfo=dt.timezone.utc),
     "x: time with a tzinfo is not marshallable (a Haystack Time has no zone)"),
    (Grid(rows=[{"a": 1}, {"a": 2, "b": {3}}]), "x.rows()[1]['b']: set is not marshallable"),
    (Grid(meta={"m": [object()]}, cols=["a"]), "x.meta()['m'][0]: object is not marshallable"),
    (GridBuilder().add_col("a", {"k": {1: 2}}).to_grid(),
     "x.col('a').meta()['k']: dict key 1 is int, not str"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_refusals_name_type_and_path(value: Any, message: str) -> None:
    with pytest.raises(MarshalError) as caught:
        encode(value, where="x")
    assert str(caught.value) == message


def test_cycles_are_refused_not_looped_on() -> None:
    with pytest.raises(MarshalError, match=r"nested more than 511 levels deep"):
        encode({"a": _cycle()}, where="x")


def test_locate_unmarshallable_finds_nothing_in_good_values() -> None:
    assert codec.locate_unmarshallable({"a": [1, Marker(), Grid(rows=[{"b": 1}])]}) is None


@pytest.mark.parametrize("data", [b"\xc1", b"\xc7\x00\x63", b"\xc7\x03\x04\x91\xa1", b"\x92\x01"])
def test_bad_bytes_are_a_marshal_error(data: bytes) -> None:
    with pytest.raises(MarshalError):
        decode(data)


def test_malformed_grid_payloads_are_refused() -> None:
    def grid_bytes(header: Any) -> bytes:
        payload = codec.msgpack.packb(header)
        return codec.msgpack.packb(codec.msgpack.ExtType(ExtCode.GRID, payload))

    good = {"meta": {}, "rows": 1, "cols": [{"name": "a", "meta": {}, "enc": "list",
                                              "cells": [1]}]}
    assert decode(grid_bytes(good)).rows() == [{"a": 1}]
    for broken in ({**good, "rows": 2}, {**good, "cols": [{"name": "a", "enc": "x"}]},
                   {**good, "cols": good["cols"] * 2}, {"rows": 1}, [1]):
        with pytest.raises(MarshalError):
            decode(grid_bytes(broken))


def test_grids_nested_past_the_limit_are_refused_and_within_it_come_back() -> None:
    def nested(grids: int) -> Grid:
        grid = Grid(rows=[{"a": 1}])
        for _ in range(grids - 1):
            grid = Grid(rows=[{"g": grid}])
        return grid

    deepest = nested(codec.MAX_EXT_DEPTH)
    assert decode(encode(deepest)) == deepest
    with pytest.raises(MarshalError, match=f"nested more than {codec.MAX_EXT_DEPTH} deep"):
        decode(encode(nested(codec.MAX_EXT_DEPTH + 1)))
    assert decode(encode({"g": nested(2)}))["g"] == nested(2)  # the count starts again


# -- the in-container server must start small ------------------------------------------------


def test_import_codec_loads_neither_numpy_nor_pandas() -> None:
    script = (
        "import sys, hxpy.codec as c, hxpy.haystack as h\n"
        "g = h.Grid(rows=[{'a': 1, 'b': h.Marker()}])\n"
        "assert c.decode(c.encode({'g': g, 'n': h.Number(1, 'm')}))['g'] == g\n"
        "loaded = {'numpy', 'pandas'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True,
                   env={"PYTHONPATH": str(CONTAINER)})
