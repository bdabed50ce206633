"""Handlers written by an attacker, run as jobs (and a serve run) in real containers against a
real catalog: each attack gets a clear refusal, the host stays within its bound (open file
descriptors, bytes in the store, log size, resident memory), and a run of another project
started meanwhile completes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import pyhost.runtime as dh
from hxpy.runtime import calls
from pyhost import ConfigurationError
from tests.security.conftest import open_fds, peak_rss_bytes, rss_bytes, tree_bytes
from tests.support.tamper import point_outputs_at

SUPPORT = Path(__file__).resolve().parents[1] / "support"
HOSTILE = SUPPORT / "functions" / "hostile.py"
SERVING = SUPPORT / "serving" / "hostile.py"
SECRET = "tok-9f8e7d6c5b4a-NOT-TO-BE-STORED"

pytestmark = pytest.mark.usefixtures("jobs_settle")


def hostile(project, handler):
    return project.new_function(name=f"h-{handler.replace('_', '-')}", kind="python",
                                code_src=str(HOSTILE), handler=handler)


class Bystander:
    """A run of ANOTHER project, started in a thread while an attack goes on."""

    def __init__(self) -> None:
        self.run = None
        self.error: BaseException | None = None
        other = dh.get_or_create_project("bystander")
        self.function = hostile(other, "small")
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.run = self.function.run(parameters={"x": 41}, wait=True)
        except BaseException as exc:  # reported by completed()
            self.error = exc

    def __enter__(self) -> Bystander:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(300)

    def completed(self) -> bool:
        assert self.error is None, self.error
        assert self.run is not None
        assert self.run.status.state == "COMPLETED", self.run.status.error
        return bool(self.run.result("result") == 42)


def test_a_flood_of_upload_begins_is_refused_at_the_cap_and_holds_no_descriptors(home):
    project = dh.get_or_create_project("attacker")
    fds = open_fds()
    with Bystander() as bystander:
        run = hostile(project, "flood_uploads").run(parameters={"count": 3000}, wait=True)
        during = open_fds()
    assert run.status.state == "COMPLETED", run.status.error  # it caught every refusal
    result = run.result("result")
    assert result["accepted"] == 16 and result["refused"] == 3000 - 16
    assert "open_uploads=16" in result["message"]
    assert during - fds < 32
    assert bystander.completed()
    assert not list(Path(home).rglob("*.part"))  # the staged uploads went with the run


@pytest.mark.parametrize("swallow", [False, True])
def test_an_artifact_from_dev_zero_ends_error_at_the_store_quota(home, swallow):
    project = dh.get_or_create_project("attacker")
    with Bystander() as bystander:
        run = hostile(project, "endless_artifact").run(
            parameters={"swallow": swallow}, store_quota="64Mi", wait=True)
    assert run.status.state == "ERROR"
    assert "store_quota=64Mi exceeded" in run.status.error["message"]
    store = Path(home) / "store"
    assert tree_bytes(store) < (64 << 20) + calls.CHUNK_SIZE
    assert not list(store.rglob("*.part"))
    assert project.list_artifacts() == []
    assert bystander.completed()


def test_printing_far_past_the_cap_stores_the_head_and_the_tail(home):
    project = dh.get_or_create_project("attacker")
    run = hostile(project, "print_lots").run(parameters={"megabytes": 64}, log_cap="1Mi",
                                             wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    logs = run.logs()
    assert len(logs.encode()) <= (1 << 20) + 200
    assert logs.startswith("HEAD-OF-THE-LOG") and logs.rstrip().endswith("TAIL-OF-THE-LOG")
    assert "bytes of logs dropped by pyhost (log_cap=1Mi)" in logs


def test_another_projects_entity_is_neither_an_output_nor_fetched(home):
    victim = dh.get_or_create_project("victim")
    theirs = victim.log_artifact(name="report", kind="artifact")
    project = dh.get_or_create_project("attacker")
    run = hostile(project, "foreign_output").run(parameters={"key": theirs.key}, wait=True)
    assert run.status.state == "ERROR"
    assert theirs.key in run.status.error["message"] and run.status.outputs == {}
    # a record tampered with afterwards: run.output() refuses it
    runtime = dh.get_runtime()
    honest = hostile(project, "small").run(wait=True)
    point_outputs_at(runtime, honest.id, {"stolen": theirs.key})
    with pytest.raises(ConfigurationError, match="victim"):
        honest.refresh().output("stolen")


def test_an_entity_kind_that_is_a_path_is_refused(home):
    project = dh.get_or_create_project("attacker")
    for kind in ("x/../../b", "k" * 10_000):
        run = hostile(project, "odd_kind").run(parameters={"kind": kind}, wait=True)
        assert run.status.state == "ERROR"
        assert "ConfigurationError" in run.status.error["message"]
        assert "a kind is a short identifier" in run.status.error["message"]
        assert len(run.status.error["message"]) < 1000
    assert project.list_artifacts() == []
    assert not (Path(home) / "b").exists()


def test_a_secret_the_handler_spreads_is_stored_nowhere(home, monkeypatch):
    monkeypatch.setenv("LEAKED_TOKEN", SECRET)
    project = dh.get_or_create_project("attacker")
    run = hostile(project, "leak_secret").run(secrets=["LEAKED_TOKEN"], wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    failed = hostile(project, "leak_secret_in_error").run(secrets=["LEAKED_TOKEN"], wait=True)
    assert failed.status.state == "ERROR" and "***" in failed.status.error["message"]
    assert run.result("result")["token"] == "***"
    assert "metric-***" in run.status.metrics
    assert project.get_artifact("leaky").spec["note"] == "it is ***"
    stored = b"".join(path.read_bytes() for path in Path(home).glob("catalog.db*"))
    assert b"leaky" in stored and SECRET.encode() not in stored
    assert SECRET not in repr(run.status.to_dict()) + repr(failed.status.to_dict())
    assert SECRET not in run.logs() and "the token is ***" in run.logs()
    assert not any(SECRET.encode() in path.read_bytes()
                   for path in (Path(home) / "store").rglob("*") if path.is_file())


def test_a_200_mib_call_frame_is_refused_before_it_costs_the_host(home):
    project = dh.get_or_create_project("attacker")
    function = hostile(project, "big_call")
    peak, resident = peak_rss_bytes(), rss_bytes()
    with Bystander() as bystander:
        run = function.run(parameters={"megabytes": 200}, wait=True)
    assert run.status.state == "ERROR"
    assert "max_call_frame" in run.status.error["message"]
    # the container built 200 MiB; the host allocated none of it
    assert peak_rss_bytes() - max(peak, resident) < 64 << 20
    assert bystander.completed()


def test_a_replica_reports_only_as_itself_and_its_log_stays_capped(home):
    project = dh.get_or_create_project("attacker")
    function = project.new_function(name="forger", kind="python", code_src=str(SERVING),
                                    handler="handler", init_function="forge_reports")
    run = function.run(action="serve", replicas=1, init_parameters={"megabytes": 8},
                       log_cap="256Ki")
    try:
        assert run.status.state == "RUNNING", run.status.error
        report = run.invoke(path="/").json()["report"]
        assert all(line.startswith("REFUSED") for line in report), report
        assert len(report) == 6
        assert any("reports as replica 0 only, not '-1'" in line for line in report)
        assert any("not '99'" in line for line in report)
        assert not any("IndexError" in line for line in report)
        replicas = run.refresh().status.replicas
        assert [replica["index"] for replica in replicas] == [0]
    finally:
        run.stop()
    logs = run.logs()
    assert len(logs.encode()) <= (256 << 10) + 200
    assert "FIRST-OWN-LINE" in logs and "LAST-OWN-LINE" in logs
    assert "forged line" not in logs
