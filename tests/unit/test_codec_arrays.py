"""The codec on numpy: ndarrays of every supported dtype, shape and order; numpy scalars."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hxpy import codec
from hxpy.codec import MarshalError, decode, encode

UNITS = ["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns"]
DTYPES = (
    ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16",
     "U3", "S2"]
    + [f"M8[{unit}]" for unit in UNITS] + [f"m8[{unit}]" for unit in UNITS]
)


def little(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


@st.composite
def arrays(draw: Any) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder(">")
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    array = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = array[::2]
    return array


def check_round_trip(array: np.ndarray) -> np.ndarray:
    back = decode(encode(array))
    assert isinstance(back, np.ndarray)
    assert back.dtype == little(array.dtype) and back.dtype.byteorder != ">"
    assert back.shape == array.shape
    # Bit for bit, so NaN payloads, NaT and -0.0 count too.
    expected = np.ascontiguousarray(array.astype(little(array.dtype)))
    assert np.ascontiguousarray(back).tobytes() == expected.tobytes()
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        assert back.flags.f_contiguous
    else:
        assert back.flags.c_contiguous
    assert back.flags.aligned
    return back


@given(arrays())
def test_arrays_round_trip_with_dtype_shape_and_order(array: np.ndarray) -> None:
    check_round_trip(array)


def test_fortran_order_is_kept_and_decoded_arrays_are_writable_copies() -> None:
    array = np.asfortranarray(np.arange(12, dtype="f8").reshape(3, 4))
    back = check_round_trip(array)
    assert back.flags.f_contiguous and not back.flags.c_contiguous
    back[0, 0] = 100.0
    assert array[0, 0] == 0.0


@pytest.mark.parametrize("order", ["C", "F"])
def test_large_arrays_travel_out_of_band_by_reference(order: str) -> None:
    array = np.asarray(np.arange(40_000, dtype="i4").reshape(200, 200), order=order)
    body, buffers = codec.encode_parts({"a": array})
    assert len(body) < 100 and [b.nbytes for b in buffers] == [array.nbytes]
    assert np.shares_memory(np.frombuffer(buffers[0], dtype="i4"), array)  # no copy
    received = [memoryview(bytearray(b)) for b in buffers]
    back = codec.decode(body, received)["a"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.flags.f_contiguous == (order == "F") and (back == array).all()
    assert np.shares_memory(back, np.frombuffer(received[0], dtype="u1"))  # used in place
    assert back.flags.writeable


def test_a_message_and_its_buffers_must_match() -> None:
    body, buffers = codec.encode_parts(np.zeros(100_000))
    with pytest.raises(codec.MarshalError, match="does not have"):
        codec.decode(body)
    with pytest.raises(codec.MarshalError, match="expected 800000"):
        codec.decode(body, [memoryview(bytearray(8))])
    with pytest.raises(codec.MarshalError, match="uses fewer"):
        codec.decode(body, buffers + buffers)
    assert codec.encode(np.zeros(100_000)) != body  # in band when no buffers are wanted


def test_zero_dim_and_empty_arrays() -> None:
    for array in (np.array(3.5), np.array(True), np.zeros((0,), "i8"), np.zeros((2, 0, 3), "c8"),
                  np.array("2020-01-01", "M8[D]")):
        check_round_trip(array)


def test_big_endian_input_is_swapped_to_little_endian() -> None:
    array = np.arange(5, dtype=">i4")
    back = check_round_trip(array)
    assert back.dtype.str == "<i4" and back.tolist() == [0, 1, 2, 3, 4]


def test_a_big_array_travels_as_raw_bytes() -> None:
    array = np.random.default_rng(0).random((1000, 1000))
    data = encode(array)
    assert array.nbytes < len(data) < array.nbytes + 64
    assert np.array_equal(decode(data), array)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_ndarray_subclasses_travel_as_plain_ndarray() -> None:
    back = decode(encode(np.asmatrix(np.eye(2))))
    assert type(back) is np.ndarray and back.tolist() == [[1.0, 0.0], [0.0, 1.0]]


SCALARS = [
    (np.int8(-3), -3), (np.uint64(2**64 - 1), 2**64 - 1), (np.float32(1.5), 1.5),
    (np.float16(0.5), 0.5), (np.float64(2.25), 2.25), (np.bool_(True), True),
    (np.str_("hé"), "hé"), (np.bytes_(b"ab"), b"ab"),
    (np.datetime64("2020-02-03"), dt.date(2020, 2, 3)),
    (np.datetime64("2020-02"), dt.date(2020, 2, 1)),
    (np.datetime64("2020-02-03T04:05:06.123456789"), dt.datetime(2020, 2, 3, 4, 5, 6, 123456)),
    (np.datetime64("NaT"), None),
]


@pytest.mark.parametrize(("value", "expected"), SCALARS, ids=[repr(v) for v, _ in SCALARS])
def test_numpy_scalars_become_python_values(value: Any, expected: Any) -> None:
    back = decode(encode(value))
    assert back == expected and type(back) is type(expected)


REFUSED = [
    (np.array([1, "a"], dtype=object), "x: ndarray of dtype object is not marshallable"),
    (np.zeros(2, dtype=[("a", "i4")]), "x: ndarray of dtype [('a', '<i4')] is not marshallable"),
    ({"m": np.ma.masked_array([1, 2], [0, 1])},
     "x['m']: MaskedArray is not marshallable (send .filled() and .mask separately)"),
    (np.complex128(1j), "x: complex128 is not marshallable"),
    (np.timedelta64(1, "s"), "x: timedelta64 is not marshallable"),
    (np.datetime64("10000-01-01"), "x: datetime64 10000-01-01 is outside the years 1..9999"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_refusals(value: Any, message: str) -> None:
    with pytest.raises(MarshalError) as caught:
        encode(value, where="x")
    assert str(caught.value) == message


def test_long_double_is_refused_where_it_exists() -> None:
    if np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("long double is double on this platform")
    with pytest.raises(MarshalError, match="no portable layout"):
        encode(np.zeros(2, np.longdouble), where="x")


def test_decoder_refuses_object_dtype_and_size_mismatch() -> None:
    import msgpack

    def ndarray_bytes(header: list[Any], raw: bytes) -> bytes:
        packed = msgpack.packb(header)
        start = -(-(4 + len(packed)) // 16) * 16
        payload = len(packed).to_bytes(4, "little") + packed + bytes(start - 4 - len(packed))
        return msgpack.packb(msgpack.ExtType(14, payload + raw))

    assert decode(ndarray_bytes(["<i2", [2], "C"], b"\1\0\2\0")).tolist() == [1, 2]
    for header, raw in ((["|O", [1], "C"], bytes(8)), (["<i2", [3], "C"], b"\1\0\2\0"),
                        ([">i2", [2], "C"], b"\0\1\0\2"), (["<i2", [-2], "C"], b""),
                        (["<i2", [2], "X"], b"\1\0\2\0")):
        with pytest.raises(MarshalError):
            decode(ndarray_bytes(header, raw))
