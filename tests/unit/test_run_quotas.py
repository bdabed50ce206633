"""What a run may do to the host, without Docker: the quota arithmetic, the log's head and
tail, entity kinds, output keys, recursive masking, the call frame bound (the real hxpy
server as a local process), and hostile handlers run locally against a real SQLite catalog."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from hxpy.runtime import calls
from pyhost import ConfigurationError, NotInCatalog, ProtocolError
from pyhost.runtime.entities import check_kind
from pyhost.runtime.host_calls import HostCalls
from pyhost.runtime.limits import RunLimits, masker, parse_size
from pyhost.runtime.run_log import RunLog, read_log
from tests.support.tamper import point_outputs_at
from tests.unit.conftest import session

HOSTILE = Path(__file__).resolve().parents[1] / "support" / "functions" / "hostile.py"
SECRET = "s3cr3t-Vb7QzR2"


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("attacked")


def hostile(project, handler):
    return project.new_function(name=f"h-{handler.replace('_', '-')}", kind="python",
                                code_src=str(HOSTILE), handler=handler)


def part_files(root):
    return [path for path in Path(root).rglob("*.part")]


# -- settings and arithmetic ---------------------------------------------------------------

def test_sizes_parse_and_bad_ones_are_named():
    assert parse_size("store_quota", "64Mi") == 64 << 20
    assert parse_size("store_quota", "2Gi") == 2 << 30
    assert parse_size("store_quota", 1000) == 1000
    limits = RunLimits.from_settings("2Gi", "64Ki", 4)
    assert (limits.store_quota, limits.log_cap, limits.open_uploads) == (2 << 30, 64 << 10, 4)
    assert limits.record() == {"store_quota": "2Gi", "log_cap": "64Ki", "open_uploads": 4}
    assert RunLimits() == RunLimits(10 << 30, 64 << 20, 16)
    for bad in ({"store_quota": "lots"}, {"store_quota": 0}, {"log_cap": "10"},
                {"open_uploads": 0}, {"open_uploads": True}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            RunLimits.from_settings(**bad)


def test_run_settings_are_checked_before_anything_starts_and_recorded(project):
    fn = hostile(project, "small")
    with pytest.raises(ConfigurationError, match="store_quota"):
        fn.run(local_execution=True, store_quota="much")
    assert project.list_runs() == []
    run = fn.run(local_execution=True, wait=True, store_quota="2Gi", log_cap="256Ki")
    assert run.status.state == "COMPLETED"
    assert (run.spec["store_quota"], run.spec["log_cap"], run.spec["open_uploads"]) == \
        ("2Gi", "256Ki", 16)


def test_logs_keep_their_head_and_tail_within_the_cap(tmp_path):
    log = RunLog(tmp_path / "one", 4096)
    log.write("HEAD" + "x" * 100_000 + "TAIL")
    log.close()
    kept = read_log(tmp_path / "one", 4096)
    assert kept.startswith("HEAD") and kept.endswith("TAIL")
    assert len(kept.encode()) <= 4096 + 100
    assert "bytes of logs dropped by pyhost" in kept
    log = RunLog(tmp_path / "two", 4096)
    log.write("é" * 10_000)  # a cut inside a character drops it, whole
    log.close()
    head, rest = read_log(tmp_path / "two", 4096).split("\n[...", 1)
    tail = rest.split("...]\n", 1)[1]
    assert head == tail == "é" * 1024


# -- kinds, keys, masking ------------------------------------------------------------------

@pytest.mark.parametrize("entity_type, kind", [
    ("artifact", "artifact"), ("dataitem", "table"), ("dataitem", "dataitem"),
    ("model", "model"), ("model", "mlflow"), ("model", "sklearn"), ("model", "huggingface")])
def test_known_kinds_pass(entity_type, kind):
    assert check_kind(entity_type, kind) == kind


@pytest.mark.parametrize("kind", ["x/../../b", "k" * 10_000, "Table", "", None, "table",
                                  "model"])
def test_other_kinds_are_refused(kind):
    with pytest.raises(ConfigurationError, match="kind") as caught:
        check_kind("artifact", kind)
    assert len(str(caught.value)) < 300


def test_masking_goes_through_keys_values_and_bytes():
    mask = masker({"A": SECRET, "EMPTY": ""})
    value = {f"key-{SECRET}": [SECRET, (1, f"x{SECRET}y")], "n": 3,
             "b": SECRET.encode() + b"!"}
    assert mask(value) == {"key-***": ["***", (1, "x***y")], "n": 3, "b": b"***!"}
    assert masker({})({"a": SECRET}) == {"a": SECRET}


# -- HostCalls: quotas ----------------------------------------------------------------------

def calls_for(runtime, **limits):
    return HostCalls(runtime, "attacked", "r1", "store://attacked/run/python+job/r1",
                     RunLimits.from_settings(**limits), masker({"T": SECRET}))


def test_the_seventeenth_open_upload_is_refused_and_holds_no_descriptor(runtime, project):
    host = calls_for(runtime)
    before = len(os.listdir("/proc/self/fd"))
    uploads = [host.upload_begin(f"f{index}") for index in range(16)]
    for upload in uploads:
        host.upload_chunk(upload, b"data")
    assert len(os.listdir("/proc/self/fd")) - before < 4
    with pytest.raises(ConfigurationError, match="open_uploads=16"):
        host.upload_begin("one-more")
    host.log_entity("artifact", "a", "artifact", {}, uploads[:1])  # logging closes one
    host.upload_begin("now-it-fits")
    assert host.exceeded is None  # a refused begin is not a quota gone over


def test_errors_a_run_is_sent_name_no_host_directory(runtime, project):
    host = calls_for(runtime)
    # a file where the run's directory of uploads belongs: making it fails, naming the path
    (runtime.store.root / "attacked").mkdir(parents=True, exist_ok=True)
    (runtime.store.root / "attacked" / "run").write_text("in the way")
    with pytest.raises(Exception) as caught:
        host.table()[calls.UPLOAD_BEGIN]("f")
    message = str(caught.value)
    assert "<store>/attacked/run" in message
    assert str(runtime.store.root) not in message
    assert str(runtime.store.root.parent) not in message
    with pytest.raises(Exception, match=str(runtime.store.root)):
        host.upload_begin("f")  # the host's own calls keep the whole path


def test_the_store_quota_counts_uploads_and_tables_and_removes_what_went_over(runtime,
                                                                             project):
    host = calls_for(runtime, store_quota="3Mi")
    upload = host.upload_begin("big.bin")
    for _ in range(2):
        host.upload_chunk(upload, b"x" * calls.CHUNK_SIZE)
    host.log_entity("artifact", "big", "artifact", {}, [upload])
    assert host.stored == 2 * calls.CHUNK_SIZE
    upload = host.upload_begin("more.bin")
    host.upload_chunk(upload, b"x" * (calls.CHUNK_SIZE // 2))
    with pytest.raises(ConfigurationError, match=r"store_quota=3Mi exceeded"):
        host.upload_chunk(upload, b"x" * calls.CHUNK_SIZE)
    assert part_files(runtime.store.root) == []  # the upload that went over is gone
    assert host.exceeded and "store_quota=3Mi" in host.exceeded
    with pytest.raises(ConfigurationError, match="went over a quota"):
        host.upload_begin("after")
    # tables count too: a fresh run with room for a little only
    host = calls_for(runtime, store_quota="1Ki")
    with pytest.raises(ConfigurationError, match="store_quota=1Ki exceeded: the table"):
        host.log_table("t", pd.DataFrame({"x": range(10_000)}))
    assert not list((runtime.store.root / "attacked" / "dataitem").rglob("*.parquet"))
    assert host.count_logs(5000) == 1024  # logs get what the quota leaves
    assert host.count_logs(5000) == 0


def test_masked_and_checked_what_a_run_records(runtime, project):
    host = calls_for(runtime)
    host.log_metric(f"m-{SECRET}", 1)
    assert host.metrics == {"m-***": 1}
    document = host.log_entity("artifact", "a", "artifact",
                               {"note": SECRET, "nested": {SECRET: [SECRET]}}, [])
    assert document["spec"] == {"note": "***", "nested": {"***": ["***"]}}
    with pytest.raises(ConfigurationError, match="secret"):
        host.log_entity("artifact", SECRET, "artifact", {}, [])
    with pytest.raises(ConfigurationError, match="kind"):
        host.log_entity("artifact", "b", "x/../../b", {}, [])
    with pytest.raises(ConfigurationError, match="uploads"):
        host.log_entity("artifact", "c", "artifact", {}, ["not-an-upload"])


# -- hostile handlers, run locally -------------------------------------------------------

@pytest.mark.parametrize("swallow", [False, True])
def test_an_endless_artifact_ends_error_at_the_quota(project, runtime, swallow):
    run = hostile(project, "endless_artifact").run(
        local_execution=True, wait=True, store_quota="4Mi", parameters={"swallow": swallow})
    assert run.status.state == "ERROR"
    assert "store_quota=4Mi exceeded" in run.status.error["message"]
    assert part_files(runtime.store.root) == []
    written = sum(path.stat().st_size for path in runtime.store.root.rglob("*")
                  if path.is_file())
    assert written < (4 << 20) + calls.CHUNK_SIZE
    assert project.list_artifacts() == []


def test_a_flood_of_output_is_stored_as_head_and_tail(project, runtime):
    run = hostile(project, "print_lots").run(local_execution=True, wait=True,
                                             parameters={"megabytes": 3}, log_cap="64Ki")
    assert run.status.state == "COMPLETED", run.status.error
    logs = run.logs()
    assert len(logs.encode()) <= (64 << 10) + 100
    assert logs.startswith("HEAD-OF-THE-LOG") and logs.rstrip().endswith("TAIL-OF-THE-LOG")


def test_another_projects_entity_is_no_output(project, runtime):
    other = dh.get_or_create_project("victim")
    theirs = other.log_artifact(name="secret-report", kind="artifact")
    run = hostile(project, "foreign_output").run(local_execution=True, wait=True,
                                                 parameters={"key": theirs.key})
    assert run.status.state == "ERROR"
    assert theirs.key in run.status.error["message"]
    assert run.status.outputs == {}
    # their id under this project's name; an entity of this project that does not exist
    disguised = theirs.key.replace("victim", "attacked")
    ghost = disguised.rsplit(":", 1)[0] + ":" + "0" * 32
    for key, error in ((disguised, "ConfigurationError"), (ghost, "NotInCatalog")):
        run = hostile(project, "foreign_output").run(local_execution=True, wait=True,
                                                     parameters={"key": key})
        assert run.status.state == "ERROR" and run.status.error["type"] == error
        assert "attacked" in run.status.error["message"] or error == "NotInCatalog"


def test_a_tampered_output_and_foreign_ids_are_refused(project, runtime):
    other = dh.get_or_create_project("victim")
    theirs = other.log_artifact(name="secret-report", kind="artifact")
    run = hostile(project, "small").run(local_execution=True, wait=True)
    point_outputs_at(runtime, run.id, {"stolen": theirs.key})
    with pytest.raises(ConfigurationError, match="victim"):
        run.refresh().output("stolen")
    # the key rewritten to this project, the id still theirs
    point_outputs_at(runtime, run.id, {"stolen": theirs.key.replace("victim", "attacked")})
    with pytest.raises(ConfigurationError, match="victim"):
        run.refresh().output("stolen")
    with pytest.raises(NotInCatalog):
        project.get_artifact(theirs.key.replace("victim", "attacked"))
    victim_fn = hostile(other, "small")
    with pytest.raises(NotInCatalog):
        project.get_function("h-small", version=victim_fn.id)


def test_secrets_are_masked_in_everything_a_run_stores(project, runtime, monkeypatch,
                                                       tmp_path):
    monkeypatch.setenv("LEAKED_TOKEN", SECRET)
    run = hostile(project, "leak_secret").run(local_execution=True, wait=True,
                                              secrets=["LEAKED_TOKEN"])
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result")["token"] == "***"
    failed = hostile(project, "leak_secret_in_error").run(local_execution=True, wait=True,
                                                          secrets=["LEAKED_TOKEN"])
    assert failed.status.state == "ERROR" and "***" in failed.status.error["message"]
    catalog = Path(runtime.catalog.path if hasattr(runtime.catalog, "path")
                   else tmp_path / "home" / "catalog.db")
    stored = b"".join(path.read_bytes() for path in catalog.parent.glob("catalog.db*"))
    assert b"leaky" in stored and SECRET.encode() not in stored
    assert SECRET not in run.logs() and "the token is ***" in run.logs()


# -- the call frame bound (the real server, as a local process) ---------------------------

def test_a_call_over_max_call_frame_breaks_the_session_clearly(launcher):
    with session(launcher, max_call_frame=2 << 20) as s:
        s.handle("sink", lambda data: len(data))
        assert s.eval("import hxpy.server as h\nh.call_host('sink', b'x' * (1 << 20))") == \
            1 << 20
        with pytest.raises(ProtocolError, match="max_call_frame"):
            s.eval("h.call_host('sink', b'x' * (20 << 20))")
        # a reply to the host's own eval may still be large
        assert len(s.eval("b'y' * (20 << 20)")) == 20 << 20
        # and so may a call whose size is out-of-band array data (a logged table): it is
        # received once, into its arrays, never copied
        assert s.eval("import hxpy.server as h, numpy as np\n"
                      "h.call_host('sink', np.zeros(4 << 20))") == 4 << 20


def test_a_call_whose_type_comes_late_is_refused_after_decoding(launcher):
    with session(launcher, max_call_frame=2 << 20) as s:
        s.handle("sink", lambda data: len(data))
        code = ("import hxpy.server as h\n"
                "h._current._send({'id': 1, 'args': [b'x' * (4 << 20)], 'method': 'sink',\n"
                "                  'kwargs': {}, 'batch': h._current.batch_id, "
                "'type': 'call'})\n"
                "None")
        with pytest.raises(ProtocolError, match="max_call_frame"):
            s.eval(code)
