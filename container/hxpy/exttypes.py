"""The Haystack table as msgpack ext types: an encoder and a decoder for each ext code.

Imported by :mod:`hxpy.codec`, which is how it gets registered. The payload layouts are
specified in ``docs/marshalling.md``; every fixed-width binary field is little-endian. numpy and
pandas are touched only through values that already exist, so this module imports neither.
"""

from __future__ import annotations

import datetime as _dt
import struct
import sys

import msgpack

from .codec import (
    Unmarshallable,
    ext_decoder,
    ext_encoder,
    ext_inspector,
    family_encoder,
    out_of_band,
    pack_payload,
    take_buffer,
    unpack_payload,
)
from .columns import CategoryColumn, Column, ListColumn, column_from_wire, dtype_problem
from .extcodes import ExtCode
from .frames import column_from_pandas, column_name_problems, pandas_from_wire, pandas_to_wire
from .grid import Col, Grid, Row
from .values import NA, Coord, Marker, Number, Ref, Remove, Symbol, Uri, XStr
from .zones import fixed_zone, named_zone, zone_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable, Optional

__all__ = ["decode_ndarray", "encode_ndarray"]

_DATE = struct.Struct("<HBB")
_TIME = struct.Struct("<BBBI")
_COORD = struct.Struct("<dd")
_HEADER_LEN = struct.Struct("<I")
_ALIGN = 16  # raw array data starts at a multiple of this, so decoded arrays are aligned


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True)


# -- Marker, NA, Remove: an empty payload -----------------------------------------------------

def _empty(value: Any) -> bytes:
    return b""


def _singleton(cls: type) -> Callable[[bytes], Any]:
    return lambda data: cls()


for _cls, _code in ((Marker, ExtCode.MARKER), (NA, ExtCode.NA), (Remove, ExtCode.REMOVE)):
    ext_encoder(_cls, _code)(_empty)
    ext_decoder(_code)(_singleton(_cls))


# -- Ref, Uri, Number, Coord, XStr, Symbol ----------------------------------------------------


@ext_encoder(Ref, ExtCode.REF)
def _encode_ref(ref: Ref) -> bytes:
    return _pack([ref.id()] if ref.dis() is None else [ref.id(), ref.dis()])


@ext_decoder(ExtCode.REF)
def _decode_ref(data: bytes) -> Ref:
    return Ref(*_unpack(data))


@ext_encoder(Uri, ExtCode.URI)
def _encode_uri(uri: Uri) -> bytes:
    return uri.encode("utf-8")


@ext_decoder(ExtCode.URI)
def _decode_uri(data: bytes) -> Uri:
    return Uri(data.decode("utf-8"))


@ext_encoder(Number, ExtCode.NUMBER)
def _encode_number(number: Number) -> bytes:
    return _pack([number.val] if number.unit is None else [number.val, number.unit])


@ext_decoder(ExtCode.NUMBER)
def _decode_number(data: bytes) -> Number:
    return Number(*_unpack(data))


@ext_encoder(Coord, ExtCode.COORD)
def _encode_coord(coord: Coord) -> bytes:
    return _COORD.pack(coord.lat, coord.lng)


@ext_decoder(ExtCode.COORD)
def _decode_coord(data: bytes) -> Coord:
    return Coord(*_COORD.unpack(data))


@ext_encoder(XStr, ExtCode.XSTR)
def _encode_xstr(xstr: XStr) -> bytes:
    return _pack([xstr.type, xstr.val])


@ext_decoder(ExtCode.XSTR)
def _decode_xstr(data: bytes) -> XStr:
    return XStr(*_unpack(data))


@ext_encoder(Symbol, ExtCode.SYMBOL)
def _encode_symbol(symbol: Symbol) -> bytes:
    return symbol.val.encode("utf-8")


@ext_decoder(ExtCode.SYMBOL)
def _decode_symbol(data: bytes) -> Symbol:
    return Symbol(data.decode("utf-8"))


# -- Date, Time, DateTime ---------------------------------------------------------------------


@ext_encoder(_dt.date, ExtCode.DATE)
def _encode_date(value: _dt.date) -> bytes:
    return _DATE.pack(value.year, value.month, value.day)


@ext_decoder(ExtCode.DATE)
def _decode_date(data: bytes) -> _dt.date:
    return _dt.date(*_DATE.unpack(data))


@ext_encoder(_dt.time, ExtCode.TIME)
def _encode_time(value: _dt.time) -> bytes:
    if value.tzinfo is not None:
        raise Unmarshallable(value, "time with a tzinfo is not marshallable "
                                    "(a Haystack Time has no zone)")
    return _TIME.pack(value.hour, value.minute, value.second, value.microsecond)


