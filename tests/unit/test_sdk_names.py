"""DigitalHub's names and behaviours where the design is silent (issue #19, parts 3-5),
without Docker: module-level functions, project arguments, run accessors, an undecorated
handler's ``output_0``, resources, ``as_df``/``download``, ISO times, ``python_version``
None, and serve runs waited for (on the process launcher: real uvicorn, real sessions)."""

from __future__ import annotations

import logging
import textwrap
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, NotInCatalog
from pyhost.runtime.tasks.spec import parse_resources

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
SERVING = Path(__file__).resolve().parents[1] / "support" / "serving" / "main.py"


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("sdk", description="the SDK's names")


def _code(text: str) -> str:
    return textwrap.dedent(text).lstrip()


# -- module-level functions and the project's arguments ------------------------------------

def test_module_level_functions_take_the_project_as_the_sdk_does(project, tmp_path):
    fn = dh.new_function(project="sdk", name="double", kind="python",
                         code="def double(x):\n    return 2 * x\n", handler="double")
    assert dh.get_function("double", project="sdk").id == fn.id
    assert dh.get_function(fn.key).id == fn.id
    assert dh.get_function("double", project="sdk", entity_id=fn.id).id == fn.id
    run = fn.run(action="job", parameters={"x": 21}, local_execution=True, wait=True)
    assert dh.get_run(run.id).id == run.id
    assert dh.get_run(run.key, project="sdk").id == run.id
    with pytest.raises(NotInCatalog):
        dh.get_run(run.id, project="elsewhere")
    assert [r.id for r in dh.list_runs("sdk")] == [run.id]
    assert [r.id for r in dh.list_runs("sdk", function="double", action="job")] == [run.id]
    assert dh.list_runs("sdk", action="serve") == []

    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    item = dh.log_dataitem(project="sdk", name="t", kind="table", source=str(csv))
    art = dh.log_artifact(project="sdk", name="a", source=str(csv))
    model = dh.log_model(project="sdk", name="m", source=str(csv), framework="sklearn")
    assert dh.get_dataitem("t", project="sdk") == item == dh.get_dataitem(item.key)
    assert dh.get_artifact("a", project="sdk") == art
    assert dh.get_model(model.key) == model and model.spec["framework"] == "sklearn"
    assert dh.get_dataitem("t", project="sdk", entity_id=item.id) == item
    with pytest.raises(ConfigurationError, match="give project="):
        dh.get_artifact("a")
    with pytest.raises(ConfigurationError, match="is a dataitem, not a model"):
        dh.get_model(item.key)


def test_get_or_create_project_records_the_sdks_arguments(runtime):
    made = dh.get_or_create_project("p2", description="about p2", labels=["x"],
                                    config={"k": 1}, context="./ctx", setup_kwargs={})
    spec = made._record.document["spec"]
    assert spec == {"description": "about p2", "labels": ["x"], "config": {"k": 1}}
    again = dh.get_or_create_project("p2", description="changed")  # exists: unchanged
    assert again._record.document["spec"]["description"] == "about p2"
    with pytest.raises(ConfigurationError, match="unknown argument"):
        dh.get_or_create_project("p3", colour="red")
    with pytest.raises(ConfigurationError, match="labels are a list"):
        dh.get_or_create_project("p3", labels="x")


def test_metadata_times_are_iso_8601(project, tmp_path):
    fn = project.new_function(name="f", kind="python", code="def f():\n    return 1\n",
                              handler="f")
    run = fn.run(local_execution=True, wait=True)
    item = project.log_dataitem(name="d", data=pd.DataFrame({"x": [1]}))
    for metadata in (project._record.document["metadata"], fn._record.document["metadata"],
                     run.metadata, item.metadata):
        for field in ("created", "updated"):
            parsed = datetime.fromisoformat(metadata[field])
            assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0


# -- runs: accessors, log_info, output_0 ------------------------------------------------------

