"""A local run (``local_execution=True``) on its short path: recorded in two catalog
statements, handed back as recorded, its module imported afresh by each run (as a job's fresh
container does), and never past another process's end of it. Against a real SQLite catalog
in a temporary home."""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import sys
import textwrap
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from importlib import machinery

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import pyhost.runtime as dh
from pyhost.errors import CatalogUnavailable
from pyhost.runtime.catalog import CatalogError, Record, StaleState
from pyhost.runtime.catalog.sqlite import SqliteCatalog
from pyhost.runtime.context import Runtime
from pyhost.runtime.entities import iso_time, new_id
from pyhost.runtime.executions import executing, finished
from pyhost.runtime.values import from_json, to_json


@pytest.fixture
def project(runtime):
    return dh.get_or_create_project("local")


def _statements(runtime) -> list[str]:
    """Every SQL statement this thread's catalog connection runs from now on."""
    seen: list[str] = []
    connection: sqlite3.Connection = runtime.catalog._connection()
    connection.set_trace_callback(seen.append)
    return seen


def test_a_local_run_is_two_statements_and_is_recorded_whole(runtime, project):
    fn = project.new_function(name="inc", code="def f(x):\n    print('seen', x)\n"
                                               "    return x + 1\n", handler="f")
    fn.run(local_execution=True, wait=True, parameters={"x": 0})  # imports, first reads
    seen = _statements(runtime)
    run = fn.run(local_execution=True, wait=True, parameters={"x": 41})
    runtime.catalog._connection().set_trace_callback(None)
    assert [statement.split()[0] for statement in seen] == ["INSERT", "UPDATE"], seen
    assert run.result("result") == 42 and run.logs() == "seen 41\n"
    # What fn.run handed back is what the catalog holds, read by another connection.
    catalog = SqliteCatalog(runtime.catalog.path)
    try:
        stored = catalog.get("run", run.id)
    finally:
        catalog.close()
    assert stored is not None and stored.state == "COMPLETED"
    assert stored.document == run._record.document and stored.updated == run._record.updated
    status = stored.document["status"]
    timings = status["timings"]
    assert list(timings) == ["CREATED", "READY", "RUNNING", "COMPLETED"]
    assert timings["CREATED"] <= timings["READY"] <= timings["RUNNING"] <= timings["COMPLETED"]
    assert status["message"] == "completed" and status["logs"] == \
        f"local/run/{run.id}/logs/logs.txt"
    assert [attempt["attempt"] for attempt in status["attempts"]] == [1]


def test_ids_are_random_version_4_uuids_in_hex():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for made in ids:
        parsed = uuid.UUID(made)  # made without uuid4(): the same form
        assert parsed.hex == made and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Random beyond the version digit and the variant bits: every other digit varies.
    assert all(len({made[index] for made in ids}) >= 4 for index in range(32) if index != 12)


@given(st.floats(min_value=-2e9, max_value=4e9))
@example(0.0)
@example(0.9999995)  # rounds up to the next second
@example(0.0004995)
@example(-0.0000004)  # rounds to 0: the second before the epoch is not taken
@example(-1.5)
@example(1796549021.9999996)
def test_iso_time_writes_what_datetime_writes(seconds):
    expected = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
    assert iso_time(seconds) == expected
    assert iso_time(seconds + 1.0) == datetime.fromtimestamp(
        seconds + 1.0, timezone.utc).isoformat(timespec="milliseconds")  # another second


def test_a_runs_end_here_wakes_a_waiter_that_asked_before_it_and_one_that_asks_after():
    early = executing("end-seen-early")
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(early.done.wait(10)))
    waiter.start()
    time.sleep(0.05)  # waiting by now
    finished("end-seen-early")
    waiter.join(10)
    assert woke == [True]
    late = executing("end-seen-late")
    finished("end-seen-late")
    assert late.done.wait(0)  # the Event made after the end is set already


