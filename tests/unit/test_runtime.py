"""The python runtime end to end without Docker: jobs run in the real hxpy server as a local
process (``launcher="process"``) or in this process (``local_execution``), against a real
SQLite catalog and store in a temporary directory."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, NotInCatalog

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("demo")


@pytest.fixture
def table(project):
    return project.log_dataitem(name="d", kind="table",
                                data=pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}))


def function(project, handler, **fields):
    return project.new_function(name=f"fn-{handler}", kind="python",
                                code_src=str(FUNCTIONS / "main.py"), handler=handler, **fields)


def test_the_design_usage_in_a_server_process(project, table, launcher):
    fn = function(project, "func5")
    run = fn.run(action="job", inputs={"di": table.key}, parameters={"param1": "some value"},
                 outputs={"result": "named_result"}, wait=True, launcher=launcher)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("total") == 6
    named = run.output("named_result")
    assert run.result("result") == named.key and named.kind == "table"
    df = named.as_df()
    assert list(df["label"]) == ["some value"] * 3 and list(df["x"]) == [1, 2, 3]
    assert run.status.metrics == {"rows": 3}
    assert [r.id for r in project.list_runs()] == [run.id]
    assert project.get_run(run.id).spec["function_id"] == fn.id
    assert len(launcher.started) == 1  # the job ran in a server, not in this process
    timings = run.status.timings
    assert timings["CREATED"] <= timings["READY"] <= timings["RUNNING"] <= timings["COMPLETED"]


def test_local_execution_gives_the_same_results_and_outputs(project, table, launcher):
    fn = function(project, "func5")
    runs = [fn.run(inputs={"di": table.key}, parameters={"param1": "v"}, wait=True,
                   outputs={"result": "named"}, **where)
            for where in ({"launcher": launcher}, {"local_execution": True})]
    assert [r.status.state for r in runs] == ["COMPLETED", "COMPLETED"]
    assert runs[0].result("total") == runs[1].result("total") == 6
    pd.testing.assert_frame_equal(runs[0].output("named").as_df(),
                                  runs[1].output("named").as_df())
    assert len(launcher.started) == 1


def test_an_artifact_logged_inside_the_run_lands_in_the_catalog(project, launcher, tmp_path):
    run = function(project, "func3").run(parameters={"param1": "q3"}, wait=True,
                                         launcher=launcher)
    assert run.status.state == "COMPLETED", run.status.error
    artifact = project.get_artifact("report")
    assert run.output("result") == artifact and artifact.key in run.status.produced
    assert artifact.metadata["produced_by"] == run.key
    path = artifact.download(tmp_path / "got")
    assert Path(path).read_text() == "report for q3\n" * 1000


def test_a_failing_handler_is_error_with_the_users_traceback_and_retries(project, launcher):
    run = function(project, "fails").run(wait=True, launcher=launcher, backoff_limit=2)
    assert run.status.state == "ERROR"
    error = run.status.error
    assert error["type"] == "KeyError" and error["message"] == "'nothing here'"
    assert 'raise KeyError("nothing here")' in error["traceback"]
    assert "return fails(depth - 1)" in error["traceback"]
    assert "run_job" not in error["traceback"]  # the user's frames, not the runtime's
    assert error["traceback"].index("fails(depth - 1)") < error["traceback"].index("raise")
    assert [a["attempt"] for a in run.status.attempts] == [1, 2, 3]
    assert len(launcher.started) == 3


@pytest.mark.parametrize("call, message", [
    ({"parameters": {}}, "argument 'param1' of func1\\(\\) has no value"),
    ({"parameters": {"param1": 1, "other": 2}}, "takes no argument 'other'"),
    ({"parameters": {"param1": 1}, "outputs": {"nope": "x"}}, "no output 'nope'"),
    ({"parameters": {"param1": 1}, "resources": {"memory": "lots"}}, "resources.mem"),
    ({"parameters": {"param1": 1}, "resources": {"cpu": "0m"}}, "resources.cpu"),
    ({"parameters": {"param1": 1}, "envs": [{"name": "A"}]}, "envs"),
    ({"parameters": {"param1": 1}, "secrets": ["NOT_SET_ANYWHERE"]}, "NOT_SET_ANYWHERE"),
    ({"parameters": {"param1": 1}, "backoff_limit": -1}, "backoff_limit"),
    ({"parameters": {"param1": 1}, "colour": "red"}, "unknown setting"),
    ({"parameters": {"param1": 1}, "action": "serve"}, "action='serve'"),
    ({"parameters": {"param1": 1}, "volumes": [{"volume_type": "nfs", "mount_path": "/d"}]},
     "volume_type='nfs'"),
    ({"parameters": {"param1": 1}, "volumes": [{"volume_type": "empty_dir",
                                                "mount_path": "/d"}]}, "process launcher"),
    ({"parameters": {"param1": 1}, "local_execution": True,
      "volumes": [{"volume_type": "empty_dir", "mount_path": "/d"}]}, "no container"),
])
def test_bad_runs_fail_before_anything_starts(project, launcher, call, message):
    fn = function(project, "func1")
    with pytest.raises(ConfigurationError, match=message):
        fn.run(launcher=launcher, **call)
    assert not launcher.started and not project.list_runs()


def test_inputs_are_checked_against_the_catalog(project, table, launcher):
    fn = function(project, "func2")
    with pytest.raises(NotInCatalog):
        fn.run(inputs={"di": "store://demo/dataitem/table/missing"}, launcher=launcher)
    with pytest.raises(ConfigurationError, match="of project 'other'"):
        fn.run(inputs={"di": "store://other/dataitem/table/d"}, launcher=launcher)
    with pytest.raises(ConfigurationError, match="context and event"):
        function(project, "func4").run(launcher=launcher)
    assert not launcher.started
    run = fn.run(inputs={"di": table}, wait=True, launcher=launcher)
    assert run.result("result") == 6 and run.status.consumed == [table.key]


def test_a_secret_reaches_the_handler_and_nothing_else(project, launcher, runtime,
                                                       monkeypatch, tmp_path):
    token = "s3cr3t-" + os.urandom(8).hex()
    monkeypatch.setenv("API_TOKEN", token)
    run = function(project, "secret_user").run(secrets=["API_TOKEN"], wait=True,
                                               launcher=launcher)
    assert run.result("result") == len(token)
    assert "the token is ***" in run.logs() and token not in run.logs()
    assert token not in repr(run.status.to_dict()) + repr(run.spec)
    files = [path for path in (tmp_path / "home").rglob("*") if path.is_file()]
    assert any(path.name == "catalog.db" for path in files)
    for path in files:  # the catalog (and its WAL) and every file of the store
        assert token.encode() not in path.read_bytes(), path


def test_secrets_come_from_a_directory_of_files_first(project, launcher, tmp_path,
                                                     monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "API_TOKEN").write_text("from-a-file\n")
    monkeypatch.setenv("PYHOST_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("API_TOKEN", "from-the-environment")
    run = function(project, "secret_user").run(secrets=["API_TOKEN"], wait=True,
                                               launcher=launcher)
    assert run.result("result") == len("from-a-file")
    with pytest.raises(ConfigurationError, match="set in neither .*secrets"):
        function(project, "secret_user").run(secrets=["OTHER_TOKEN"], launcher=launcher)


def test_wait_false_returns_at_once_and_stop_ends_the_run(project, launcher):
    run = function(project, "sleeper").run(parameters={"seconds": 60}, launcher=launcher)
    assert run.status.state in ("READY", "RUNNING")
    deadline = time.monotonic() + 30
    while not run.refresh().status.container:  # set when its server started
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # the handler is asleep in the server by now
    started = time.monotonic()
    stopped = run.stop()
    assert time.monotonic() - started < 20  # not the handler's 60 s
    assert stopped.status.state == "STOPPED"
    assert launcher.started[0].poll() is not None  # its server is gone
    assert run.wait(1).status.state == "STOPPED"


def test_stopping_an_ended_run_says_so_and_changes_nothing(project, launcher, caplog):
    run = function(project, "func1").run(parameters={"param1": "x"}, wait=True,
                                         launcher=launcher)
    assert run.status.state == "COMPLETED"
    with caplog.at_level("INFO", logger="pyhost.runtime"):
        assert run.stop().status.state == "COMPLETED"
    assert f"run {run.id} was already COMPLETED; nothing to stop" in caplog.text
    assert project.get_run(run.id).status.state == "COMPLETED"


def test_a_run_that_is_not_there_names_where_it_was_looked_for(project):
    with pytest.raises(NotInCatalog, match="there is no run nope in project 'demo'"):
        dh.get_run("store://demo/run/python+job/nope")
    with pytest.raises(NotInCatalog, match="there is no run nope in any project of "):
        dh.get_run("nope")
    with pytest.raises(NotInCatalog, match="there is no run nope in project 'demo'"):
        project.get_run("nope")


def test_functions_are_versioned(project):
    first = project.new_function(name="v", code="def f():\n    return 1\n", handler="f")
    same = project.new_function(name="v", code="def f():\n    return 1\n", handler="f")
    changed = project.new_function(name="v", code="def f():\n    return 2\n", handler="f")
    assert first.id == same.id != changed.id
    assert project.get_function("v").id == changed.id
    back = project.new_function(name="v", code="def f():\n    return 1\n", handler="f")
    assert back.id not in (first.id, changed.id)  # back to the first code: a new version
    assert project.get_function("v").id == back.id
    assert len(project.list_functions()) == 3
    assert project.get_function("v", version=first.id).id == first.id
    run = project.get_function("v", version=first.id).run(local_execution=True, wait=True)
    assert run.result("result") == 1 and run.spec["function_id"] == first.id


@pytest.mark.parametrize("fields, message", [
    ({"kind": "nuclio", "code": "x", "handler": "f"}, "the function kinds are python"),
    ({"code": "def f(): pass", "code_src": "main.py", "handler": "f"}, "exactly one"),
    ({"handler": "f"}, "got none"),
    ({"code": "def g(): pass", "handler": "f"}, "defines no function 'f'"),
    ({"code": "def f(): pass", "handler": "pkg.mod:f"}, "no module 'pkg.mod'"),
    ({"code_src": "s3://bucket/main.py", "handler": "f"}, "no S3 store"),
    ({"code_src": "zip+s3://bucket/x.zip", "handler": "f"}, "no S3 store"),
    ({"code": "def f(): pass", "handler": "f", "python_version": "PYTHON2_7"},
     "python_version"),
    ({"code": "def f(): pass", "handler": "f", "colour": "red"}, "unknown field"),
])
def test_bad_functions_are_refused(project, fields, message):
    with pytest.raises(ConfigurationError, match=message):
        project.new_function(name="bad", **fields)
    with pytest.raises(NotInCatalog):
        project.get_function("bad")


def test_base64_git_and_zip_sources(project, tmp_path):
    code = b"def f(x=2):\n    return x * 21\n"
    encoded = project.new_function(name="b", base64=base64.b64encode(code).decode(),
                                   handler="f")
    assert encoded.run(local_execution=True, wait=True).result("result") == 42
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "jobs.py").write_text("def g():\n    return 'v1'\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "v1"], check=True)
    subprocess.run(git + ["tag", "v1"], check=True)
    (repo / "pkg" / "jobs.py").write_text("def g():\n    return 'v2'\n")
    subprocess.run(git + ["commit", "-qam", "v2"], check=True)
    for ref, expected in (("", "v2"), ("#v1", "v1")):
        fn = project.new_function(name="g", code_src=f"git+file://{repo}{ref}",
                                  handler="pkg.jobs:g")
        assert fn.run(local_execution=True, wait=True).result("result") == expected
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("main.py", "def h():\n    return 'zipped'\n")
    fn = project.new_function(name="z", code_src=f"zip+file://{archive}", handler="h")
    assert fn.run(local_execution=True, wait=True).result("result") == "zipped"


def test_a_run_of_a_dead_process_is_settled(project, runtime, tmp_path):
    script = (f"import os, pyhost.runtime as dh\n"
              f"dh.configure({str(tmp_path / 'home')!r})\n"
              f"p = dh.get_project('demo')\n"
              f"fn = p.new_function(name='s', code_src={str(FUNCTIONS / 'main.py')!r},"
              f" handler='sleeper')\n"
              f"run = fn.run(local_execution=True, parameters={{'seconds': 60}})\n"
              f"run.wait(0.5)\n"
              f"print(run.id, flush=True)\n"
              f"os._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    run_id = done.stdout.strip()
    assert done.returncode == 9 and run_id, done.stderr
    assert project.get_run(run_id).status.state in ("READY", "RUNNING")
    dh.configure(tmp_path / "home")  # the next process to open the catalog settles it
    settled = project.get_run(run_id)
    assert settled.status.state == "ERROR"
    assert "host process exited" in settled.status.message


def test_a_local_failure_is_the_users_traceback_too(project):
    run = function(project, "fails").run(wait=True, local_execution=True)
    traceback = run.status.error["traceback"]
    assert run.status.state == "ERROR" and "run_job" not in traceback
    assert traceback.splitlines()[1].strip().endswith("in fails")


def test_a_python_version_this_interpreter_is_not_is_refused(project, launcher):
    other = "PYTHON3_9" if sys.version_info[:2] != (3, 9) else "PYTHON3_10"
    fn = function(project, "func1", python_version=other)
    for where in ({"launcher": launcher}, {"local_execution": True}):
        with pytest.raises(ConfigurationError, match="python_version"):
            fn.run(parameters={"param1": 1}, **where)
    assert not launcher.started


def test_undecorated_handlers_return_result(project, launcher):
    run = function(project, "takes_any").run(parameters={"b": 1, "a": 2}, wait=True,
                                             launcher=launcher)
    assert run.status.results == {"output_0": ["a", "b"]}  # DigitalHub's name for it
    assert run.result("result") == ["a", "b"]  # pyhost's name answers too


def test_refused_calls_raise_in_the_handler_and_the_run_goes_on(project, launcher, tmp_path):
    run = function(project, "careful").run(wait=True, launcher=launcher)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("refused") == ["runtime.get_entity", "runtime.get_entity",
                                     "runtime.log_entity"]
    model = project.get_model("m")
    assert run.output("model") == model
    assert model.spec["framework"] == "sklearn" and model.spec["metrics"]["accuracy"] == 0.93
    assert model.files[0]["size"] == 3 * 1024 * 1024 + 5  # sent in four chunks
    assert [m.name for m in project.list_models()] == ["m"]
    assert not project.list_artifacts()


def test_a_returned_table_is_readable_from_a_new_process(project, table, launcher, tmp_path):
    run = function(project, "func5").run(inputs={"di": table.key}, parameters={"param1": "p"},
                                         outputs={"result": "shared"}, wait=True,
                                         launcher=launcher)
    script = (f"import pyhost.runtime as dh\n"
              f"dh.configure({str(tmp_path / 'home')!r})\n"
              f"df = dh.get_project('demo').get_dataitem('shared').as_df()\n"
              f"print(list(df['label']), int(df['x'].sum()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "['p', 'p', 'p'] 6", done.stderr
    assert {d.name for d in project.list_dataitems()} == {"d", "shared"}
    assert run.output("shared").key in run.status.produced


def test_four_processes_run_two_hundred_jobs_each_into_one_catalog(tmp_path):
    home = tmp_path / "shared-home"
    script = (f"import sys, pyhost.runtime as dh\n"
              f"dh.configure({str(home)!r})\n"
              f"p = dh.get_or_create_project('many')\n"
              f"fn = p.new_function(name='add', code='def add(x):\\n    return x + 1\\n',"
              f" handler='add')\n"
              f"for i in range(200):\n"
              f"    run = fn.run(local_execution=True, parameters={{'x': i}}, wait=True)\n"
              f"    assert run.status.state == 'COMPLETED', run.status.to_dict()\n")
    workers = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                                text=True) for _ in range(4)]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0, 0], errors
    assert not any("locked" in error for error in errors)
    runs = dh.configure(home) and dh.get_project("many").list_runs()
    assert len(runs) == 800 and {run.status.state for run in runs} == {"COMPLETED"}
    assert sorted(run.result("result") for run in runs) == sorted(list(range(1, 201)) * 4)
    assert len(dh.get_project("many").list_functions()) == 1  # one version, saved 4 times


def test_a_local_run_leaves_the_versions_source_as_it_was(project, launcher):
    fn = function(project, "func1")
    before = fn.source().files
    assert fn.run(local_execution=True, parameters={"param1": 1}, wait=True).result(
        "result") == "hello 1"
    again = project.get_function(fn.name)  # read afresh from the store
    assert again.source().files == before and again.id == fn.id
    assert fn.run(launcher=launcher, parameters={"param1": 2}, wait=True).result(
        "result") == "hello 2"


def test_the_host_logs_a_directory_artifact_in_chunks(project, tmp_path):
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("A")
    (source / "sub" / "b.bin").write_bytes(b"B" * (3 * 1024 * 1024 + 1))
    artifact = project.log_artifact(name="tree", source=str(source))
    assert artifact.files == [{"path": "a.txt", "size": 1},
                              {"path": "sub/b.bin", "size": 3 * 1024 * 1024 + 1}]
    out = Path(artifact.download(tmp_path / "out"))
    assert (out / "sub" / "b.bin").read_bytes() == b"B" * (3 * 1024 * 1024 + 1)
    with pytest.raises(ConfigurationError, match="no such file"):
        project.log_artifact(name="missing", source=str(tmp_path / "nope"))


def test_an_async_handler_is_refused_for_a_job_before_anything_starts(project):
    fn = project.new_function(name="a", code="async def f():\n    return 1\n", handler="f")
    with pytest.raises(ConfigurationError, match="async def: a job calls its handler once"):
        fn.run(wait=True, local_execution=True)
    assert not project.list_runs()