def test_an_undecorated_value_is_output_0_and_result_still_answers(project, caplog):
    fn = project.new_function(name="f", kind="python",
                              code="def f(x):\n    return x + 1\n", handler="f")
    with caplog.at_level(logging.INFO, logger="pyhost.runtime"):
        run = fn.run(parameters={"x": 1}, local_execution=True, wait=True, log_info=True)
        run.wait(log_info=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.results() == {"output_0": 2}
    assert run.result("output_0") == 2 and run.result("result") == 2
    assert run.outputs() == {} and run.inputs() == {}
    assert any(run.id in record.getMessage() for record in caplog.records)
    with pytest.raises(NotInCatalog, match="no result 'other'"):
        run.result("other")
    with pytest.raises(ConfigurationError, match="log_info is True or False"):
        fn.run(parameters={"x": 1}, local_execution=True, log_info="yes")


def test_an_undecorated_table_is_logged_as_output_0_or_as_mapped(project, tmp_path):
    code = "import pandas as pd\n\ndef t():\n    return pd.DataFrame({'v': [1, 2]})\n"
    fn = project.new_function(name="t", kind="python", code=code, handler="t")
    run = fn.run(local_execution=True, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    outputs = run.outputs()
    assert list(outputs) == ["output_0"] and outputs["output_0"].name == "output_0"
    assert run.output("result") == outputs["output_0"]
    assert run.outputs(as_key=True) == {"output_0": outputs["output_0"].key}
    assert run.outputs(as_dict=True)["output_0"]["kind"] == "table"
    for alias in ("output_0", "result"):
        mapped = fn.run(local_execution=True, wait=True, outputs={alias: f"named-{alias}"})
        assert mapped.status.state == "COMPLETED", mapped.status.error
        assert list(mapped.outputs()) == [f"named-{alias}"]
        assert mapped.outputs()[f"named-{alias}"].as_df()["v"].tolist() == [1, 2]


def test_inputs_are_the_entities_given(project):
    item = project.log_dataitem(name="d", data=pd.DataFrame({"x": [1, 2]}))
    fn = project.new_function(name="count", kind="python",
                              code="def count(di):\n    return len(di.as_df())\n",
                              handler="count")
    run = fn.run(inputs={"di": item.key}, local_execution=True, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.inputs() == {"di": item}
    assert run.inputs(as_dict=True)["di"]["key"] == item.key
    assert run.result("result") == 2


# -- python_version ------------------------------------------------------------------------

def test_python_version_defaults_to_none_and_runs_on_any_python(project, launcher):
    fn = project.new_function(name="v", kind="python",
                              code="import sys\n\ndef v():\n    return sys.version\n",
                              handler="v")
    assert fn.spec["python_version"] is None
    run = fn.run(launcher=launcher, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    with pytest.raises(ConfigurationError, match="python_version='PYTHON2_7'"):
        project.new_function(name="w", kind="python", code="def w():\n    pass\n",
                             handler="w", python_version="PYTHON2_7")


# -- resources -----------------------------------------------------------------------------

@pytest.mark.parametrize("resources, expected", [
    ({"cpu": "500m", "mem": "64Mi"}, (0.5, 64 * 1024**2)),
    ({"memory": "1Gi"}, (None, 1024**3)),
    ({"cpu": 2, "gpu": 0}, (2.0, None)),
])
def test_resources_take_the_sdks_names(resources, expected):
    assert parse_resources(resources) == expected


@pytest.mark.parametrize("resources, message", [
    ({"gpu": 1}, "resources.gpu=1: this engine gives containers no GPU"),
    ({"gpu": "1"}, "no GPU"),
    ({"mem": "1Gi", "memory": "1Gi"}, "not both"),
    ({"mem": "lots"}, "resources.mem='lots'"),
    ({"disk": "1Gi"}, "unknown disk"),
])
def test_bad_resources_are_refused_before_a_start(project, resources, message):
    fn = project.new_function(name="f", kind="python", code="def f():\n    pass\n",
                              handler="f")
    with pytest.raises(ConfigurationError, match=message):
        fn.run(launcher="process", resources=resources)
    assert project.list_runs() == []


# -- dataitems and downloads ---------------------------------------------------------------

def test_as_df_reads_csv_and_parquet_files(project, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("a;b\n1;x\n2;y\n")
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [3, 4]}).to_parquet(parquet)
    odd = tmp_path / "rows.data"
    odd.write_text("a\n5\n")
    from_csv = project.log_dataitem(name="c", kind="table", source=str(csv))
    assert from_csv.as_df(sep=";").to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    from_parquet = dh.log_dataitem(project="sdk", name="p", source=str(parquet))
    assert from_parquet.as_df()["a"].tolist() == [3, 4]
    by_format = project.new_dataitem("o", kind="table", path=str(odd))
    assert by_format.spec["path"] == str(odd)
    assert by_format.as_df(file_format="csv")["a"].tolist() == [5]
    with pytest.raises(ConfigurationError, match="as_df reads one CSV or Parquet file"):
        by_format.as_df()
    with pytest.raises(ConfigurationError, match="file_format='xlsx'"):
        from_csv.as_df(file_format="xlsx")
    logged = project.log_dataitem(name="df", data=pd.DataFrame({"z": [7]}))
    assert logged.as_df()["z"].tolist() == [7]
    with pytest.raises(ConfigurationError, match="no remote store"):
        dh.new_dataitem(project="sdk", name="s3", path="s3://bucket/x.csv")
    with pytest.raises(ConfigurationError, match="not both"):
        project.log_dataitem(name="both", data=pd.DataFrame({"z": [7]}), source=str(csv))


def test_as_df_and_download_of_a_tampered_record_stay_in_the_store(project, runtime, tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("a\n1\n")
    item = project.log_dataitem(name="c", kind="table", source=str(source))
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\n1\n")
    document = item.to_dict()
    for tampered in ({**document["status"], "files": [{"path": "../../../../../../outside.csv",
                                                       "size": 9}]},
                     {**document["status"], "path": str(tmp_path)}):
        forged = dh.Dataitem({**document, "status": tampered}, runtime)
        with pytest.raises(ValueError, match="store"):
            forged.as_df()
        with pytest.raises(ValueError, match="store"):
            forged.download(tmp_path / "dl", overwrite=True)


def test_download_refuses_to_overwrite_unless_asked(project, tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights")
    model = project.log_model(name="m", source=str(source))
    target = tmp_path / "out"
    path = model.download(target)
    assert Path(path).read_bytes() == b"weights"
    Path(path).write_bytes(b"mine")
    with pytest.raises(ConfigurationError, match="exists; pass overwrite=True"):
        model.download(target)
    assert Path(path).read_bytes() == b"mine"
    assert Path(model.download(destination=target, overwrite=True)).read_bytes() == b"weights"


# -- serve runs waited for (process launcher) ----------------------------------------------

SLOW_INIT = _code("""
    import time

    def init_slow(context, seconds=600):
        print("warming up the model")
        context.logger.info("still loading")
        time.sleep(seconds)

    def handler(context, event):
        return "ok"
""")


def _serve_fn(project, **fields):
    return project.new_function(name="slow", kind="python", code=SLOW_INIT,
                                handler="handler", **fields)


def test_a_serve_run_waited_for_returns_once_every_replica_answers(project):
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler")
    run = fn.run(action="serve", launcher="process", replicas=2, wait=True, log_info=True)
    try:
        assert run.status.state == "RUNNING", run.status.error
        assert all(r["state"] == "ready" for r in run.status.replicas)
        assert run.wait() is run and run.status.state == "RUNNING"  # returns: it serves
        assert run.invoke(path="/x").status == 200
    finally:
        run.stop()


def test_a_serve_run_not_waited_for_comes_up_and_run_wait_returns_when_it_serves(project):
    fn = project.new_function(name="srv", kind="python", code_src=str(SERVING),
                              handler="handler")
    run = fn.run(action="serve", launcher="process", wait=False)
    try:
        assert run.status.state in ("READY", "RUNNING")
        run.wait(timeout=60, log_info=True)
        assert run.status.state == "RUNNING", run.status.error
        assert run.invoke(path="/x").status == 200
    finally:
        run.stop()


def test_a_replica_that_does_not_come_up_in_time_is_named_with_its_logs(project, launcher):
    run = _serve_fn(project, init_function="init_slow").run(
        action="serve", launcher=launcher, replicas=2, ready_timeout=5)
    assert run.status.state == "ERROR"
    error = run.status.error
    assert error["type"] == "TimeoutError"
    assert "2 of 2 replica(s) did not answer within 5 s" in error["message"]
    assert "replica 0 (" in error["message"] and "replica 1 (" in error["message"]
    assert "warming up the model" in error["message"] and "still loading" in error["message"]
    assert all(instance.proc.poll() is not None for instance in launcher.started)


def test_run_wait_with_a_timeout_fails_a_start_that_is_not_up(project, launcher):
    run = _serve_fn(project, init_function="init_slow").run(
        action="serve", launcher=launcher, wait=False)
    assert run.status.state == "READY"
    run.wait(timeout=3)
    assert run.status.state == "ERROR"
    assert "1 of 1 replica(s) did not answer within 3 s" in run.status.error["message"]
    assert "warming up the model" in run.status.error["message"]
    assert all(instance.proc.poll() is not None for instance in launcher.started)


@pytest.mark.parametrize("settings, message", [
    ({"wait": "yes"}, "wait is True or False"),
    ({"ready_timeout": 0}, "ready_timeout is a number of seconds > 0"),
    ({"ready_timeout": "1"}, "ready_timeout is a number"),
])
def test_bad_serve_wait_settings_are_refused(project, settings, message):
    with pytest.raises(ConfigurationError, match=message):
        _serve_fn(project).run(action="serve", launcher="process", **settings)
    assert project.list_runs() == []
