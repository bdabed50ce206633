"""DigitalHub's usage, in real containers: the design's runtime examples and an ETL in the
shape of DigitalHub's documentation. Handler files are as the SDK's users write them; the
host code is what they write with ``import digitalhub as dh``, the import line aside."""

from pathlib import Path

import pandas as pd

HANDLERS = Path(__file__).resolve().parent / "handlers"


def test_the_design_new_function_with_project_and_a_job(dh):
    dh.get_or_create_project("demo", description="the design's project")
    function = dh.new_function(project="demo", name="func1", kind="python",
                               code_src=str(HANDLERS / "design.py"), handler="func1")
    run = function.run(action="job", parameters={"param1": "world"}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.results() == {"output_0": "hello world"}
    assert dh.get_run(run.key).status.state == "COMPLETED"
    assert [listed.id for listed in dh.list_runs(project="demo")] == [run.id]


def test_the_design_outputs_dataitem_and_label(dh):
    project = dh.get_or_create_project("demo")
    di = project.log_dataitem(name="d", kind="table", data=pd.DataFrame({"x": [1, 2, 3]}))
    function = project.new_function(name="func2", kind="python",
                                    code_src=str(HANDLERS / "design.py"), handler="func2")
    run = function.run(action="job", inputs={"di": di.key}, parameters={"param1": "p"},
                       outputs={"dataitem": "labelled", "label": "the_label"}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert list(run.output("labelled").as_df()["label"]) == ["p"] * 3
    assert run.results()["label"] == "p"
    assert dh.get_dataitem("labelled", project="demo").as_df()["x"].tolist() == [1, 2, 3]


def test_the_design_backoff_limit_one_makes_two_attempts(dh):
    project = dh.get_or_create_project("demo")
    function = project.new_function(name="fails", kind="python",
                                    code_src=str(HANDLERS / "design.py"),
                                    handler="always_fails")
    run = function.run(action="job", parameters={"param1": "x"}, backoff_limit=1, wait=True)
    assert run.status.state == "ERROR"
    assert len(run.status.attempts) == 2
    assert "ValueError: no good: x" in run.status.error["traceback"]


def test_an_etl_in_the_shape_of_the_documentation(dh, tmp_path):
    source = tmp_path / "measures.csv"  # the documentation downloads it; here it is local
    source.write_text("station;value\n" + "".join(f"s{i};{i}\n" for i in range(20)))
    project = dh.get_or_create_project("etl")
    url = project.new_dataitem(name="url_data_item", kind="table", path=str(source))
    collect = project.new_function(name="download-data", kind="python",
                                   code_src=str(HANDLERS / "etl.py"), handler="downloader")
    run = collect.run(action="job", inputs={"url": url.key}, outputs={"dataset": "dataset"},
                      wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    dataset = project.get_dataitem("dataset")
    assert dataset.as_df()["value"].sum() == sum(range(20))

    process = project.new_function(name="process-measures", kind="python",
                                   code_src=str(HANDLERS / "etl.py"), handler="process")
    run = process.run(action="job", inputs={"di": dataset.key},
                      parameters={"min_value": 15}, outputs={"filtered": "filtered"},
                      wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.output("filtered").as_df()["station"].tolist() == [f"s{i}" for i in
                                                                   range(15, 20)]
    assert project.get_dataitem("summary").as_df()["rows"].tolist() == [5]
    assert run.outputs() and run.inputs()
