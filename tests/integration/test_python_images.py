"""An image per Python version (``pyhost image build --python``): in each, the design's
example, a Grid/DataFrame/ndarray round trip, and runtime jobs that pick the image by
``python_version``. ``make test`` builds them first (``make images``); the fixture's build
is then a no-op."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import NA, ConfigurationError, Grid, GridBuilder, Marker, Number, Ref, py
from pyhost.launchers.docker.doctor import diagnose
from pyhost.launchers.docker.image import DEFAULT_TAG, image_labels
from pyhost.launchers.docker.libraries import USER_LIBRARIES
from pyhost.launchers.docker.python_images import (
    DEBIAN_VERSIONS,
    build_python_image,
    python_route,
)
from tests.support.user_libraries import check_user_libraries

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
NY = ZoneInfo("America/New_York")
GLIBC = {"3.9": "2.31", "3.11": "2.36", "3.13": "2.41"}  # bullseye, bookworm, trixie


@pytest.fixture(scope="module", params=DEBIAN_VERSIONS)
def image(request, client):
    """``hxpy:py3.X``, built if missing (a no-op when current)."""
    build_python_image(request.param, client=client)
    return request.param, python_route(request.param).tag


def test_each_image_is_labelled_with_its_python_and_glibc(image, client):
    version, tag = image
    labels = image_labels(client.api.inspect_image(tag))
    assert labels["org.pyhost.python"] == version
    assert labels["org.pyhost.glibc"] == GLIBC[version]


def test_the_design_example_in_each_image(image):
    version, tag = image
    val = (py(image=tag).timeout(10).define("a", 100).define("b", 2)
           .exec("def mult(x, y): return x * y\n").eval("mult(a, b)"))
    assert val == 200
    assert py(image=tag).eval("import sys; '%d.%d' % sys.version_info[:2]") == version


def test_dataframe_ndarray_and_grid_round_trip_in_each_image(image):
    version, tag = image
    df = pd.DataFrame({
        "i": np.array([1, -2, 3], dtype="int64"),
        "f": [1.5, np.nan, -0.25],
        "s": ["x", "yy", "zzz"],
        "t": pd.to_datetime(["2024-01-01 00:00", "2024-06-01 12:00", "2024-11-03 01:30"])
             .tz_localize(NY, ambiguous=True),
    })
    matrix = np.arange(12, dtype="float64").reshape(3, 4) / 7
    grid = (GridBuilder().set_meta({"dis": "site"}).add_col("id").add_col("site")
            .add_col("area", {"unit": "ft²"}).add_col("at")
            .add_row({"id": Ref("p:demo:r:1", "One"), "site": Marker(), "area": Number(2.5, "ft²"),
                      "at": datetime.datetime(2024, 3, 10, 3, 0, tzinfo=NY)})
            .add_row({"id": Ref("p:demo:r:2"), "site": NA(), "area": None, "at": None})
            .to_grid())
    with py(image=tag, timeout=30) as session:
        session.define("df", df).define("m", matrix).define("g", grid)
        # Each value is used in the container, so a decode that only looked right fails here.
        seen = session.eval("d = df.to_dataframe()\n"
                            "{'dtypes': {c: str(t) for c, t in d.dtypes.items()},\n"
                            " 'sum': int(d['i'].sum()), 'm': [list(m.shape), str(m.dtype)],\n"
                            " 'g': [type(g.val(0, 'site')).__name__, g.val(1, 'id').id()]}")
        assert seen["sum"] == 2 and seen["m"] == [[3, 4], "float64"]
        # The host's pandas 3 sends its "str" dtype; a pandas without it keeps object.
        assert seen["dtypes"]["i"] == "int64" and seen["dtypes"]["s"] in ("str", "object")
        assert "America/New_York" in seen["dtypes"]["t"]
        assert seen["g"] == ["Marker", "p:demo:r:2"]
        back_df = session.eval("df").to_dataframe()
        back_m, back_g = session.eval("m"), session.eval("g")
        made = session.eval("import pandas as pd\n"
                            "pd.DataFrame({'n': [1, 2], 'w': ['a', 'b']})").to_dataframe()
        # Large enough to come back as a text column (two buffers), with nulls and wide
        # characters, made by this image's pandas.
        texts = session.eval("cells = ['x', None, 'é', '日本', '🙂'] * 500\n"
                             "pd.DataFrame({'t': [c if c is None else c + str(i)\n"
                             "                    for i, c in enumerate(cells)]})")
    pd.testing.assert_frame_equal(back_df, df, check_freq=False)
    np.testing.assert_array_equal(back_m, matrix)
    assert back_m.dtype == matrix.dtype and back_m.shape == (3, 4)
    assert isinstance(back_g, Grid) and back_g.meta()["dis"] == "site"
    assert back_g.val(0, "id") == Ref("p:demo:r:1", "One") and back_g.val(0, "site") == Marker()
    assert back_g.val(1, "site") == NA() and back_g.val(0, "area") == Number(2.5, "ft²")
    assert back_g.val(0, "at") == datetime.datetime(2024, 3, 10, 3, 0, tzinfo=NY)
    assert list(made["n"]) == [1, 2] and list(made["w"]) == ["a", "b"]
    cells = ["x", None, "é", "日本", "🙂"] * 500
    assert type(texts._columns[0]).__name__ == "TextColumn"
    assert texts.to_dataframe()["t"].tolist() == [
        cell if cell is None else cell + str(index) for index, cell in enumerate(cells)]


# -- runtime jobs choose the image by python_version -------------------------------------

def test_the_libraries_for_user_code_in_each_image(image):
    """scipy, scikit-learn, numexpr, tzdata (and dateutil, pytz) import and compute, and the
    server had loaded none of them."""
    check_user_libraries(image[1])


def test_doctor_lists_the_libraries_of_the_default_and_each_version_image(
        client, tmp_path, monkeypatch):
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path / "cache"))  # each image probed afresh
    for version in DEBIAN_VERSIONS:
        build_python_image(version, client=client)
    checks = [check for check in diagnose(io_dir=str(tmp_path / "io"))
              if check.name == "libraries"]
    listed = {check.detail.split(": ")[0]: check for check in checks}
    images = [DEFAULT_TAG, *(python_route(version).tag for version in DEBIAN_VERSIONS)]
    assert set(images) <= set(listed), checks
    for image in images:
        check = listed[image]
        assert check.ok, check
        for name in USER_LIBRARIES:
            assert re.search(rf"[:,] {re.escape(name)} \d", check.detail), (name, check)
    probed = list((tmp_path / "cache" / "image-probes").glob("*.json"))
    assert len(probed) == len({client.api.inspect_image(image)["Id"] for image in images})


@pytest.fixture
def project(tmp_path, client):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("versions")


@pytest.mark.usefixtures("jobs_settle")
@pytest.mark.parametrize("python_version", ["PYTHON3_9", "PYTHON3_13"])
def test_a_job_runs_in_the_image_of_its_python_version(project, client, python_version):
    version = python_version[len("PYTHON"):].replace("_", ".")
    build_python_image(version, client=client)
    fn = project.new_function(name=f"which-{python_version.lower()}", kind="python",
                              code_src=str(FUNCTIONS / "versions.py"), handler="which_python",
                              python_version=python_version)
    run = fn.run(action="job", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    reported = run.result("result")
    assert ".".join(map(str, reported["version_info"][:2])) == version, reported
    assert run.spec["image"] == python_route(version).tag  # recorded: which image it ran in


def test_a_version_no_route_provides_is_refused_before_anything_starts(project,
                                                                      our_containers):
    before = len(our_containers())
    fn = project.new_function(name="which-3-10", kind="python",
                              code_src=str(FUNCTIONS / "versions.py"), handler="which_python",
                              python_version="PYTHON3_10")
    with pytest.raises(ConfigurationError, match=r"PYTHON3_10.*Python 3\.10.*image=.*base_image="):
        fn.run(action="job", wait=True)
    assert len(our_containers()) == before and not project.list_runs()
