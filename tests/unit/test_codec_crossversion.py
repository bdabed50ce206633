"""Bytes made by one numpy/pandas generation decode under the other (host <-> container).

Skipped unless ``HXPY_OTHER_PYTHON`` names another interpreter with msgpack, numpy and pandas,
e.g. one with numpy 1.24 and pandas 1.5 as in the container image::

    python3 -m venv /tmp/oldvenv
    /tmp/oldvenv/bin/pip install 'numpy==1.24.*' 'pandas==1.5.*' msgpack
    HXPY_OTHER_PYTHON=/tmp/oldvenv/bin/python PYTHONPATH=container pytest tests/unit -k cross
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONTAINER = Path(__file__).resolve().parents[2] / "container"
OTHER = os.environ.get("HXPY_OTHER_PYTHON")

# Runs on both sides: builds the same sample, then encodes it or checks a decoded one.
SCRIPT = r'''
import datetime as dt, sys
import numpy as np, pandas as pd
from hxpy.codec import decode, encode
from hxpy.haystack import Grid, Marker, Number, Ref, Uri

def sample():
    zone = "America/New_York"
    df = pd.DataFrame({
        "i": np.arange(4, dtype="int64"), "f": [1.5, np.nan, np.inf, -0.0],
        "b": [True, False, True, False], "s": ["a", None, "c", "d"],
        "t": pd.to_datetime(["2021-11-07 05:30", None, "2021-11-07 06:30", "2020-01-01 00:00"])
             .tz_localize("UTC").tz_convert(zone),
        "c": pd.Categorical(["x", "y", None, "x"]), "n": pd.array([1, None, 3, 4], "Int64"),
        "o": pd.Series([Marker(), 1, "z", None], dtype=object),
        "naive": pd.to_datetime(["2020-01-01 00:00:00.0", None, "1999-12-31 23:59:59.5",
                                 "2000-02-29 00:00:00.0"]),
    }, index=pd.date_range("2022-01-01", periods=4, freq="D", tz="UTC", name="ts"))
    values = {"ref": Ref("p:a", "A"), "num": Number(72.5, "°F"), "uri": Uri("http://x"),
              "when": dt.datetime(2021, 11, 7, 1, 30, fold=1,
                                  tzinfo=__import__("zoneinfo").ZoneInfo(zone)),
              "arr": np.asfortranarray(np.arange(6, dtype="f4").reshape(2, 3)),
              "scalars": [np.int64(5), np.float32(0.5), np.datetime64("2020-01-01")]}
    return df, values

df, values = sample()
if sys.argv[1] == "encode":
    sys.stdout.buffer.write(encode({"df": df, "values": values}))
else:
    got = decode(sys.stdin.buffer.read())
    assert got["df"] == Grid.from_dataframe(df), "grid cells differ"
    out = got["df"].to_dataframe()
    # Dtypes legitimately differ across pandas generations (str vs object, ns vs us), so
    # compare cells, with every kind of missing value as None.
    def cells(values):
        return [None if (v is None or v is pd.NA or v is pd.NaT or v != v) else v
                for v in values.tolist()]
    assert list(out.columns) == list(df.columns) and list(out.index) == list(df.index)
    for name in df.columns:
        assert cells(out[name]) == cells(df[name]), name
    assert out["n"].dtype == "Int64" and str(out["t"].dtype).endswith("America/New_York]")
    assert out["c"].dtype == "category" and out.index.name == "ts"
    for key in ("ref", "num", "uri"):
        assert got["values"][key] == values[key], key
    when = got["values"]["when"]
    assert when == values["when"] and when.fold == 1 and when.tzinfo.key == "America/New_York"
    arr = got["values"]["arr"]
    assert arr.dtype == np.float32 and arr.flags.f_contiguous and (arr == values["arr"]).all()
    assert got["values"]["scalars"] == [5, 0.5, dt.date(2020, 1, 1)]
    print("ok")
'''


def run(python: str, mode: str, data: bytes = b"") -> bytes:
    result = subprocess.run([python, "-c", SCRIPT, mode], input=data, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(CONTAINER)})
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@pytest.mark.skipif(not OTHER, reason="set HXPY_OTHER_PYTHON to another interpreter")
@pytest.mark.parametrize(("sender", "receiver"), [("other", "this"), ("this", "other")])
def test_bytes_cross_between_numpy_and_pandas_versions(sender: str, receiver: str) -> None:
    pythons = {"this": sys.executable, "other": OTHER or ""}
    assert run(pythons[receiver], "check", run(pythons[sender], "encode")) == b"ok\n"
