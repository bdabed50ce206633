"""Rows about moving data: a large ndarray and a DataFrame as a Grid."""

from __future__ import annotations

from typing import Any

import pyhost
from benchmarks.bench import MB, Bench, perf_counter, row
from benchmarks.containers import echo_once
from benchmarks.report import Baseline, Result, Target, Unavailable


@row("ndarray_roundtrip", issue="3")
def ndarray_roundtrip(bench: Bench) -> list[Result]:
    """``define("m", arr).eval("m")`` of a 1000x1000 float64 array: 8 MB each way."""
    import numpy as np

    from hxpy import codec

    try:
        codec.encode(np.zeros((2, 2)))
    except codec.MarshalError as exc:
        raise Unavailable(f"ndarray codec not available: {exc}") from None
    warmup, n = 2, bench.n(20, 8)
    array = np.random.default_rng(0).random((1000, 1000))
    moved = 2 * array.nbytes / MB
    rates = []
    with bench.session() as session:
        try:
            back = session.define("m", np.zeros((2, 2))).eval("m")  # numpy loads in the server
        except (pyhost.MarshalError, pyhost.ProtocolError, pyhost.PythonError) as exc:
            raise Unavailable(f"the session server cannot round-trip an ndarray (stale image? "
                              f"`pyhost image build`): {exc}") from None
        for index in range(warmup + n):
            started = perf_counter()
            back = session.define("m", array).eval("m")
            elapsed = perf_counter() - started
            if index == 0 and not (isinstance(back, np.ndarray) and np.array_equal(back, array)):
                raise AssertionError(f"the array came back as {type(back).__name__}, changed")
            if index >= warmup:
                rates.append(moved / elapsed)
    block = array.tobytes()
    into = memoryview(bytearray(len(block)))
    floor = []
    sock = bench.echo.connect(len(block))
    try:
        for index in range(warmup + n):
            started = perf_counter()
            echo_once(sock, block, into)
            elapsed = perf_counter() - started
            if index >= warmup:
                floor.append(2 * len(block) / MB / elapsed)
    finally:
        sock.close()
    return [Result("ndarray_roundtrip", "MB/s", rates, higher_is_better=True,
                   target=Target(2000, higher_is_better=True),
                   baseline=Baseline("raw 8 MB echo each way over the Unix socket (floor); MB/s",
                                     tuple(floor)),
                   note="MB/s = 2 x 8 MB / (define + eval) time")]


@row("grid_table", issue="3")
def grid_table(bench: Bench) -> list[Result]:
    """1,000,000 rows x 5 columns: DataFrame -> Grid -> session -> Grid -> DataFrame."""
    try:
        from hxpy import haystack
    except ImportError as exc:
        raise Unavailable(f"hxpy.haystack not available: {exc}") from None
    grid_type = getattr(haystack, "Grid", None)
    if grid_type is None or not hasattr(grid_type, "from_dataframe"):
        raise Unavailable("hxpy.haystack.Grid.from_dataframe not available")
    from hxpy import codec

    rows = 1_000_000
    frame = _table(rows)
    try:
        small = grid_type.from_dataframe(frame.head(1000))
        codec.encode(small)
    except codec.MarshalError as exc:
        raise Unavailable(f"the codec cannot encode a Grid: {exc}") from None
    warmup, n = 0, bench.n(3, 2)
    seconds, host_only = [], []
    with bench.session() as session:
        try:  # pandas loads in the server on first use: not part of the figure
            session.define("grid", small).eval("grid.to_dataframe()")
        except (pyhost.MarshalError, pyhost.ProtocolError, pyhost.PythonError) as exc:
            raise Unavailable(f"the session server cannot round-trip a Grid (stale image? "
                              f"`pyhost image build`): {exc}") from None
        for index in range(warmup + n):
            started = perf_counter()
            grid = grid_type.from_dataframe(frame)
            back = session.define("grid", grid).eval("grid.to_dataframe()")
            result = back.to_dataframe()
            elapsed = perf_counter() - started
            if len(result) != rows or list(result.columns) != list(frame.columns):
                raise AssertionError(f"the table came back as {result.shape}")
            del grid, back, result
            if index >= warmup:
                seconds.append(elapsed)
    for _ in range(n):  # the host's own share: convert and encode, decode and convert back
        started = perf_counter()
        encoded = codec.encode(grid_type.from_dataframe(frame))
        codec.decode(encoded).to_dataframe()
        host_only.append(perf_counter() - started)
        del encoded
    return [Result("grid_table", "s", seconds, target=Target(2.0),
                   baseline=Baseline("host only, no session: from_dataframe + encode + decode "
                                     "+ to_dataframe; s", tuple(host_only)),
                   note=f"{rows:,} rows: " + ", ".join(f"{name} {dtype}" for name, dtype
                                                      in frame.dtypes.items())
                        + " (every name distinct)")]


def _table(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "value": rng.random(rows),
        "count": np.arange(rows, dtype=np.int64),
        "flag": rng.random(rows) < 0.5,
        "ts": pd.date_range("2024-01-01", periods=rows, freq="min", tz="America/New_York"),
        # As hard as a real text column: every value distinct, of varying length, in no
        # order (a repetitive column would favour anything that shares or dictionary-codes).
        "name": [f"{token:x}-{index}" for index, token in
                 enumerate(rng.integers(0, 2**48, rows).tolist())],
    })