def test_the_runtime_turns_a_catalog_error_into_catalog_unavailable_but_not_stale_state(
        tmp_path):
    runtime = Runtime.open(tmp_path, settle=False)
    try:
        record = Record("run", "p", "r1", "r1", "python+job", 1.0, 1.0, "CREATED", {"n": 1})
        runtime.add(record)
        with pytest.raises(StaleState):  # not a failure: another process moved it first
            runtime.update("run", "r1", {"n": 2}, updated=2.0, state="RUNNING",
                           expect_state="READY")
        with pytest.raises(CatalogUnavailable,
                           match="the catalog failed: a record with id r1 exists") as caught:
            runtime.add(record)
        assert isinstance(caught.value.__cause__, CatalogError)
        assert runtime.update("run", "r1", {"n": 3}, updated=3.0).document == {"n": 3}
    finally:
        runtime.close()


def test_a_new_version_runs_its_own_handler_not_the_one_imported_before(project):
    first = project.new_function(name="v", code="def f():\n    return 1\n", handler="f")
    assert first.run(local_execution=True, wait=True).result("result") == 1
    second = project.new_function(name="v", code="def f():\n    return 2\n", handler="f")
    assert second.id != first.id
    assert second.run(local_execution=True, wait=True).result("result") == 2
    again = project.get_function("v", version=first.id)
    assert again.run(local_execution=True, wait=True).result("result") == 1


IMPORT_ONCE = textwrap.dedent("""
    import os

    print("importing")
    IMPORTED_WITH = os.environ.get("GREETING")
    calls = []

    def f():
        calls.append(1)
        return {"greeting": IMPORTED_WITH, "calls": len(calls)}
""")


def test_each_run_imports_its_module_afresh_as_a_container_would(project):
    """DigitalHub's local execution and a job's fresh container both run module-level code
    for every run: no state carries over from one run to the next."""
    fn = project.new_function(name="once", code=IMPORT_ONCE, handler="f")
    hello = [{"name": "GREETING", "value": "hello"}]
    first = fn.run(local_execution=True, wait=True, envs=hello)
    second = fn.run(local_execution=True, wait=True, envs=hello)
    assert first.result("result") == {"greeting": "hello", "calls": 1}
    assert second.result("result") == {"greeting": "hello", "calls": 1}
    assert first.logs() == "importing\n" and second.logs() == "importing\n"
    other = fn.run(local_execution=True, wait=True,
                   envs=[{"name": "GREETING", "value": "hi"}])
    assert other.result("result") == {"greeting": "hi", "calls": 1}


