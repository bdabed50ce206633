"""The cross-version codec check: one script that runs on both sides of the wire.

Each side builds the same sample of frames, arrays, zoned times and Haystack values; one side
encodes it (``python -c SCRIPT encode`` writes the bytes to stdout), the other decodes those
bytes and compares them with its own sample (``python -c SCRIPT check`` reads stdin and prints
``ok``). Run by ``tests/integration/test_codec_crossversion_docker.py`` against the session
image's interpreter, and by ``tests/unit/test_codec_crossversion.py`` against any other.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Runs on both sides: it builds the same sample, then encodes it or checks a decoded one.
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


CONTAINER = Path(__file__).resolve().parents[2] / "container"


def run_local(python: str, mode: str, data: bytes = b"") -> bytes:
    """Run SCRIPT in ``mode`` under the interpreter ``python`` of this machine, with the
    hxpy of this checkout; its stdout."""
    result = subprocess.run([python, "-c", SCRIPT, mode], input=data, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(CONTAINER)})
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout
