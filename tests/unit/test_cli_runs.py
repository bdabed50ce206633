"""The command line for people and scripts (issue #21, item 5), without Docker: ``--version``;
``--json`` on ``run``, ``wait``, ``show``, ``runs`` (one strict JSON document on stdout, the
exit statuses unchanged); ``runs`` newest first with ``--state``, ``--function``, ``--limit``;
``run``'s ``--python-version``, ``--image``, ``--requirement``; shell completion."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import pyhost
import pyhost.runtime as dh
from pyhost.cli import build_parser, main
from pyhost.cli_runtime import python_version
from tests.support.cli import pyhost_command, run_ids

ROOT = Path(__file__).resolve().parents[2]
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def strict_json(text: str) -> object:
    """``text`` as ONE JSON document that other readers take too (no NaN tokens)."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is no JSON")

    return json.loads(text, parse_constant=refuse)


def run_local(handlers: Path, handler: str, *args: str) -> int:
    return main(["run", f"{handlers}:{handler}", "--project", "demo", "--local", *args])


# -- --version -------------------------------------------------------------------------------

def test_version_is_the_packages(capsys):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert pyhost.__version__ == version
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"pyhost {version}\n"
    done = pyhost_command("--version")
    assert (done.returncode, done.stdout) == (0, f"pyhost {version}\n")


# -- --json ----------------------------------------------------------------------------------

def test_run_json_prints_the_runs_document_and_nothing_else(home, handlers, table, capsys):
    assert run_local(handlers, "total", "--input", f"di={table.key}", "--param", "scale=2",
                     "--param", "tags=[]", "--json") == 0
    out = capsys.readouterr().out
    document = strict_json(out)
    assert isinstance(document, dict) and document["id"] == run_ids()[0]
    assert document["status"]["state"] == "COMPLETED"
    assert document["status"]["results"]["output_0"] == {"sum": 12, "tags": []}
    assert main(["show", document["id"], "--json"]) == 0
    assert strict_json(capsys.readouterr().out) == document  # what show prints


def test_a_failed_run_json_exits_1_with_the_traceback_on_stderr(home, handlers, capsys):
    assert run_local(handlers, "fails", "--json") == 1
    captured = capsys.readouterr()
    document = strict_json(captured.out)
    assert document["status"]["state"] == "ERROR"
    assert "ValueError: no good" in document["status"]["error"]["traceback"]
    assert "ValueError: no good" in captured.err


def test_show_json_is_the_document_alone(home, table, capsys):
    assert main(["show", table.key]) == 0
    assert "head():" in capsys.readouterr().out
    assert main(["show", table.key, "--json"]) == 0
    document = strict_json(capsys.readouterr().out)
    assert document["key"] == table.key and document["kind"] == "table"


def test_nan_and_infinities_are_strings_in_json(home, tmp_path, capsys):
    source = tmp_path / "odd.py"
    source.write_text("def odd(run):\n    run.log_metrics({'nan': float('nan'), "
                      "'inf': float('inf'), 'low': float('-inf')})\n")
    assert main(["run", f"{source}:odd", "--local", "--json"]) == 0
    document = strict_json(capsys.readouterr().out)
    assert document["status"]["metrics"] == {"nan": "NaN", "inf": "Infinity",
                                              "low": "-Infinity"}


