"""What a session checks of the libraries hxPy's image gives user code: each imports, runs a
tiny computation, and none was loaded before user code asked (the server imports only numpy
and pandas, so an idle session costs no more memory than before)."""

from __future__ import annotations

from typing import Any

from pyhost import py

# Evaluated first, in a fresh session: which of the stack the server already loaded.
LOADED_BEFORE = ("[name for name in ('scipy', 'sklearn', 'numexpr', 'tzdata', 'joblib', "
                 "'threadpoolctl') if name in __import__('sys').modules]")
COMPUTE = """
import datetime, zoneinfo
import numpy as np
import scipy.linalg, sklearn.linear_model, numexpr, tzdata, dateutil.parser, pytz, pandas

solved = scipy.linalg.solve(np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([9.0, 8.0]))
xs = np.arange(6.0).reshape(-1, 1)
fit = sklearn.linear_model.LinearRegression().fit(xs, 2.0 * xs.ravel() + 1.0)
evaluated = numexpr.evaluate("a * b + 1", local_dict={"a": np.arange(4.0), "b": np.full(4, 2.0)})
# No system zone files on the path: the zone must come from the tzdata package.
zoneinfo.reset_tzpath(to=[])
rome = zoneinfo.ZoneInfo.no_cache("Europe/Rome")
summer = datetime.datetime(2024, 7, 1, 12, tzinfo=rome).utcoffset().total_seconds() / 3600
parsed = dateutil.parser.isoparse("2024-01-02T03:04:05").day
eastern = pytz.timezone("US/Eastern").zone
"""
# The solve is rounded: its last bit depends on the BLAS the wheels bundle.
RESULT = ("[round(float(v), 9) for v in solved], round(float(fit.coef_[0]), 6), "
          "round(float(fit.intercept_), 6), [float(v) for v in evaluated], summer, parsed, "
          "eastern, bool(tzdata.IANA_VERSION)")
EXPECTED = ([2.0, 3.0], 2.0, 1.0, [1.0, 3.0, 5.0, 7.0], 2.0, 2, "US/Eastern", True)


def check_user_libraries(image: str) -> None:
    """In a session of ``image``: nothing of the stack loaded before user code, then each
    library imports and computes.

    Raises:
        AssertionError: naming what was wrong.
    """
    with py(image=image).timeout(60) as session:
        assert session.eval(LOADED_BEFORE) == [], "the server imported them before user code"
        session.exec(COMPUTE)
        got: Any = session.eval(RESULT)
    assert tuple(got) == EXPECTED, got