@ext_decoder(ExtCode.TIME)
def _decode_time(data: bytes) -> _dt.time:
    return _dt.time(*_TIME.unpack(data))


_EPOCH = _dt.datetime(1970, 1, 1)
_US = _dt.timedelta(microseconds=1)
_UTC = _dt.timezone.utc


@ext_encoder(_dt.datetime, ExtCode.DATETIME)
def _encode_datetime(value: _dt.datetime) -> bytes:
    wall_us = (value.replace(tzinfo=None) - _EPOCH) // _US
    offset = value.utcoffset()
    if offset is None:
        return _pack([wall_us])
    offset_us = offset // _US
    tz = value.tzinfo
    name = zone_name(tz)
    if name is not None:
        return _pack([wall_us, offset_us, name])
    if isinstance(tz, _dt.timezone):
        label = tz.tzname(None)
        if label != _dt.timezone(offset).tzname(None):
            return _pack([wall_us, offset_us, None, label])
    return _pack([wall_us, offset_us])


@ext_decoder(ExtCode.DATETIME)
def _decode_datetime(data: bytes) -> _dt.datetime:
    parts = _unpack(data)
    wall = _EPOCH + _dt.timedelta(microseconds=parts[0])
    if len(parts) == 1:
        return wall
    offset_us = parts[1]
    name = parts[2] if len(parts) > 2 else None
    zone = named_zone(name) if name is not None else None
    if zone is not None:
        offset = _dt.timedelta(microseconds=offset_us)
        value = wall.replace(tzinfo=zone)
        if value.utcoffset() != offset:  # the second of two equal wall times
            value = value.replace(fold=1)
            if value.utcoffset() != offset:
                # This side's rules for the zone differ from the sender's: keep the instant.
                instant = wall - offset
                value = instant.replace(tzinfo=_UTC).astimezone(zone)
        return value
    label = parts[3] if len(parts) > 3 else None
    return wall.replace(tzinfo=fixed_zone(offset_us, label))


# -- numpy ------------------------------------------------------------------------------------


def _numpy_type(name: str) -> Callable[[type], bool]:
    def test(cls: type) -> bool:
        numpy = sys.modules.get("numpy")
        return numpy is not None and issubclass(cls, getattr(numpy, name))

    return test


