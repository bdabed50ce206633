"""The design's session usage (hxPy, Python side), in real containers: define, exec, eval and
timeout sent in one round trip; Haystack values both ways; a Grid as a DataFrame and a matrix
as an ndarray."""

import numpy as np
import pandas as pd

from pyhost import py


def test_the_usage_that_must_always_work():
    assert py().timeout(10).define("a", 100).define("b", 2) \
        .exec("def mult(x, y): return x * y\n").eval("mult(a, b)") == 200


def test_haystack_values_cross_both_ways_at_hxpys_paths():
    from hxpy.haystack import NA, Coord, Marker, Ref, Remove

    with py() as session:
        session.define("values", [Marker(), NA(), Remove(), Ref("site-1", "Site One"),
                                  Coord(45.5, 9.25)])
        kinds = session.exec(
            "from hxpy.haystack.marker import Marker\n"
            "from hxpy.haystack.na import NA\n"
            "from hxpy.haystack.remove import Remove\n"
            "from hxpy.haystack.ref import Ref\n"
            "from hxpy.haystack.coord import Coord\n"
        ).eval("[type(v).__name__ for v in values] + [values[3].id(), values[3].dis()]")
        assert kinds == ["Marker", "NA", "Remove", "Ref", "Coord", "site-1", "Site One"]
        assert session.eval("values") == [Marker(), NA(), Remove(), Ref("site-1", "Site One"),
                                          Coord(45.5, 9.25)]


def test_a_grid_is_a_dataframe_and_a_matrix_an_ndarray():
    from hxpy.haystack import Grid, GridBuilder

    grid = GridBuilder().add_col_names(["a", "b"]).add_row([1, "x"]).add_row([2, "y"]) \
        .to_grid()
    with py() as session:
        session.define("grid", grid).define("matrix", np.arange(6.0).reshape(2, 3))
        assert session.eval("type(grid.to_dataframe()).__name__") == "DataFrame"
        assert session.eval("grid.first().val('b')") == "x"
        assert session.eval("matrix.sum(axis=0).tolist()") == [3.0, 5.0, 7.0]
        back = session.eval("grid.to_dataframe()")  # a DataFrame comes back as a Grid
    assert isinstance(back, Grid)
    frame = back.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and frame["a"].tolist() == [1, 2]


def test_an_error_in_user_code_leaves_the_session_alive():
    from pyhost import PythonError

    with py() as session:
        session.define("kept", 41)
        try:
            session.eval("1 / 0")
        except PythonError as exc:
            assert "ZeroDivisionError" in str(exc)
        else:
            raise AssertionError("1 / 0 did not raise")
        assert session.eval("kept + 1") == 42