def test_a_module_of_its_own_the_handler_imports_is_imported_afresh_from_its_version(
        project, tmp_path):
    """A helper module beside the handler's is imported anew by each run, from the run's
    own version: a new version's changed helper is what runs, with no state of the last."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text("import helper\n\ndef f():\n    helper.calls.append(1)\n"
                                    "    return [helper.VERSION, len(helper.calls)]\n")
    (source / "helper.py").write_text("VERSION = 1\ncalls = []\n")
    first = project.new_function(name="sib", code_src=str(source), handler="main:f")
    assert first.run(local_execution=True, wait=True).result("output_0") == [1, 1]
    assert first.run(local_execution=True, wait=True).result("output_0") == [1, 1]
    (source / "helper.py").write_text("VERSION = 2\ncalls = []\n")
    second = project.new_function(name="sib", code_src=str(source), handler="main:f")
    assert second.run(local_execution=True, wait=True).result("output_0") == [2, 1]
    assert first.run(local_execution=True, wait=True).result("output_0") == [1, 1]


def _compiles(monkeypatch, directory: str) -> list[str]:
    """The paths under ``directory`` that Python's source loader makes code for (compiles,
    or reads a .pyc of) from now on."""
    made: list[str] = []
    get_code = machinery.SourceFileLoader.get_code

    def counted(loader, fullname):
        if loader.get_filename(fullname).startswith(directory):
            made.append(os.path.basename(loader.get_filename(fullname)))
        return get_code(loader, fullname)

    monkeypatch.setattr(machinery.SourceFileLoader, "get_code", counted)
    return made


def test_a_file_is_compiled_once_and_again_when_it_changes(project, monkeypatch):
    """Each run executes the module anew (its print is in every log), from code made once
    per version of the file: a file rewritten in the store (a new size, or a new inode of
    the same size) is compiled again, and its new code runs."""
    fn = project.new_function(name="compiled", code="print('importing')\n"
                                                    "def f():\n    return 1\n", handler="f")
    made = _compiles(monkeypatch, fn.source_directory())
    runs = [fn.run(local_execution=True, wait=True) for _ in range(3)]
    assert [run.logs() for run in runs] == ["importing\n"] * 3
    assert [run.result("result") for run in runs] == [1, 1, 1]
    assert made == ["main.py"]  # the first run's import only
    path = os.path.join(fn.source_directory(), "main.py")
    with open(path, "w") as rewritten:  # in place: the same inode, another size
        rewritten.write("print('importing')\ndef f():\n    return 22\n")
    assert fn.run(local_execution=True, wait=True).result("result") == 22
    with open(path + ".new", "w") as replacement:  # the same size, another inode
        replacement.write("print('importing')\ndef f():\n    return 33\n")
    os.replace(path + ".new", path)
    assert fn.run(local_execution=True, wait=True).result("result") == 33
    assert fn.run(local_execution=True, wait=True).result("result") == 33
    assert made == ["main.py"] * 3


def test_a_file_added_to_the_versions_directory_is_found_by_the_next_run(project):
    """The directory's listing is kept while its mtime is unchanged (run_job's invalidation
    of every finder leaves it), and read again once it changes."""
    fn = project.new_function(name="added", code="def f():\n    return 1\n", handler="f")
    assert fn.run(local_execution=True, wait=True).result("result") == 1
    directory = fn.source_directory()
    with open(os.path.join(directory, "extra.py"), "w") as extra:
        extra.write("VALUE = 'extra'\n")
    with open(os.path.join(directory, "main.py"), "w") as main:
        main.write("import extra\n\ndef f():\n    return extra.VALUE\n")
    _touch(directory)
    run = fn.run(local_execution=True, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == "extra"


def _searches(monkeypatch, directory: str) -> list[str]:
    """The modules Python's finder looks for in ``directory`` from now on."""
    searched: list[str] = []
    find_spec = machinery.FileFinder.find_spec

    def counted(finder, fullname, target=None):
        if finder.path == directory:
            searched.append(fullname)
        return find_spec(finder, fullname, target)

    monkeypatch.setattr(machinery.FileFinder, "find_spec", counted)
    return searched


