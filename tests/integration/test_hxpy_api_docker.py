"""hxPy's Grid/value API (Haxall's ``hxpy.haystack``) inside a real container session.

The same checks as ``tests/unit/test_hxpy_api.py`` (``tests/support/hxpy_api_checks.py``),
run by the image's Python, numpy and pandas, plus grids crossing between the host and the
container with the API used on each side.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyhost import Grid, GridBuilder, PythonError, Ref, py
from tests.support import hxpy_api_checks

CHECKS_SOURCE = Path(hxpy_api_checks.__file__).read_text()


@pytest.fixture
def s(client):
    with py(io=None) as session:
        yield session


def test_every_check_passes_in_the_container(s):
    failed = s.exec(CHECKS_SOURCE).eval("run_checks()")
    assert failed == {}, "\n".join(failed.values())
    # Every check ran there: one deliberately failing check is reported by name.
    failing = s.exec("def check_fails():\n    assert 1 == 2\nCHECKS['check_fails'] = check_fails\n"
                     ).eval("run_checks()")
    assert list(failing) == ["check_fails"]


def test_a_grid_sent_is_read_with_the_hxpy_api_in_the_container(s):
    grid = (GridBuilder().set_meta({"dis": "Sites"}).add_col_names(["id", "area"])
            .set_col_meta("area", {"unit": "ft²"})
            .add_row([Ref("s1", "HQ"), 1200]).add_row([Ref("s2"), 800]).to_grid())
    s.define("g", grid)
    assert s.eval("g.first().val(g.col('id')).dis()") == "HQ"
    assert s.eval("[row.val('id').id() for row in g.rows()]") == ["s1", "s2"]
    assert s.eval("(g.meta(), g.col('area').meta(), g.col('area').index(), g.val(1, 1))") == \
        [{"dis": "Sites"}, {"unit": "ft²"}, 1, 800]
    assert s.eval("g.get(1)") == {"id": Ref("s2"), "area": 800}


def test_a_grid_built_with_hxpy_calls_in_the_container_comes_back(s):
    back = s.exec("import pandas as pd\n"
                  "from hxpy.haystack.grid import Grid, GridBuilder\n"
                  "frame = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\n"
                  "made = GridBuilder.from_dataframe(frame).set_meta({'src': 'frame'}).to_grid()\n"
                  ).eval("made")
    assert isinstance(back, Grid) and back.meta() == {"src": "frame"}
    assert [row.cells() for row in back.rows()] == [[1, "x"], [2, "y"]]
    assert back.col("b").index() == 1
    assert Grid.from_dataframe(back.to_dataframe(), back.meta()) == back
    assert s.eval("Grid.empty_grid().is_empty() and Grid.empty_grid().first() is None")


def test_a_short_row_in_the_container_says_which_and_how_many(s):
    with pytest.raises(PythonError) as caught:
        s.exec("from hxpy.haystack import GridBuilder\n"
               "GridBuilder().add_col_names(['a', 'b']).add_row([1, 2]).add_row([3, 4, 5])\n"
               ).eval("None")
    assert caught.value.remote_type == "hxpy.grid.RowLengthError"
    assert caught.value.remote_message == \
        "row 1 has 3 cells but the grid has 2 columns (a, b)"
