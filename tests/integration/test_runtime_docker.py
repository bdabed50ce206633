"""The python runtime's jobs in real session containers: the same sandbox and channel as a
session; every call the handler makes on its project travels back over that channel."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError
from pyhost.launchers.docker.image import DEFAULT_TAG
from pyhost.launchers.ownership import LABEL_PREFIX

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"


@pytest.fixture
def project(tmp_path, client):
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("demo")


@pytest.fixture(autouse=True)
def containers_removed_soon_after(client):
    """A completed run's container is removed just after the run is recorded (the removal
    is not the run's time): each test leaves none behind within a few seconds."""
    yield
    deadline = time.monotonic() + 10
    while _our_containers(client) and time.monotonic() < deadline:
        time.sleep(0.05)


def function(project, handler, **fields):
    return project.new_function(name=f"fn-{handler}", kind="python",
                                code_src=str(FUNCTIONS / "main.py"), handler=handler, **fields)


def _our_containers(client):
    return client.api.containers(
        all=True, filters={"label": [f"{LABEL_PREFIX}.owner.pid={os.getpid()}"]})


def test_the_design_usage_in_a_container(project, client):
    di = project.log_dataitem(name="d", kind="table",
                              data=pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}))
    fn = project.new_function(name="python-function", kind="python",
                              code_src=str(FUNCTIONS / "main.py"), handler="func5",
                              python_version="PYTHON3_11")
    run = fn.run(action="job", inputs={"di": di.key}, parameters={"param1": "some value"},
                 outputs={"result": "named_result"}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("total") == 6
    df = run.output("named_result").as_df()
    assert list(df["label"]) == ["some value"] * 3
    assert run.status.container  # it ran in a container, removed once the run was recorded
    deadline = time.monotonic() + 10
    while _our_containers(client):
        assert time.monotonic() < deadline, "the run's container was not removed"
        time.sleep(0.05)


def test_a_text_table_logged_in_the_container_reads_back_cell_for_cell(project):
    spec = importlib.util.spec_from_file_location("test_functions", FUNCTIONS / "main.py")
    assert spec is not None and spec.loader is not None
    functions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(functions)
    run = function(project, "text_table").run(wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    df = project.get_dataitem("texts").as_df()
    expected = functions.text_cells(5000)
    assert df["t"].isna().tolist() == [cell is None for cell in expected]
    assert df["t"].dropna().tolist() == [cell for cell in expected if cell is not None]


def test_an_artifact_logged_in_the_container_arrives_with_its_bytes(project, tmp_path):
    run = function(project, "func3").run(parameters={"param1": "c3"}, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    artifact = project.get_artifact("report")
    assert artifact.files == [{"path": "report.txt", "size": len("report for c3\n") * 1000}]
    assert Path(artifact.download(tmp_path / "out")).read_text() == "report for c3\n" * 1000


def test_metrics_logged_in_the_container_are_series_and_bounded(project):
    def metrics_run(handler):
        return project.new_function(name=f"m-{handler}", kind="python",
                                    code_src=str(FUNCTIONS / "metrics.py"),
                                    handler=handler).run(wait=True)

    run = metrics_run("training")
    assert run.status.state == "COMPLETED", run.status.error
    assert [(point["value"], point["step"]) for point in run.metrics("loss")] == \
        [(1.0, 0), (0.5, 1), (1 / 3, 2), (0.2, 3), (0.1, 4)]
    assert [point["step"] for point in run.metrics("batch")] == [5, 6]
    assert run.status.metrics == {"loss": 0.1, "accuracy": 0.75, "lr": 0.1, "batch": 64,
                                  "f1": 0.9}
    refused = metrics_run("refused")  # each refusal a HostCallError the handler catches
    assert refused.status.state == "COMPLETED", refused.status.error
    messages = refused.result("output_0")
    assert "an int or a float" in messages[0] and messages[-2] is None
    assert "at most 100000 metric points" in messages[-1]
    assert len(refused.metrics("flood")) == 100_000


def test_a_failure_in_the_container_is_the_users_traceback(project):
    run = function(project, "fails").run(wait=True, backoff_limit=1)
    assert run.status.state == "ERROR"
    assert run.status.error["type"] == "KeyError"
    assert 'raise KeyError("nothing here")' in run.status.error["traceback"]
    assert len(run.status.attempts) == 2


def test_resources_become_container_limits_and_stop_removes_it(project, client):
    run = function(project, "sleeper").run(parameters={"seconds": 60},
                                           resources={"cpu": "500m", "memory": "256Mi"})
    deadline = time.monotonic() + 60
    while not run.refresh().status.container:
        assert run.status.state in ("READY", "RUNNING") and time.monotonic() < deadline
        time.sleep(0.05)
    host = client.api.inspect_container(run.status.container)["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 * 1024**2
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert run.stop().status.state == "STOPPED"
    assert not _our_containers(client)


def test_a_secret_reaches_the_container_only(project, monkeypatch, tmp_path):
    token = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("API_TOKEN", token)
    run = function(project, "secret_user").run(secrets=["API_TOKEN"], wait=True)
    assert run.result("result") == len(token)
    assert "***" in run.logs() and token not in run.logs()
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_argument_errors_start_no_container(project, client):
    before = len(_our_containers(client))
    with pytest.raises(ConfigurationError):
        function(project, "func1").run(parameters={"nope": 1})
    with pytest.raises(ConfigurationError):
        function(project, "func4").run()
    assert len(_our_containers(client)) == before and not project.list_runs()


def test_a_python_version_the_image_has_not_is_refused_before_it_starts(project, client):
    # An image given by name is taken as is, so its Python must be the one asked for
    # (without image=, PYTHON3_9 runs in hxpy:py3.9: test_python_images.py).
    fn = function(project, "func1", python_version="PYTHON3_9", image=DEFAULT_TAG)
    with pytest.raises(ConfigurationError, match=r"has Python 3\.11.*PYTHON3_11"):
        fn.run(parameters={"param1": 1})
    assert not _our_containers(client) and not project.list_runs()


def test_volumes_a_named_one_read_only_and_a_scratch_tmpfs(project, client):
    name = f"pyhost-test-{os.getpid()}-{int(time.time() * 1000)}"
    client.api.create_volume(name, labels={f"{LABEL_PREFIX}.test": "1"})
    try:
        seeder = client.api.create_container(
            "hxpy:latest", entrypoint=["python3", "-c",
                                       "open('/v/seed.txt', 'w').write('seeded')"],
            host_config=client.api.create_host_config(
                mounts=[{"Target": "/v", "Source": name, "Type": "volume"}]),
            user="0", labels={f"{LABEL_PREFIX}.owner.pid": str(os.getpid())})
        client.api.start(seeder)
        assert client.api.wait(seeder, timeout=60)["StatusCode"] == 0
        client.api.remove_container(seeder, force=True)
        run = function(project, "volume_probe").run(wait=True, volumes=[
            {"volume_type": "persistent_volume_claim", "name": name, "mount_path": "/data"},
            {"volume_type": "empty_dir", "mount_path": "/scratch",
             "spec": {"size_limit": "16Mi"}}])
        assert run.status.state == "COMPLETED", run.status.error
        assert run.result("result") == {"seen": "seeded", "data_writable": False}
    finally:
        deadline = time.monotonic() + 10
        while _our_containers(client) and time.monotonic() < deadline:
            time.sleep(0.05)  # the run's container goes just after the run is recorded
        client.api.remove_volume(name, force=True)


@pytest.mark.parametrize("volumes, message", [
    ([{"volume_type": "nfs", "mount_path": "/d"}], "volume_type='nfs'"),
    ([{"volume_type": "empty_dir", "mount_path": "/etc"}], "not on / or under"),
    ([{"volume_type": "persistent_volume_claim", "mount_path": "/d"}], "name the volume"),
])
def test_bad_volumes_are_refused_before_anything_starts(project, client, volumes, message):
    with pytest.raises(ConfigurationError, match=message):
        function(project, "volume_probe").run(volumes=volumes)
    assert not _our_containers(client)


FLOOD = """
import sys

def main(megabytes):
    sys.stdout.buffer.write(b"garbage \\xff\\xfe\\xc3 end\\n")  # not UTF-8
    print("first line")
    line = "y" * 99 + "\\n"
    for i in range(megabytes * 10_000):
        sys.stdout.write(line)
    print("last line")
    return megabytes
"""


def test_a_flood_of_output_is_capped_to_head_and_tail_in_bounded_host_memory(project):
    from tests.security.conftest import peak_rss_bytes, reset_peak_rss

    fn = project.new_function(name="flood", kind="python", code=FLOOD, handler="main")
    before = reset_peak_rss()
    run = fn.run(parameters={"megabytes": 200}, log_cap="4Mi", wait=True)
    grown = peak_rss_bytes() - before
    assert run.status.state == "COMPLETED", run.status.error
    logs = run.logs()
    assert logs.startswith("garbage \ufffd\ufffd\ufffd end\nfirst line\n" + "y" * 99 + "\n")
    assert logs.endswith("y" * 99 + "\nlast line\n")
    assert logs.count("bytes of logs dropped by pyhost (log_cap=4Mi)") == 1
    assert len(logs.encode()) <= (4 << 20) + 4096
    # 200 MB went through this process: never more than a few buffers of it at once.
    assert grown < 64 << 20, f"the host's peak grew by {grown >> 20} MiB"
