"""Metrics as series (issue #21, item 4), without Docker: a handler's ``run.log_metric`` and
``run.log_metrics`` in the real hxpy server as a local process and in this process, read back
with ``run.metrics(name)``; the series file, its bounds and its masking on the host."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, NotInCatalog
from pyhost.runtime.host_calls import HostCalls
from pyhost.runtime.limits import RunLimits, masker
from pyhost.runtime.metric_series import (
    MAX_METRIC_POINTS,
    MetricSeries,
    check_metrics,
    read_series,
    series_path,
)

METRICS = Path(__file__).resolve().parents[1] / "support" / "functions" / "metrics.py"
SECRET = "s3cr3t-Qm4"


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("metrics")


def metrics_function(project, handler):
    return project.new_function(name=f"m-{handler}", kind="python", code_src=str(METRICS),
                                handler=handler)


def values_and_steps(series):
    return [(point["value"], point["step"]) for point in series]


@pytest.mark.parametrize("where", ["process", "local"])
def test_every_value_is_kept_with_its_step_and_the_status_has_the_last(project, launcher,
                                                                        where):
    before = time.time()
    settings = {"local_execution": True} if where == "local" else {"launcher": launcher}
    run = metrics_function(project, "training").run(wait=True, **settings)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.status.metrics == {"loss": 0.1, "accuracy": 0.75, "lr": 0.1, "batch": 64,
                                  "f1": 0.9}  # the last point of each
    assert values_and_steps(run.metrics("loss")) == [(1.0, 0), (0.5, 1), (1 / 3, 2),
                                                     (0.2, 3), (0.1, 4)]
    assert values_and_steps(run.metrics("accuracy")) == [(0.5, 10), (0.75, 20)]
    assert values_and_steps(run.metrics("lr")) == [(0.1, 5)]
    assert values_and_steps(run.metrics("batch")) == [(32, 5), (64, 6)]
    assert values_and_steps(run.metrics("f1")) == [(0.9, 0)]  # overwrite dropped 0.5
    everything = run.metrics()
    assert sorted(everything) == ["accuracy", "batch", "f1", "loss", "lr"]
    times = [point["time"] for points in everything.values() for point in points]
    assert all(before <= moment <= time.time() for moment in times)
    assert run.metrics("lr")[0]["time"] == run.metrics("batch")[0]["time"]  # one call
    with pytest.raises(NotInCatalog, match="logged no metric 'nope'.*accuracy"):
        run.metrics("nope")


def test_a_run_from_another_process_reads_the_same_series(project, launcher):
    run = metrics_function(project, "training").run(wait=True, launcher=launcher)
    again = dh.get_run(run.id)
    assert again.metrics() == run.metrics()
    assert dh.get_run(run.id).metrics("loss")[-1]["value"] == 0.1


def test_what_the_host_refuses_the_handler_can_catch(project, launcher):
    run = metrics_function(project, "refused").run(wait=True, launcher=launcher)
    assert run.status.state == "COMPLETED", run.status.error
    text, boolean, holed, step, name, not_dict, at_cap, past_cap = run.result("output_0")
    assert "metric 'bad': an int or a float, or a list of them" in text and "str" in text
    assert "bool True" in boolean
    assert "a list holding NoneType" in holed
    assert "step=-1: a whole number >= 0" in step
    assert "a name of 1-256 characters" in name
    assert "metrics must be a dict" in not_dict
    assert at_cap is None
    assert f"at most {MAX_METRIC_POINTS} metric points" in past_cap
    assert "MAX_METRIC_POINTS" in past_cap and "refused whole" in past_cap
    assert len(run.metrics("flood")) == MAX_METRIC_POINTS
    assert run.status.metrics == {"flood": 0.0}  # a list: its last item, the row stays small


def test_a_run_that_logged_nothing_has_no_series(project, launcher):
    run = project.new_function(name="quiet", kind="python", code="def f():\n    return 1\n",
                               handler="f").run(wait=True, launcher=launcher)
    assert run.metrics() == {}
    with pytest.raises(NotInCatalog, match="it logged none"):
        run.metrics("loss")


# -- the host's half -------------------------------------------------------------------------

def host_calls(runtime, run_id="r1", **limits):
    return HostCalls(runtime, "metrics", run_id, f"store://metrics/run/python+job/{run_id}",
                     RunLimits.from_settings(**limits), masker({"T": SECRET}))


def test_names_are_masked_and_the_file_holds_no_secret(runtime):
    host = host_calls(runtime)
    host.log_metrics({f"loss-{SECRET}": 1.5, "n": 2})
    assert host.metrics == {"loss-***": 1.5, "n": 2}
    path = runtime.store.root / series_path("metrics", "r1")
    assert SECRET not in path.read_text() and "loss-***" in path.read_text()


def test_numpy_numbers_become_plain_and_nan_survives(runtime):
    np = pytest.importorskip("numpy")
    host = host_calls(runtime)
    host.log_metrics({"i": np.int64(3), "f": np.float32(0.5), "nan": float("nan"),
                      "inf": [float("inf")]})
    assert host.metrics["i"] == 3 and type(host.metrics["i"]) is int
    assert type(host.metrics["f"]) is float
    series = read_series((runtime.store.root / series_path("metrics", "r1"))
                         .read_text().splitlines())
    assert math.isnan(series["nan"][0]["value"]) and series["inf"][0]["value"] == math.inf


def test_a_refused_call_writes_nothing_and_counts_nothing(runtime, tmp_path):
    series = MetricSeries(tmp_path / "s.jsonl", max_points=5, max_names=2)
    series.log(check_metrics({"a": [1, 2, 3]}), None, False)
    with pytest.raises(ConfigurationError, match="at most 5 metric points"):
        series.log(check_metrics({"a": [4, 5, 6]}), None, False)
    with pytest.raises(ConfigurationError, match="at most 2 metric names.*MAX_METRIC_NAMES"):
        series.log(check_metrics({"b": 1, "c": 2}), None, False)
    series.log(check_metrics({"a": 4, "b": 5}), None, False)  # exactly at both bounds
    assert series.points == 5
    assert [json.loads(line)["value"] for line in series.path.read_text().splitlines()] == \
        [1, 2, 3, 4, 5]

    def no_room(size):
        raise ConfigurationError(f"no room for {size} bytes")

    fresh = MetricSeries(tmp_path / "t.jsonl")
    with pytest.raises(ConfigurationError, match="no room"):
        fresh.log(check_metrics({"a": 1}), None, False, admit=no_room)
    assert fresh.points == 0 and not fresh.path.exists()


def test_the_store_quota_counts_the_series(runtime):
    host = host_calls(runtime, store_quota="1Ki")
    with pytest.raises(ConfigurationError, match="store_quota=1Ki exceeded: the metrics"):
        host.log_metric("x", list(range(500)))
    assert host.exceeded and host.metrics == {}
    with pytest.raises(ConfigurationError, match="went over a quota"):
        host.log_metric("y", 1)


def test_a_new_attempt_starts_a_new_series(runtime):
    host_calls(runtime).log_metric("loss", [3, 2, 1])
    retry = host_calls(runtime)  # a job's next attempt has a call table of its own
    retry.log_metric("loss", 0.5)
    path = runtime.store.root / series_path("metrics", "r1")
    assert values_and_steps(read_series(path.read_text().splitlines())["loss"]) == [(0.5, 0)]


def test_a_line_still_being_written_is_skipped():
    lines = ['{"name": "a", "value": 1, "step": 0, "time": 1.0}', '{"name": "a", "val']
    assert read_series(lines) == {"a": [{"value": 1, "step": 0, "time": 1.0}]}