def encode_ndarray(array: Any) -> bytes:
    """The NDARRAY payload of ``array``: header length, msgpack header, then either padding and
    the raw bytes, or nothing when the raw bytes went out of band.

    Raises:
        Unmarshallable: the dtype has no portable layout (object, structured, float128...).
    """
    numpy = sys.modules["numpy"]
    dtype = array.dtype
    problem = dtype_problem(dtype)
    if problem is not None:
        raise Unmarshallable(array, problem)
    if not dtype.isnative or dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("<"), order="K")
    if array.flags.c_contiguous:
        order = "C"
    elif array.flags.f_contiguous:
        order = "F"
    else:
        array, order = numpy.ascontiguousarray(array), "C"
    fields: list[Any] = [array.dtype.str, list(array.shape), order]
    raw = memoryview(array.reshape(-1, order=order).view(numpy.uint8))
    if out_of_band(raw):
        header = _pack(fields + [True])
        return _HEADER_LEN.pack(len(header)) + header
    header = _pack(fields)
    start = -(-(_HEADER_LEN.size + len(header)) // _ALIGN) * _ALIGN
    padding = bytes(start - _HEADER_LEN.size - len(header))
    return b"".join((_HEADER_LEN.pack(len(header)), header, padding, raw))


def decode_ndarray(data: bytes) -> Any:
    """The array in an NDARRAY payload, writable. Out-of-band data is used in place; in-band
    data is copied once, out of the payload.

    Raises:
        ValueError: the payload is malformed or has a refused dtype.
    """
    import numpy

    (header_len,) = _HEADER_LEN.unpack_from(data)
    fields = _unpack(data[_HEADER_LEN.size:_HEADER_LEN.size + header_len])
    if not isinstance(fields, list) or len(fields) not in (3, 4):
        raise ValueError(f"bad ndarray header {fields!r}")
    dtype_str, shape, order = fields[:3]
    if not isinstance(dtype_str, str):
        raise ValueError(f"bad ndarray dtype {dtype_str!r}")
    dtype = numpy.dtype(dtype_str)
    problem = dtype_problem(dtype)
    if problem is not None or dtype.byteorder == ">" or order not in ("C", "F"):
        raise ValueError(problem or f"bad ndarray header {dtype_str!r} {order!r}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad ndarray shape {shape!r}")
    count = 1
    for n in shape:
        count *= n
    if len(fields) == 4:
        flat = numpy.frombuffer(take_buffer(count * dtype.itemsize), dtype=dtype, count=count)
        return flat.reshape(shape, order=order)
    start = -(-(_HEADER_LEN.size + header_len) // _ALIGN) * _ALIGN
    if len(data) - start != count * dtype.itemsize:
        raise ValueError(f"ndarray payload has {len(data) - start} bytes, expected "
                         f"{count * dtype.itemsize}")
    flat = numpy.frombuffer(bytearray(memoryview(data)[start:]), dtype=dtype, count=count)
    return flat.reshape(shape, order=order)


ext_decoder(ExtCode.NDARRAY)(decode_ndarray)


@family_encoder(_numpy_type("ndarray"))
def _convert_ndarray(array: Any) -> msgpack.ExtType:
    if type(array).__module__.startswith("numpy.ma"):
        raise Unmarshallable(array, "MaskedArray is not marshallable (send .filled() and "
                                    ".mask separately)")
    if type(array) is not sys.modules["numpy"].ndarray:  # matrix, memmap: keep the data only
        array = sys.modules["numpy"].asarray(array)
    return msgpack.ExtType(int(ExtCode.NDARRAY), encode_ndarray(array))


def _datetime64(value: Any) -> Any:
    numpy = sys.modules["numpy"]
    if numpy.isnat(value):
        return None
    unit = numpy.datetime_data(value.dtype)[0]
    day = unit in ("Y", "M", "W", "D")
    python = value.astype("M8[D]" if day else "M8[us]").item()
    if not isinstance(python, _dt.date):
        raise Unmarshallable(value, f"datetime64 {value} is outside the years 1..9999")
    if day:
        return msgpack.ExtType(int(ExtCode.DATE), _encode_date(python))
    return msgpack.ExtType(int(ExtCode.DATETIME), _encode_datetime(python))


@family_encoder(_numpy_type("generic"))
def _convert_numpy_scalar(value: Any) -> Any:
    kind = value.dtype.kind
    if kind == "b":
        return bool(value)
    if kind in "iu":
        return int(value)
    if kind == "f":
        return float(value)
    if kind == "U":
        return str(value)
    if kind == "S":
        return bytes(value)
    if kind == "M":
        return _datetime64(value)
    raise Unmarshallable(value)


# -- pandas -----------------------------------------------------------------------------------


def _pandas_type(get: Callable[[Any], type]) -> Callable[[type], bool]:
    def test(cls: type) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and issubclass(cls, get(pandas))

    return test


def _grid_ext(grid: Grid) -> msgpack.ExtType:
    return msgpack.ExtType(int(ExtCode.GRID), _encode_grid(grid))


family_encoder(_pandas_type(lambda pd: type(pd.NaT)))(lambda value: None)
family_encoder(_pandas_type(lambda pd: type(pd.NA)))(lambda value: None)
family_encoder(_pandas_type(lambda pd: pd.DataFrame))(
    lambda df: _grid_ext(Grid.from_dataframe(df)))
family_encoder(_pandas_type(lambda pd: pd.Series))(
    lambda series: _grid_ext(Grid._from_series(series)))
family_encoder(_pandas_type(lambda pd: pd.Timestamp))(
    lambda stamp: msgpack.ExtType(int(ExtCode.DATETIME),
                                  _encode_datetime(stamp.to_pydatetime(warn=False))))


# A row travels as the dict it reads as (and comes back as one): it is a view of its grid.
family_encoder(lambda cls: issubclass(cls, Row))(lambda row: dict(row.items()))


# -- Grid -------------------------------------------------------------------------------------


@ext_encoder(Grid, ExtCode.GRID)
def _encode_grid(grid: Grid) -> bytes:
    cols = []
    for col, column in zip(grid._cols, grid._columns):
        wire = {"name": col.name(), "meta": col.meta()}
        wire.update(column.to_wire())
        cols.append(wire)
    header: dict[str, Any] = {"meta": grid._meta, "rows": grid._size, "cols": cols}
    if grid._pandas:
        header["pandas"] = pandas_to_wire(grid._pandas)
    return pack_payload(header)


@ext_decoder(ExtCode.GRID)
def _decode_grid(data: bytes) -> Grid:
    header = unpack_payload(data)
    if not isinstance(header, dict):
        raise ValueError("a grid must be a map")
    meta, size, wires = header.get("meta"), header.get("rows"), header.get("cols")
    if not isinstance(meta, dict) or type(size) is not int or size < 0 \
            or not isinstance(wires, list):
        raise ValueError("a grid needs 'meta' (map), 'rows' (int) and 'cols' (list)")
    cols, columns, names = [], [], set()
    for wire in wires:
        if not isinstance(wire, dict):
            raise ValueError("a grid column must be a map")
        name, col_meta = wire.get("name"), wire.get("meta", {})
        if not isinstance(name, str) or name in names or not isinstance(col_meta, dict):
            raise ValueError(f"bad or duplicate grid column {name!r}")
        names.add(name)
        cols.append(Col(name, col_meta))
        columns.append(column_from_wire(wire, size))
    pandas = pandas_from_wire(header["pandas"], size) if "pandas" in header else None
    return Grid._from_columns(meta, cols, columns, size, pandas)


# -- where an encode failed: looking inside grids, frames and numbers -------------------------

if TYPE_CHECKING:
    Members = Iterator[tuple[Any, str]]


def _cells(column: Column, around: tuple[str, str], categories_path: str) -> Members:
    """The cells of a list column (or the categories of a category column), each with its
    path: ``around[0] + index + around[1]``. Array columns are raw buffers: nothing inside
    them can fail."""
    before, after = around
    if isinstance(column, ListColumn):
        for index, value in enumerate(column.values):
            yield value, f"{before}{index}{after}"
    elif isinstance(column, CategoryColumn):
        yield from _cells(column.categories, (f"{categories_path}[", "]"), "")


def _grid_members(grid: Grid, path: str) -> Members:
    yield grid._meta, f"{path}.meta()"
    for col, column in zip(grid._cols, grid._columns):
        name = col.name()
        yield col.meta(), f"{path}.col({name!r}).meta()"
        yield from _cells(column, (f"{path}.rows()[", f"][{name!r}]"),
                          f"{path}.col({name!r}) categories")
    for key, value in (grid._pandas or {}).items():
        if key != "index":
            yield value, f"{path} (pandas {key})"


@ext_inspector(lambda cls: issubclass(cls, Row))
def _inspect_row(row: Row, path: str) -> tuple[Optional[str], Optional[Members]]:
    return None, ((value, f"{path}[{name!r}]") for name, value in row.items())


@ext_inspector(lambda cls: issubclass(cls, Grid))
def _inspect_grid(grid: Grid, path: str) -> tuple[Optional[str], Optional[Members]]:
    return None, _grid_members(grid, path)


def _pandas_column(series: Any, path: str, around: tuple[str, str]) -> Members:
    try:
        column = column_from_pandas(series)
    except ValueError as exc:
        yield Unmarshallable(series, str(exc)), path
        return
    yield from _cells(column, around, f"{path}.cat.categories")


def _index_members(index: Any, path: str) -> Members:
    pandas = sys.modules["pandas"]
    if isinstance(index, pandas.MultiIndex):
        for level, name in enumerate(index.names):
            yield name, f"{path}.names[{level}]"
            level_path = f"{path}.get_level_values({level})"
            yield from _pandas_column(index.get_level_values(level), level_path,
                                      (f"{level_path}[", "]"))
    else:
        yield index.name, f"{path}.name"
        yield from _pandas_column(index, path, (f"{path}[", "]"))


def _frame_members(df: Any, path: str) -> Members:
    problems = column_name_problems(df.columns)
    for position, reason in problems:
        yield Unmarshallable(df, reason), f"{path}.columns[{position}]"
    if problems:
        return
    yield df.columns.name, f"{path}.columns.name"
    yield from _index_members(df.index, f"{path}.index")
    for position, name in enumerate(df.columns):
        column_path = f"{path}[{name!r}]"
        yield from _pandas_column(df.iloc[:, position], column_path,
                                  (f"{column_path}.iloc[", "]"))


def _series_members(series: Any, path: str) -> Members:
    yield series.name, f"{path}.name"
    yield from _index_members(series.index, f"{path}.index")
    yield from _pandas_column(series, path, (f"{path}.iloc[", "]"))


@ext_inspector(_pandas_type(lambda pd: pd.DataFrame))
def _inspect_frame(df: Any, path: str) -> tuple[Optional[str], Optional[Members]]:
    return None, _frame_members(df, path)


@ext_inspector(_pandas_type(lambda pd: pd.Series))
def _inspect_series(series: Any, path: str) -> tuple[Optional[str], Optional[Members]]:
    return None, _series_members(series, path)


@ext_inspector(lambda cls: issubclass(cls, Number))
def _inspect_number(number: Number, path: str) -> tuple[Optional[str], Optional[Members]]:
    return None, iter([(number.val, f"{path}.val")])

