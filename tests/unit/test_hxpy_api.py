"""hxPy's Grid/value API (Haxall's ``hxpy.haystack``) on the host and in a session.

The checks live in ``tests/support/hxpy_api_checks.py`` so that one text runs here, on the
host, and inside a session of the process launcher (the hxpy server as a local process);
``tests/integration/test_hxpy_api_docker.py`` runs it in a real container.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hxpy import codec
from pyhost import Grid, GridBuilder, PythonError, Ref
from tests.support import hxpy_api_checks
from tests.unit.conftest import session

CHECKS_SOURCE = Path(hxpy_api_checks.__file__).read_text()


@pytest.mark.parametrize("name", sorted(hxpy_api_checks.CHECKS))
def test_on_the_host(name: str) -> None:
    hxpy_api_checks.CHECKS[name]()


def test_the_checks_can_fail() -> None:
    # run_checks must report a failing check, not swallow it: a session saying {} means passed.
    namespace: dict[str, object] = {}
    exec(compile(CHECKS_SOURCE + "\ndef check_fails():\n    assert 1 == 2\n"
                 "CHECKS['check_fails'] = check_fails\n", "checks", "exec"), namespace)
    failed = namespace["run_checks"]()  # type: ignore[operator]
    assert "AssertionError" in failed["check_fails"]


def test_in_a_session(launcher) -> None:
    with session(launcher) as s:
        failed = s.exec(CHECKS_SOURCE).eval("run_checks()")
    assert failed == {}, "\n".join(failed.values())
    assert len(hxpy_api_checks.CHECKS) >= 13


def test_a_grid_sent_is_read_with_the_hxpy_api_in_the_session(launcher) -> None:
    grid = (GridBuilder().set_meta({"dis": "Sites"}).add_col_names(["id", "area"])
            .set_col_meta("area", {"unit": "ft²"})
            .add_row([Ref("s1", "HQ"), 1200]).add_row([Ref("s2"), 800]).to_grid())
    with session(launcher) as s:
        s.define("g", grid)
        assert s.eval("g.first().val(g.col('id')).dis()") == "HQ"
        assert s.eval("[row.val('id').id() for row in g.rows()]") == ["s1", "s2"]
        assert s.eval("(g.meta(), g.col('area').meta(), g.col('area').index())") == \
            [{"dis": "Sites"}, {"unit": "ft²"}, 1]
        # A row travels as the dict it reads as; a grid built with hxPy's calls comes back.
        assert s.eval("g.get(1)") == {"id": Ref("s2"), "area": 800}
        back = s.exec("from hxpy.haystack.grid import GridBuilder as B\n"
                      "made = B().add_col_names(['a', 'b']).add_row([1, 'x']).to_grid()\n"
                      ).eval("made")
    assert isinstance(back, Grid) and back.rows()[0].cells() == [1, "x"]


def test_a_short_row_in_the_session_says_which_and_how_many(launcher) -> None:
    with session(launcher) as s, pytest.raises(PythonError) as caught:
        s.exec("from hxpy.haystack import GridBuilder\n"
               "GridBuilder().add_col_names(['a', 'b', 'c']).add_row([1, 2, 3])"
               ".add_row([4, 5, 6]).add_row([7])\n").eval("None")
    assert caught.value.remote_type == "hxpy.grid.RowLengthError"
    assert caught.value.remote_message == \
        "row 2 has 1 cell but the grid has 3 columns (a, b, c)"


def test_a_row_nested_in_a_value_is_encoded_as_a_dict_and_a_bad_cell_is_located() -> None:
    grid = GridBuilder().add_col_names(["a", "b"]).add_row([1, {2}]).to_grid()
    row = grid.first()
    with pytest.raises(codec.MarshalError, match=r"x\['r'\]\['b'\]: set is not marshallable"):
        codec.encode({"r": row}, where="x")
    good = GridBuilder().add_col_names(["a"]).add_row([Ref("p")]).to_grid().first()
    assert codec.decode(codec.encode([good])) == [{"a": Ref("p")}]