def test_wait_json_keeps_the_exit_statuses(home, handlers, capsys):
    run_local(handlers, "environ")
    run_local(handlers, "fails")
    ok, failed = run_ids()
    capsys.readouterr()
    assert main(["wait", ok[:12], "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["status"]["state"] == "COMPLETED"
    assert main(["wait", failed, "--json"]) == 1
    captured = capsys.readouterr()
    assert strict_json(captured.out)["status"]["state"] == "ERROR"
    assert "ValueError: no good" in captured.err

    function = dh.get_or_create_project("demo").new_function(
        name="sleeper", kind="python", code_src=str(handlers), handler="sleeper")
    sleeping = function.run(parameters={"seconds": 2}, local_execution=True, wait=False)
    try:
        assert main(["wait", sleeping.id, "--timeout", "0.2", "--json"]) == 124
        captured = capsys.readouterr()
        assert strict_json(captured.out)["status"]["state"] in ("READY", "RUNNING")
        assert "still" in captured.err
    finally:
        sleeping.wait(30)
    assert main(["wait", sleeping.id, "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["status"]["state"] == "COMPLETED"


# -- runs ------------------------------------------------------------------------------------

def listed(capsys, *args: str) -> list[str]:
    """The ids ``runs --json ARGS`` lists, in its order."""
    assert main(["runs", "--project", "demo", "--json", *args]) == 0
    return [run["id"] for run in strict_json(capsys.readouterr().out)]  # type: ignore[union-attr]


def test_runs_newest_first_by_state_function_and_limit(home, handlers, table, capsys):
    run_local(handlers, "environ")
    run_local(handlers, "fails")
    run_local(handlers, "environ")
    first, failed, last = run_ids()
    capsys.readouterr()
    assert listed(capsys) == [last, failed, first]
    assert listed(capsys, "--state", "completed") == [last, first]
    assert listed(capsys, "--function", "environ") == [last, first]
    assert listed(capsys, "--function", "environ", "--limit", "1") == [last]
    assert listed(capsys, "--limit", "2") == [last, failed]
    assert listed(capsys, "--function", "fails", "--state", "COMPLETED") == []
    key = dh.get_run(failed).spec["function"]
    assert listed(capsys, "--function", key) == [failed]

    assert main(["runs", "--project", "demo", "--json", "--limit", "1"]) == 0
    (summary,) = strict_json(capsys.readouterr().out)  # type: ignore[misc]
    assert summary["id"] == last and summary["function"] == "environ"
    assert summary["state"] == "COMPLETED" and summary["action"] == "job"
    assert summary["project"] == "demo" and summary["key"].endswith(last)
    assert summary["function_key"].startswith("store://demo/function/python/environ:")
    assert isinstance(summary["duration"], float) and summary["message"] == "completed"
    assert set(summary) == {"id", "key", "project", "function", "function_key", "action",
                            "state", "created", "updated", "duration", "message"}

    assert main(["runs", "--project", "demo", "--function", "total"]) == 0
    assert capsys.readouterr().out == "no runs of 'total' in project 'demo'\n"
    assert main(["runs", "--project", "elsewhere", "--function", "total", "--json"]) == 0
    assert strict_json(capsys.readouterr().out) == []


# -- run's function fields -------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("3.9", "PYTHON3_9"), ("3.13", "PYTHON3_13"), ("PYTHON3_11", "PYTHON3_11"),
    ("python3.10", "PYTHON3_10"), (" 3_12 ", "PYTHON3_12"),
])
def test_python_versions_in_every_spelling(text, expected):
    assert python_version(text) == expected


def test_python_version_image_and_requirements_are_the_functions_fields(home, handlers,
                                                                         capsys):
    assert main(["run", f"{handlers}:environ", "--project", "demo", "--launcher", "process",
                 "--python-version", THIS_PYTHON, "--image", "custom:1", "--json"]) == 0
    document = strict_json(capsys.readouterr().out)
    assert document["spec"]["image"] == "custom:1"  # the process launcher runs no image
    function = dh.get_function(document["spec"]["function"])
    assert function.spec["python_version"] == f"PYTHON{THIS_PYTHON.replace('.', '_')}"
    assert function.spec["image"] == "custom:1" and "requirements" not in function.spec
    other = "3.9" if THIS_PYTHON != "3.9" else "3.13"
    assert run_local(handlers, "environ", "--python-version", other) == 1
    assert f"this process runs Python {THIS_PYTHON}" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--python-version", "3.8"], "'3.8': one of 3.9, 3.10, 3.11, 3.12, 3.13"),
    (["--local", "--requirement", "six"], "--local runs in this process"),
    (["--local", "--image", "custom:1"], "--local runs in this process"),
])
def test_fields_that_cannot_apply_exit_2_before_anything_is_saved(home, handlers, capsys,
                                                                  args, message):
    with pytest.raises(SystemExit) as exited:
        main(["run", f"{handlers}:environ", "--project", "demo", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert dh.get_or_create_project("demo").list_functions() == []


def test_requirements_are_built_first_and_a_refused_build_runs_nothing(home, handlers,
                                                                       capsys):
    assert main(["run", f"{handlers}:environ", "--project", "demo", "--launcher", "process",
                 "--requirement", "six", "--requirement", "tqdm"]) == 1
    assert "launcher 'process' cannot build images" in capsys.readouterr().err
    assert run_ids() == []
    function = dh.get_function("environ", project="demo")
    assert function.spec["requirements"] == ["six", "tqdm"]


# -- completion ------------------------------------------------------------------------------

def complete(line: str, monkeypatch) -> list[str]:
    """What ``pyhost`` offers the shell for ``line`` (the cursor at its end). The shell's
    variables are set for this call only: ``main`` answers (and exits) while they are set."""
    import argcomplete

    class Finder(argcomplete.CompletionFinder):
        def _init_debug_stream(self) -> None:
            pass  # its default opens fd 9, which is pytest's here (argcomplete says so)

    out = io.StringIO()
    with monkeypatch.context() as patch:
        for name, value in (("_ARGCOMPLETE", "1"), ("COMP_LINE", line),
                            ("COMP_POINT", str(len(line))), ("_ARGCOMPLETE_IFS", "\n")):
            patch.setenv(name, value)
        Finder()(build_parser(), output_stream=out, exit_method=lambda code: None)
    return [item.strip() for item in out.getvalue().split("\n") if item.strip()]


def test_completion_offers_commands_options_and_run_ids(home, handlers, monkeypatch):
    assert {"run", "runs"} <= set(complete("pyhost ru", monkeypatch))
    assert complete("pyhost wait --j", monkeypatch) == ["--json"]
    assert complete("pyhost logs a", monkeypatch) == []  # no run yet: nothing
    run_local(handlers, "environ")
    run_local(handlers, "fails")
    newer, older = run_ids()[::-1]
    offered = [item for item in complete("pyhost logs ", monkeypatch)
               if not item.startswith("-")]
    assert offered == [older[:12], newer[:12]][::-1]  # newest first
    assert complete(f"pyhost show {older[:4]}", monkeypatch) == [older[:12]]
    assert all(item.startswith("-")
               for item in complete("pyhost wait --project elsewhere ", monkeypatch))


def test_completion_makes_no_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("PYHOST_HOME", str(tmp_path / "fresh"))
    assert all(item.startswith("-") for item in complete("pyhost stop ", monkeypatch))
    assert not (tmp_path / "fresh" / "catalog.db").exists()


def test_completion_through_the_command_as_the_shell_runs_it(home, tmp_path):
    answer = tmp_path / "completions"
    done = pyhost_command(_ARGCOMPLETE="1", COMP_LINE="pyhost sho", COMP_POINT="10",
                          _ARGCOMPLETE_STDOUT_FILENAME=str(answer))
    assert done.returncode == 0, done.stderr
    assert answer.read_text().split() == ["show"]
    assert "PYTHON_ARGCOMPLETE_OK" in (ROOT / "pyhost" / "cli.py").read_text()[:1024]

