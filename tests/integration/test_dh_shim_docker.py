"""DigitalHub handlers, written as the docs write them, in real session containers; a
handler's top-level import that its image lacks is refused before any container starts, and
is satisfied by the fix the refusal names (requirements= and the build task)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.launchers import get_launcher
from pyhost.launchers.docker import image_modules
from pyhost.launchers.ownership import LABEL_PREFIX
from tests.integration.test_runtime_docker import containers_removed_soon_after  # noqa: F401
from tests.support.wheels import make_wheel

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"

NEEDS_PKG = """\
import numpy
import pandas as pd
import nonexistent_pkg_xyz

def main(x):
    return nonexistent_pkg_xyz.VALUE + x
"""


@pytest.fixture
def project(tmp_path, client, monkeypatch):
    monkeypatch.setenv("PYHOST_CACHE", str(tmp_path / "cache"))  # probe answers of its own
    image_modules._by_id.clear()
    image_modules._by_reference.clear()
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project(f"dh-{tmp_path.name[-20:].lower()}")


def dh_function(project, handler):
    return project.new_function(name=f"dh-{handler}", kind="python",
                                code_src=str(FUNCTIONS / "dh_main.py"), handler=handler)


def test_the_docs_handlers_complete_in_containers(project):
    table = project.log_dataitem(name="d", kind="table", data=pd.DataFrame({"x": [1, 2, 3]}))
    runs = {
        "func1": dh_function(project, "func1").run(parameters={"param1": "you"}, wait=True),
        "func2": dh_function(project, "func2").run(inputs={"di": table.key}, wait=True),
        "func3": dh_function(project, "func3").run(parameters={"param1": "p"}, wait=True),
        "func5": dh_function(project, "func5").run(inputs={"di": table.key}, wait=True,
                                                   parameters={"param1": "v"},
                                                   outputs={"result": "named_result"}),
        "which": dh_function(project, "which_handler").run(wait=True),
    }
    for name, run in runs.items():
        assert run.status.state == "COMPLETED", (name, run.status.error)
        assert run.status.container  # in a container, not in this process
    assert runs["func1"].result("greeting") == "hello you"
    assert runs["func2"].result("result") == 6
    assert runs["func3"].output("report").kind == "artifact"
    assert runs["func5"].result("total") == 6
    assert list(runs["func5"].output("named_result").as_df()["label"]) == ["v"] * 3
    assert runs["which"].result("result") == {
        "file": "/opt/hxpy/hxpy/runtime/shims/digitalhub_runtime_python/__init__.py",
        "same_handler": True}


def _created_meanwhile(client, since_ns: int) -> list:
    """Containers of this process created since ``since_ns`` (engine events, so one made
    and removed meanwhile counts too)."""
    events = client.events(since=since_ns // 10**9 - 1, until=int(time.time()) + 1,
                           decode=True,
                           filters={"type": "container", "event": "create",
                                    "label": f"{LABEL_PREFIX}.owner.pid={os.getpid()}"})
    return [(event["timeNano"] - since_ns, event["from"]) for event in events
            if event["timeNano"] >= since_ns]


def test_a_missing_import_is_refused_before_any_container_starts(project, tmp_path, client,
                                                                 our_containers):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text(NEEDS_PKG)
    fn = project.new_function(name="needs-pkg", kind="python",
                              code_src=str(tmp_path / "src" / "main.py"), handler="main")
    # The first check probes the image once (a throwaway container) and caches the answer
    started = time.perf_counter()
    with pytest.raises(ConfigurationError):
        fn.run(parameters={"x": 1}, wait=True)
    cold = time.perf_counter() - started
    cached = list((tmp_path / "cache" / "image-modules").iterdir())
    assert len(cached) == 1 and "pandas" in cached[0].read_text().split()
    # ... so the next refusal starts nothing at all.
    since = time.time_ns()
    with pytest.raises(ConfigurationError) as refused:
        fn.run(parameters={"x": 1}, wait=True)
    message = str(refused.value)
    assert "main.py:3 imports 'nonexistent_pkg_xyz'" in message
    assert "the default session image" in message
    assert "requirements=" in message and "fn.run(action='build'" in message
    assert "numpy" not in message and "pandas" not in message  # the image has those
    assert not _created_meanwhile(client, since)
    assert not our_containers() and not project.list_runs()
    assert _created_meanwhile(client, since - int(cold * 1e9) - 10**9)  # the probe's counts
    print(f"cold check (one probe) {cold * 1e3:.0f} ms")


def test_the_named_fix_makes_it_run(project, tmp_path, client, images):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text(NEEDS_PKG)
    wheel = make_wheel(tmp_path / "dist", name="nonexistent_pkg_xyz", source="VALUE = 41\n")
    fn = project.new_function(name="needs-pkg", kind="python",
                              code_src=str(tmp_path / "src" / "main.py"), handler="main",
                              requirements=[str(wheel)])
    with pytest.raises(ConfigurationError, match="nonexistent_pkg_xyz"):
        fn.run(parameters={"x": 1}, wait=True)  # not built yet
    build = fn.run(action="build", wait=True, offline=True, progress=False)
    images.append(build.status.image or "")
    assert build.status.state == "COMPLETED", build.status.error
    run = fn.run(parameters={"x": 1}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == 42
    assert "nonexistent_pkg_xyz" in get_launcher("docker").importable_names(build.status.image)
