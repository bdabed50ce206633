"""The runtime's commands of ``pyhost`` (run, runs, logs, show, gc's settling) without Docker:
``--local`` and the process launcher, against a real catalog in a temporary home. Most call
``pyhost.cli.main``; a few run ``python -m pyhost`` as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import EngineUnavailable
from pyhost.cli import main
from pyhost.cli_runtime import split_target
from tests.support.cli import pyhost_command, run_ids

# -- run ---------------------------------------------------------------------------------------

def test_a_local_run_with_params_and_an_input_completes(home, handlers, table, capsys):
    code = main(["run", f"{handlers}:total", "--project", "demo", "--local",
                 "--input", f"di={table.key}", "--param", "scale=2",
                 "--param", 'tags=["a", 1, true]', "--param", "label=hello world"])
    out = capsys.readouterr().out
    assert code == 0, out
    [run_id] = run_ids()
    run = dh.get_project("demo").get_run(run_id)
    assert run.status.state == "COMPLETED"
    assert run.spec["parameters"] == {"scale": 2, "tags": ["a", 1, True],
                                      "label": "hello world"}
    assert run.result("result") == {"sum": 12, "tags": ["a", 1, True]}
    assert run.spec["function"].startswith("store://demo/function/python/total:")
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["run"] == run_id
    assert lines["state"].startswith("COMPLETED")
    assert json.loads(lines["results.output_0"]) == {"sum": 12, "tags": ["a", 1, True]}
    assert lines["logs"] == f"pyhost logs {run_id[:12]}"


def test_a_run_in_a_server_process_names_its_output(home, handlers, table, capsys):
    code = main(["run", f"{handlers}:doubled", "--project", "demo", "--launcher", "process",
                 "--input", f"di={table.key}", "--output", "result=twice",
                 "--name", "doubler"])
    out = capsys.readouterr().out
    assert code == 0, out
    twice = dh.get_project("demo").get_dataitem("twice")
    assert list(twice.as_df()["x"]) == [2, 4, 6]
    assert f"outputs.twice {json.dumps(twice.key)}" in " ".join(out.split())
    assert dh.get_project("demo").get_function("doubler").spec["handler"] == "doubled"


def test_envs_secrets_and_timeout_reach_the_run(home, handlers, capsys, monkeypatch):
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    code = main(["run", f"{handlers}:environ", "--launcher", "process", "--timeout", "30",
                 "--env", "GREETING=hi=there", "--secret", "TOKEN"])
    assert code == 0, capsys.readouterr()
    [run] = dh.get_project("default").list_runs()
    assert run.result("result") == ["hi=there", len("s3cr3t-value")]
    assert run.spec["timeout"] == 30.0 and run.spec["secrets"] == ["TOKEN"]
    assert run.spec["envs"] == [{"name": "GREETING", "value": "hi=there"}]
    assert "s3cr3t-value" not in capsys.readouterr().out


def test_a_failing_run_exits_1_with_the_users_traceback(home, handlers, capsys):
    code = main(["run", f"{handlers}:fails", "--project", "demo", "--local"])
    captured = capsys.readouterr()
    assert code == 1
    assert "ERROR" in captured.out and "ValueError: no good" in captured.out
    assert "Traceback (most recent call last)" in captured.err
    assert 'raise ValueError("no good")' in captured.err
    assert "return fails(depth - 1)" in captured.err


def test_the_command_exits_as_the_run_ended(home, handlers, tmp_path):
    done = pyhost_command("run", f"{handlers}:fails", "--local", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert 'raise ValueError("no good")' in done.stderr
    relative = pyhost_command("run", "jobs.py:sleeper", "--local", "--param", "seconds=0",
                              cwd=tmp_path)
    assert relative.returncode == 0, relative.stderr
    assert "going to sleep" not in relative.stdout  # what it printed is in its logs
    [function] = dh.get_project("default").list_functions()[-1:]
    assert function.spec["code_src"] == str(handlers)  # absolute: the same from anywhere


def test_ctrl_c_stops_the_run(home, handlers):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # SIGINT as a terminal's foreground command has it: a shell starts a command it puts
    # in the background (`make test &`) with SIGINT ignored, Python then installs no handler
    # for it, and the CLI rightly takes no Ctrl-C (seen: this test hung under `nohup ... &`).
    command = subprocess.Popen([sys.executable, "-m", "pyhost", "run", f"{handlers}:sleeper",
                                "--launcher", "process"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not dh.get_runtime().find("run", state="RUNNING"):
            assert time.monotonic() < deadline and command.poll() is None
            time.sleep(0.05)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode == 130, err
    [run] = dh.get_project("default").list_runs()
    assert run.status.state == "STOPPED"
    assert f"stopping run {run.id}" in err and "STOPPED" in out


@pytest.mark.parametrize("target, expected", [
    ("{dir}/jobs.py:total", ("{dir}/jobs.py", "total")),
    ("{dir}/jobs.py:jobs:total", ("{dir}/jobs.py", "jobs:total")),
    ("{dir}/src:pkg.mod:main", ("{dir}/src", "pkg.mod:main")),
    ("{dir}/src:main", ("{dir}/src", "main")),
])
def test_the_target_splits_where_an_existing_path_ends(tmp_path, handlers, target, expected):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    assert split_target(target.format(dir=tmp_path)) == tuple(
        part.format(dir=tmp_path) for part in expected)


def test_a_package_in_a_directory_runs(home, tmp_path, capsys):
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("def main(n):\n    return n + 1\n")
    assert main(["run", f"{tmp_path / 'src'}:pkg.mod:main", "--local", "--param", "n=41"]) == 0
    assert "results.output_0  42" in capsys.readouterr().out
    assert dh.get_project("default").get_function("main").spec["handler"] == "pkg.mod:main"


@pytest.mark.parametrize("args, message", [
    (["{jobs}"], "give SOURCE:HANDLER"),
    (["{jobs}:"], "the handler ''"),
    (["missing.py:total"], "no file or directory 'missing.py'"),
    (["{jobs}:total", "--param", "scale"], "--param: 'scale': give NAME=VALUE"),
    (["{jobs}:total", "--param", "=3"], "give NAME=VALUE"),
    (["{jobs}:total", "--param", "a=1", "--param", "a=2"], "'a' given twice"),
    (["{jobs}:total", "--local", "--launcher", "process"], "not allowed with"),
    (["{jobs}:total", "--launcher", "kubernetes"], "invalid choice"),
    (["{jobs}:total", "--action", "serve"], "invalid choice"),
    (["{jobs}:total", "--timeout", "-1"], "a positive number of seconds"),
    (["{jobs}:total", "--timeout", "nan"], "a positive number of seconds"),
])
def test_malformed_command_lines_exit_2(home, handlers, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(["run", *(arg.format(jobs=handlers) for arg in args)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not dh.get_or_create_project("default").list_runs()


@pytest.mark.parametrize("args, message", [
    (["--input", "di=store://demo/dataitem/table/numbers", "--param", "scale=1",
      "--param", "tags=[]", "--param", "colour=red"], "takes no argument 'colour'"),
    (["--param", "scale=1", "--param", "tags=[]"], "argument 'di' of total() has no value"),
    (["--input", "di=store://demo/dataitem/table/missing", "--param", "scale=1",
      "--param", "tags=[]"], "has no dataitem named 'missing'"),
    (["--input", "di=s3://bucket/x", "--param", "scale=1", "--param", "tags=[]"],
     "no s3 store"),
    (["--secret", "NOT_SET_ANYWHERE_42"], "NOT_SET_ANYWHERE_42"),
    (["--project", "no/slash"], "project 'no/slash'"),
])
def test_what_the_runtime_refuses_exits_1_before_anything_runs(home, handlers, table, capsys,
                                                               args, message):
    assert main(["run", f"{handlers}:total", "--local", "--project", "demo", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyhost: ") and message in err and "Traceback" not in err
    assert not dh.get_project("demo").list_runs()


# -- runs, logs, show --------------------------------------------------------------------------

def test_runs_lists_the_projects_runs_newest_first(home, handlers, table, capsys):
    main(["run", f"{handlers}:total", "--project", "demo", "--local", "--input",
          f"di={table.key}", "--param", "scale=1", "--param", "tags=[]"])
    main(["run", f"{handlers}:fails", "--project", "demo", "--local"])
    ok, failed = run_ids()
    capsys.readouterr()
    assert main(["runs", "--project", "demo"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "FUNCTION", "STATE", "STARTED", "DURATION", "MESSAGE"]
    assert [row.split()[:3] for row in rows] == [[failed[:12], "fails", "ERROR"],
                                                [ok[:12], "total", "COMPLETED"]]
    assert rows[0].endswith("ValueError: no good")
    assert main(["runs", "--project", "demo", "--state", "error"]) == 0
    assert [row.split()[0] for row in capsys.readouterr().out.splitlines()[1:]] == [failed[:12]]
    assert main(["runs", "--project", "demo", "--limit", "1"]) == 0
    assert [row.split()[0] for row in capsys.readouterr().out.splitlines()[1:]] == [failed[:12]]
    assert main(["runs"]) == 0
    assert capsys.readouterr().out == "no runs in project 'default'\n"
    with pytest.raises(SystemExit):
        main(["runs", "--limit", "0"])


def test_logs_prints_what_the_handler_printed(home, handlers, table, capsys):
    main(["run", f"{handlers}:total", "--project", "demo", "--local", "--input",
          f"di={table.key}", "--param", "scale=1", "--param", "tags=[]",
          "--param", "label=counted"])
    main(["run", f"{handlers}:fails", "--project", "demo", "--local"])
    printed, silent = run_ids()
    capsys.readouterr()
    assert main(["logs", printed[:12]]) == 0
    assert capsys.readouterr().out == "counted: 3 rows\n"
    assert main(["logs", silent, "--project", "demo"]) == 0
    assert "printed nothing" in capsys.readouterr().err
    assert main(["logs", printed, "--project", "other"]) == 1
    assert "no run" in capsys.readouterr().err
    assert main(["logs", "0123456789abcdef"]) == 1


def test_a_short_id_that_fits_several_runs_is_refused(home, handlers, capsys):
    for _ in range(17):  # among 17 hex ids two share a first digit
        main(["run", f"{handlers}:sleeper", "--local", "--param", "seconds=0"])
    ids = run_ids("default")
    shared = next(run_id[0] for run_id in ids if sum(i[0] == run_id[0] for i in ids) > 1)
    capsys.readouterr()
    assert main(["logs", shared]) == 1
    assert "give more of the id" in capsys.readouterr().err


def test_show_prints_a_dataitem_with_a_preview_and_a_run(home, handlers, table, capsys):
    assert main(["show", table.key]) == 0
    out = capsys.readouterr().out
    document, _, preview = out.partition("\nhead():\n")
    assert json.loads(document)["key"] == table.key
    assert preview.split() == ["x", "0", "1", "1", "2", "2", "3"]
    latest = f"store://demo/dataitem/table/{table.name}"  # no id: the latest version
    assert main(["show", latest]) == 0
    assert json.loads(capsys.readouterr().out.partition("\nhead():")[0])["id"] == table.id
    main(["run", f"{handlers}:fails", "--project", "demo", "--local"])
    [run_id] = run_ids()
    capsys.readouterr()
    for ref in (run_id, run_id[:12], f"store://demo/run/python+job/{run_id}"):
        assert main(["show", ref]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["id"] == run_id and shown["status"]["state"] == "ERROR"


@pytest.mark.parametrize("ref, message", [
    ("store://demo/dataitem/table/missing", "has no dataitem named 'missing'"),
    ("store://demo/dataitem/table/numbers:0123abc", "no dataitem with id 0123abc"),
    ("store://demo/widget/x/y", "no entity type 'widget'"),
    ("s3://bucket/key", "no s3 store"),
    ("nothing-like-an-id", "no run 'nothing-like-an-id'"),
])
def test_show_of_what_is_not_there_exits_1(home, table, capsys, ref, message):
    assert main(["show", ref]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyhost: ") and message in err


# -- gc ----------------------------------------------------------------------------------------

def orphan_run(home: Path, handlers: Path) -> str:
    """A run left RUNNING by a process that died: its id."""
    script = ("import os, pyhost.runtime as dh\n"
              f"fn = dh.get_or_create_project('demo').new_function("
              f"name='s', code_src={str(handlers)!r}, handler='sleeper')\n"
              "run = fn.run(local_execution=True, parameters={'seconds': 60})\n"
              "while run.refresh().status.state != 'RUNNING':\n"
              "    run.wait(0.01)\n"
              "print(run.id, flush=True)\n"
              "os._exit(9)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYHOST_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 9, done.stderr
    return done.stdout.strip()


def test_gc_settles_a_run_whose_owner_died_without_an_engine(home, handlers):
    run_id = orphan_run(home, handlers)
    assert dh.get_project("demo").get_run(run_id).status.state == "RUNNING"
    done = pyhost_command("gc", DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"runs: settled 1 run(s) left active by dead processes ({run_id[:12]})"
    assert lines[1].startswith("containers: skipped: no Docker engine answers")
    settled = dh.get_project("demo").get_run(run_id)
    assert settled.status.state == "ERROR" and "host process exited" in settled.status.message


@pytest.fixture
def no_engine(monkeypatch):
    def docker_client():
        raise EngineUnavailable("no Docker engine answers (test)")

    monkeypatch.setattr("pyhost.launchers.docker.client.docker_client", docker_client)


def test_gc_in_process_settles_and_then_has_nothing_to_do(home, handlers, capsys, no_engine):
    run_id = orphan_run(home, handlers)
    assert main(["gc"]) == 0
    assert f"settled 1 run(s) left active by dead processes ({run_id[:12]})" in \
        capsys.readouterr().out
    assert main(["gc"]) == 0
    assert "settled 0 run(s)" in capsys.readouterr().out


def test_gc_fails_when_a_part_that_ran_failed(home, capsys, monkeypatch):
    from pyhost.launchers.docker.orphans import GcReport
    from pyhost.launchers.docker.swarm.orphans import SwarmGcReport

    monkeypatch.setattr("pyhost.launchers.docker.client.docker_client", lambda: object())
    monkeypatch.setattr("pyhost.launchers.docker.orphans.collect",
                        lambda client: GcReport(containers=["a"], failed=["b"]))
    monkeypatch.setattr("pyhost.launchers.docker.swarm.orphans.collect_swarm",
                        lambda client: SwarmGcReport(manager=False))
    assert main(["gc"]) == 1
    captured = capsys.readouterr()
    assert "runs: settled 0 run(s)" in captured.out
    assert "1 orphaned container(s) could not be removed" in captured.err

    def refused(client):
        raise EngineUnavailable("cannot list containers: refused")

    monkeypatch.setattr("pyhost.launchers.docker.orphans.collect", refused)
    assert main(["gc"]) == 1
    assert "containers: failed: cannot list containers: refused" in capsys.readouterr().err


def test_gc_makes_no_catalog(tmp_path, monkeypatch, capsys, no_engine):
    monkeypatch.setenv("PYHOST_HOME", str(tmp_path / "empty"))
    assert main(["gc"]) == 0
    assert "no catalog at" in capsys.readouterr().out
    assert not (tmp_path / "empty").exists()