def _touch(directory: str) -> None:
    stat = os.stat(directory)  # a new mtime, whatever the clock's grain
    os.utime(directory, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_where_a_module_was_found_is_kept_until_its_directory_changes(project, tmp_path,
                                                                      monkeypatch):
    """Each run imports afresh, but looks for the module's file only once while the
    directory is unchanged; once it changes (the helper became a package, then went), the
    next run looks again and imports what is there now."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text("import helper\n\ndef f():\n    return helper.WHAT\n")
    (source / "helper.py").write_text("WHAT = 'module'\n")
    fn = project.new_function(name="found", code_src=str(source), handler="main:f")
    directory = fn.source_directory()
    searched = _searches(monkeypatch, directory)
    runs = [fn.run(local_execution=True, wait=True) for _ in range(3)]
    assert [run.result("output_0") for run in runs] == ["module"] * 3
    assert sorted(searched) == ["helper", "main"]  # the first run's only
    os.remove(os.path.join(directory, "helper.py"))
    os.mkdir(os.path.join(directory, "helper"))
    with open(os.path.join(directory, "helper", "__init__.py"), "w") as package:
        package.write("WHAT = 'package'\n")
    _touch(directory)
    run = fn.run(local_execution=True, wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("output_0") == "package"
    os.remove(os.path.join(directory, "helper", "__init__.py"))
    os.rmdir(os.path.join(directory, "helper"))
    _touch(directory)
    gone = fn.run(local_execution=True, wait=True)
    assert gone.status.state == "ERROR"
    assert gone.status.error["type"] == "ModuleNotFoundError", gone.status.error


def test_a_package_and_its_modules_are_imported_afresh_and_compiled_once(project, tmp_path,
                                                                        monkeypatch):
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("pkg/__init__.py", "")
        zipped.writestr("pkg/state.py", "calls = []\n")
        zipped.writestr("pkg/jobs.py", "import importlib.util\n\nfrom . import state\n\n"
                                       "def g():\n    state.calls.append(1)\n"
                                       "    return len(state.calls), __cached__ == "
                                       "importlib.util.cache_from_source(__file__)\n")
    fn = project.new_function(name="pkg", code_src=f"zip+file://{archive}",
                              handler="pkg.jobs:g")
    made = _compiles(monkeypatch, fn.source_directory())
    for _ in range(3):
        assert fn.run(local_execution=True, wait=True).result("result") == [1, True]
    assert sorted(made) == ["__init__.py", "jobs.py", "state.py"]


def test_a_handler_module_that_imports_a_package_beside_it_runs(project, tmp_path):
    """The package's directory gets the run's finder without the handler's module, still
    being imported, being dropped from sys.modules (a KeyError 'main' before)."""
    source = tmp_path / "src"
    (source / "helper").mkdir(parents=True)
    (source / "main.py").write_text("import helper\n\ndef f():\n    return helper.WHAT\n")
    (source / "helper" / "__init__.py").write_text("WHAT = 'package'\n")
    fn = project.new_function(name="beside", code_src=str(source), handler="main:f")
    for _ in range(2):
        run = fn.run(local_execution=True, wait=True)
        assert run.status.state == "COMPLETED", run.status.error
        assert run.result("output_0") == "package"


def test_runs_at_once_in_two_threads_each_log_only_what_they_print(project, capsys,
                                                                  tmp_path):
    fn = project.new_function(
        name="chatty", handler="f",
        code="import sys, time\n\ndef f(tag, started):\n    open(started, 'w').close()\n"
             "    for index in range(100):\n        print(tag, index)\n"
             "        sys.stderr.write(f'{tag} err\\n')\n        time.sleep(0.001)\n"
             "    return tag\n")
    runs = []
    for tag in ("one", "two"):
        started = tmp_path / tag
        runs.append(fn.run(local_execution=True, parameters={"tag": tag,
                                                             "started": str(started)}))
        # The next run starts once this one's handler runs: two local runs importing at
        # the very same time can still drop each other's module from sys.modules.
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
    for _ in range(20):  # this thread prints meanwhile, to the stream that was there
        print("outside")
        time.sleep(0.005)
    for run in runs:
        run.wait(timeout=30)
    for run, tag in zip(runs, ("one", "two")):
        assert run.status.state == "COMPLETED", run.status.error
        lines = run.logs().splitlines()
        assert sorted(lines) == sorted([f"{tag} {index}" for index in range(100)] +
                                       [f"{tag} err"] * 100)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["outside"] * 20 and err == ""
    # No buffer is left for an ended run's thread (a new thread may get its ident).
    assert not getattr(sys.stdout, "buffers", {}) and not getattr(sys.stderr, "buffers", {})


def test_local_runs_importing_at_once_each_import_their_own_version(project, tmp_path):
    """Runs started together in many threads, of two versions whose main imports a helper
    beside it: each imports its own version's modules, and none is dropped while another
    thread imports it (a KeyError 'main', 1 in 3 tries, before one import at a time)."""
    versions = []
    for version in (1, 2):
        source = tmp_path / f"v{version}"
        source.mkdir()
        (source / "main.py").write_text("import time\nimport helper\ntime.sleep(0.002)\n\n"
                                        "def f():\n    return helper.VERSION\n")
        (source / "helper.py").write_text(f"import time\ntime.sleep(0.002)\n"
                                          f"VERSION = {version}\n")
        versions.append(project.new_function(name=f"race{version}", code_src=str(source),
                                             handler="main:f"))
    def run(fn: dh.Function, start: threading.Barrier) -> dh.Run:
        start.wait()
        return fn.run(local_execution=True, wait=True)

    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(run, versions * 4, [threading.Barrier(8)] * 8))
        for fn, done in zip(versions * 4, runs):
            assert done.status.state == "COMPLETED", done.status.error
            assert done.result("output_0") == int(fn.name[-1])


def test_a_secret_read_at_import_is_each_runs_own(project, monkeypatch):
    fn = project.new_function(name="secret", code=IMPORT_ONCE, handler="f")
    monkeypatch.setenv("GREETING", "first secret")
    first = fn.run(local_execution=True, wait=True, secrets=["GREETING"])
    monkeypatch.setenv("GREETING", "second secret")
    second = fn.run(local_execution=True, wait=True, secrets=["GREETING"])
    # The value is masked in what is recorded; the count says which import ran.
    assert first.result("result")["calls"] == 1 and second.result("result")["calls"] == 1
    assert "secret" not in str(second.status.to_dict())


def test_a_failed_import_is_tried_again_by_the_next_run(project, tmp_path):
    flag = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import os

        if not os.path.exists({str(flag)!r}):
            raise RuntimeError("not ready yet")

        def f():
            return "ready"
    """)
    fn = project.new_function(name="flaky", code=code, handler="f")
    failed = fn.run(local_execution=True, wait=True)
    assert failed.status.state == "ERROR", failed.status.to_dict()
    assert failed.status.error["type"] == "RuntimeError"
    assert 'raise RuntimeError("not ready yet")' in failed.status.error["traceback"]
    assert "local.py" not in failed.status.error["traceback"]  # no frame of the runtime's
    flag.write_text("")
    assert fn.run(local_execution=True, wait=True).result("result") == "ready"


