"""Bytes made by this host's numpy/pandas decode in the session image, and the other way.

The image pins an older generation (Debian bookworm: numpy 1.24, pandas 1.5) than a host
usually has; both run the same check (``tests.support.crossversion.SCRIPT``), the container
side in a child of the session's own interpreter, with the image's hxpy.
"""

from __future__ import annotations

import sys

import numpy
import pandas
import pytest

from pyhost import py
from tests.support.crossversion import SCRIPT, run_local

RUN_IN_CONTAINER = """
done = subprocess.run([sys.executable, "-c", script, mode], input=data, capture_output=True)
result = (done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))
"""


@pytest.fixture(scope="module")
def image_python(client):
    with py(io=None, timeout=120) as s:
        s.exec("import subprocess, sys").define("script", SCRIPT).eval("None")
        yield s


def run_in_image(s, mode: str, data: bytes = b"") -> bytes:
    code, out, err = s.define("mode", mode).define("data", data).exec(RUN_IN_CONTAINER) \
        .eval("result")
    assert code == 0, err
    return out


def test_the_image_has_another_numpy_and_pandas(image_python):
    theirs = image_python.eval("import numpy, pandas; (numpy.__version__, pandas.__version__)")
    # Otherwise the tests below cross nothing.
    assert tuple(theirs) != (numpy.__version__, pandas.__version__)


def test_host_bytes_decode_in_the_image(image_python):
    assert run_in_image(image_python, "check", run_local(sys.executable, "encode")) == b"ok\n"


def test_image_bytes_decode_on_the_host(image_python):
    assert run_local(sys.executable, "check", run_in_image(image_python, "encode")) == b"ok\n"
