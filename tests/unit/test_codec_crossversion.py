"""Bytes made by one numpy/pandas generation decode under the other, against ANY interpreter.

``make test`` checks this host against the session image's interpreter (numpy 1.24, pandas
1.5) in ``tests/integration/test_codec_crossversion_docker.py``. This module runs the same
check against another interpreter of this machine, and is skipped unless
``HXPY_OTHER_PYTHON`` names one with msgpack, numpy and pandas::

    python3 -m venv /tmp/oldvenv
    /tmp/oldvenv/bin/pip install 'numpy==1.24.*' 'pandas==1.5.*' msgpack
    HXPY_OTHER_PYTHON=/tmp/oldvenv/bin/python PYTHONPATH=container pytest tests/unit -k cross
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.crossversion import run_local

OTHER = os.environ.get("HXPY_OTHER_PYTHON")


@pytest.mark.skipif(not OTHER, reason="set HXPY_OTHER_PYTHON to another interpreter")
@pytest.mark.parametrize(("sender", "receiver"), [("other", "this"), ("this", "other")])
def test_bytes_cross_between_numpy_and_pandas_versions(sender: str, receiver: str) -> None:
    pythons = {"this": sys.executable, "other": OTHER or ""}
    assert run_local(pythons[receiver], "check", run_local(pythons[sender], "encode")) == \
        b"ok\n"