SETTLED_ELSEWHERE = textwrap.dedent("""
    def f(run, home):
        from pyhost.runtime.context import Runtime
        from pyhost.runtime.runs import ACTIVE, ERROR, transition

        other = Runtime.open(home, settle=False)  # its own connection, as another process's
        try:
            transition(other, other.get("run", run.id), ERROR, ACTIVE,
                       message="settled by another process")
        finally:
            other.close()
        return 1
""")


def test_a_local_run_settled_by_another_writer_is_not_written_over(runtime, project):
    fn = project.new_function(name="settled", code=SETTLED_ELSEWHERE, handler="f")
    run = fn.run(local_execution=True, wait=True, parameters={"home": str(runtime.home)})
    assert run.status.state == "ERROR"
    assert run.status.message == "settled by another process"
    assert run.refresh().status.state == "ERROR" and run.status.results == {}


HOLDS_THE_LOCK = textwrap.dedent("""
    import sqlite3
    import threading
    import time

    def f(path, seconds):
        # Another writer takes the catalog's write lock as the handler returns, and keeps it
        # past the busy timeout: the run's end must wait it out, not fail or be lost.
        held = threading.Event()

        def hold():
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
            conn.close()

        threading.Thread(target=hold, daemon=True).start()
        held.wait()
        return "done"
""")


def test_a_local_runs_end_waits_out_a_held_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("PYHOST_CATALOG_BUSY_TIMEOUT", "0.3")
    runtime = dh.configure(tmp_path / "home")
    fn = dh.get_or_create_project("local").new_function(name="held", code=HOLDS_THE_LOCK,
                                                        handler="f")
    started = time.monotonic()
    run = fn.run(local_execution=True, wait=True,
                 parameters={"path": str(runtime.catalog.path), "seconds": 1.0})
    assert time.monotonic() - started >= 1.0  # its end was written after the release
    assert run.status.state == "COMPLETED" and run.result("result") == "done"
    assert list(run.status.timings) == ["CREATED", "READY", "RUNNING", "COMPLETED"]
    assert [record.id for record in runtime.find("run")] == [run.id]
    assert run.refresh().status.to_dict() == run.status.to_dict()


@pytest.mark.parametrize("value", [0, -7, 10**30, 1.5, -0.0, "text", "", True, None])
def test_a_plain_result_is_recorded_as_itself(value):
    assert to_json(value) is value  # JSON holds it exactly: no codec bytes, no copy


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), b"bytes",
                                   {"$hxpy": "looks tagged"}])
def test_what_json_does_not_hold_exactly_is_tagged_codec_bytes(value):
    stored = to_json(value)
    assert isinstance(stored, dict) and set(stored) == {"$hxpy"}
    back = from_json(stored)
    assert back == value or (value != value and back != back)  # NaN is not NaN
