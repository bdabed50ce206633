"""DigitalHub handlers run unchanged: ``from digitalhub_runtime_python import handler`` works
wherever a handler runs (a process server, a local run) without shadowing the real SDK, and
a top-level import the run cannot satisfy is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from hxpy.runtime.shim import SHIM_DIR
from pyhost import ConfigurationError
from pyhost.runtime.imports import required_imports
from pyhost.runtime.sources import Source

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
CONTAINER = Path(__file__).resolve().parents[2] / "container"


@pytest.fixture
def project(tmp_path):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("demo")


def dh_function(project, handler):
    return project.new_function(name=f"dh-{handler}", kind="python",
                                code_src=str(FUNCTIONS / "dh_main.py"), handler=handler)


def code_function(project, name, code, handler="main"):
    return project.new_function(name=name, kind="python", code=textwrap.dedent(code),
                                handler=handler)


@pytest.mark.parametrize("local", [False, True], ids=["process", "local"])
def test_the_docs_handlers_complete(project, launcher, local):
    table = project.log_dataitem(name="d", kind="table", data=pd.DataFrame({"x": [1, 2, 3]}))
    runs = {
        "func1": dh_function(project, "func1").run(parameters={"param1": "you"}, wait=True,
                                                   launcher=launcher, local_execution=local),
        "func2": dh_function(project, "func2").run(inputs={"di": table.key}, wait=True,
                                                   launcher=launcher, local_execution=local),
        "func3": dh_function(project, "func3").run(parameters={"param1": "p"}, wait=True,
                                                   launcher=launcher, local_execution=local),
        "func5": dh_function(project, "func5").run(inputs={"di": table.key}, wait=True,
                                                   parameters={"param1": "v"},
                                                   outputs={"result": "named_result"},
                                                   launcher=launcher, local_execution=local),
    }
    for name, run in runs.items():
        assert run.status.state == "COMPLETED", (name, run.status.error)
    assert runs["func1"].result("greeting") == "hello you"
    assert runs["func2"].result("result") == 6
    assert runs["func3"].output("report").kind == "artifact"
    assert runs["func5"].result("total") == 6
    assert list(runs["func5"].output("named_result").as_df()["label"]) == ["v"] * 3
    assert len(launcher.started) == (0 if local else 4)


@pytest.mark.parametrize("local", [False, True], ids=["process", "local"])
def test_the_shim_handler_is_hxpys_own(project, launcher, local):
    run = dh_function(project, "which_handler").run(wait=True, launcher=launcher,
                                                    local_execution=local)
    assert run.status.state == "COMPLETED", run.status.error
    seen = run.result("result")
    assert seen["same_handler"] is True
    assert seen["file"].startswith(SHIM_DIR)


def test_the_shim_re_exports_without_copying():
    code = (f"import sys; sys.path.append({SHIM_DIR!r})\n"
            "import digitalhub_runtime_python as d, hxpy.runtime as r, hxpy.runtime.proxies as p\n"
            "assert d.handler is r.handler\n"
            "assert d.Dataitem is d.Artifact is d.Model is p.Entity\n"
            "assert sorted(d.__all__) == ['Artifact', 'Dataitem', 'Model', 'handler']\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(CONTAINER)}, check=True).stdout
    assert out.strip() == "ok"


def test_an_installed_sdk_is_never_shadowed(tmp_path):
    fake = tmp_path / "site" / "digitalhub_runtime_python"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\ndef handler(outputs=None):\n"
                                      "    return lambda f: f\n")
    code = textwrap.dedent("""
        import sys
        from hxpy.runtime.job import run_job
        from hxpy.runtime.shim import SHIM_DIR, install
        source = {"main.py": b"import digitalhub_runtime_python as d\\n"
                              b"def main():\\n    return d.__file__, getattr(d, 'REAL', False)\\n"}
        answer = run_job({"files": source, "module": "main", "function": "main",
                          "project": "p", "run_id": "r"}, call=lambda *a: None)
        print(answer["results"]["result"][1], SHIM_DIR in sys.path, install())
    """)
    env = {"PYTHONPATH": f"{CONTAINER}:{tmp_path / 'site'}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]  # the fake won; no shim on path


def test_a_missing_top_level_import_is_refused_before_the_start(project, launcher):
    fn = code_function(project, "needs-pkg", """\
        import os
        import nonexistent_pkg_xyz

        def main():
            return nonexistent_pkg_xyz.value
    """)
    with pytest.raises(ConfigurationError) as refused:
        fn.run(wait=True, launcher=launcher)
    message = str(refused.value)
    assert "main.py:2 imports 'nonexistent_pkg_xyz'" in message
    assert "process launcher" in message and sys.executable in message
    assert "requirements=" in message and "action='build'" in message
    assert not launcher.started and not project.list_runs()
    with pytest.raises(ConfigurationError, match="nonexistent_pkg_xyz.*this Python"):
        fn.run(wait=True, local_execution=True)
    assert not project.list_runs()


def test_a_module_of_the_source_that_imports_it_is_refused_too(project, launcher, tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "helper.py").write_text("from nonexistent_pkg_xyz import thing\n")
    (source / "main.py").write_text("from pkg import helper\n\n"
                                    "def main():\n    return 1\n")
    (source / "tool.py").write_text("import another_missing_pkg\n")  # not imported: no matter
    fn = project.new_function(name="deep", kind="python", code_src=str(source),
                              handler="main:main")
    with pytest.raises(ConfigurationError, match=r"pkg/helper.py:1 imports 'nonexistent_pkg_xyz'"
                       ) as refused:
        fn.run(wait=True, launcher=launcher)
    assert "another_missing_pkg" not in str(refused.value)
    assert not launcher.started


@pytest.mark.parametrize("local", [False, True], ids=["process", "local"])
def test_optional_and_lazy_imports_are_left_to_the_run(project, launcher, local):
    fn = code_function(project, "optional", """\
        try:
            import nonexistent_pkg_xyz
        except ImportError:
            nonexistent_pkg_xyz = None

        def later():
            import nonexistent_pkg_xyz
            return nonexistent_pkg_xyz

        def main():
            return nonexistent_pkg_xyz is None
    """)
    run = fn.run(wait=True, launcher=launcher, local_execution=local)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") is True


def test_required_imports_reads_only_top_level_absolute_imports():
    source = Source({
        "main.py": b"from __future__ import annotations\nimport os, numpy as np\n"
                   b"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cond\n"
                   b"from . import nothing\nfrom pkg.sub import thing\nimport pkg.other\n"
                   b"class K:\n    import in_class\n",
        "pkg/__init__.py": b"from .sub import thing\nimport yaml\n",
        "pkg/sub.py": b"from ..outside import x\nimport requests.adapters\n",
        "pkg/other.py": b"import toml\n",
        "unused.py": b"import never_imported\n",
    })
    needed = required_imports(source, "main")
    assert needed == {"__future__": ("main.py", 1), "os": ("main.py", 2),
                      "numpy": ("main.py", 2), "typing": ("main.py", 3),
                      "yaml": ("pkg/__init__.py", 2), "requests": ("pkg/sub.py", 2),
                      "toml": ("pkg/other.py", 1)}


def test_a_serve_run_is_checked_too(project):
    fn = code_function(project, "serve-needs-pkg", """\
        from digitalhub_runtime_python import handler
        import nonexistent_pkg_xyz

        def serve(context, event):
            return nonexistent_pkg_xyz.answer(event)
    """, handler="serve")
    with pytest.raises(ConfigurationError, match="main.py:2 imports 'nonexistent_pkg_xyz'"):
        fn.run(action="serve", launcher="process")
    assert not project.list_runs()


def test_a_module_installed_after_a_refusal_is_found(project, tmp_path, monkeypatch):
    fn = code_function(project, "later", """\
        import pyhost_later_pkg

        def main():
            return pyhost_later_pkg.VALUE
    """)
    with pytest.raises(ConfigurationError, match="pyhost_later_pkg"):
        fn.run(wait=True, local_execution=True)  # this process now remembers "missing"
    site = tmp_path / "site"
    site.mkdir()
    (site / "pyhost_later_pkg.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "pyhost_later_pkg", raising=False)
    run = fn.run(wait=True, local_execution=True)  # a refusal asks again first
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == 7
