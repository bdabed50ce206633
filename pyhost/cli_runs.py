"""The run-inspection commands of ``pyhost``: ``runs``, ``logs``, ``wait``, ``stop``, ``show``,
and what the runtime's other commands share with them: finding a run by (the start of) its
id, printing a run for people or as JSON, completing run ids.

Every command works on this process's runtime (its home is ``$PYHOST_HOME``, see
:mod:`pyhost.runtime.home`). ``--json`` (``runs``, ``show``, ``wait``; ``run`` too) prints one
JSON document on stdout and nothing else there: strict JSON, NaN and the infinities written
as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; messages stay on stderr and the
exit status is the command's own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, NotInCatalog

if TYPE_CHECKING:
    from .runtime import Run, Runtime

__all__ = ["add_run_commands", "complete_run_ids", "count", "find_run", "json_text",
           "print_error", "print_json", "print_run", "run_document", "seconds"]

_STATES = ["CREATED", "READY", "RUNNING", "COMPLETED", "ERROR", "STOPPED"]


def add_run_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``runs``, ``logs``, ``wait``, ``stop`` and ``show`` to the ``pyhost``
    subcommands."""
    runs = commands.add_parser("runs", help="list a project's runs, newest first",
                               description="A project's runs, newest first: the id's first "
                                           "12 characters (enough for logs and show), "
                                           "function, state, start, duration, message.")
    runs.add_argument("--project", default="default", help="the project (default: default)")
    runs.add_argument("--state", type=str.upper, metavar="STATE", choices=_STATES,
                      help=f"only runs in this state ({', '.join(_STATES)})")
    runs.add_argument("--function", metavar="NAME",
                      help="only runs of this function (its name, or a key)")
    runs.add_argument("--limit", type=count, metavar="N", help="only the newest N")
    _json_option(runs, "an array of runs: id, key, project, function, function_key, action, "
                       "state, created, updated, duration (seconds), message")
    runs.set_defaults(run=_runs)

    logs = commands.add_parser("logs", help="what a run's handler printed")
    _run_id_argument(logs, "a run id, or its start (as `runs` shows it)")
    logs.add_argument("--project", help="fail unless the run is of this project")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="print lines as they are written, until the run ends")
    logs.set_defaults(run=_logs)

    wait = commands.add_parser(
        "wait", help="wait until a run ends (from any process)",
        description="Wait until the run ends; a serve run, until it serves.",
        epilog="exit status: 0 COMPLETED (or a serve run RUNNING), 1 ERROR, 2 STOPPED, "
               "124 the timeout passed first", formatter_class=argparse.RawTextHelpFormatter)
    _run_id_argument(wait, "a run id, or its start")
    wait.add_argument("--project", help="fail unless the run is of this project")
    wait.add_argument("--timeout", type=seconds, metavar="S", help="give up after S seconds")
    _json_option(wait, "the run's document as it is when the wait ends (whatever the exit "
                       "status)")
    wait.set_defaults(run=_wait)

    stop = commands.add_parser(
        "stop", help="stop a run (its supervisor, or the process that runs it)",
        description="Stop a run: its container removed, the run STOPPED. A run nobody waited "
                    "for is stopped from any process of this host; one that runs in a "
                    "caller's own thread is stopped there.")
    _run_id_argument(stop, "a run id, or its start")
    stop.add_argument("--project", help="fail unless the run is of this project")
    stop.set_defaults(run=_stop)

    agent = commands.add_parser(
        "agent", help="the home's agent: the warm process supervisors are forked from",
        description="The agent of $PYHOST_HOME starts with the first run nobody waits for "
                    "and leaves when idle (PYHOST_AGENT_IDLE seconds, default 600); the "
                    "supervisors it forked go on when it stops.")
    agent.add_argument("what", choices=["status", "stop"])
    agent.set_defaults(run=_agent)

    show = commands.add_parser("show", help="an entity or run as JSON")
    ref = show.add_argument("ref", metavar="KEY_OR_RUN_ID",
                            help="store://<project>/<type>/<kind>/<name>[:<id>] (no id: the "
                                 "latest version), or a run id or its start")
    ref.completer = complete_run_ids  # type: ignore[attr-defined]
    _json_option(show, "the document alone (no table preview)")
    show.set_defaults(run=_show)


def _run_id_argument(parser: argparse.ArgumentParser, help: str) -> None:
    action = parser.add_argument("run_id", metavar="RUN_ID", help=help)
    action.completer = complete_run_ids  # type: ignore[attr-defined]


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON document on stdout: {what}")


# -- parsing the command line ----------------------------------------------------------------

def seconds(text: str) -> float:
    """A ``--timeout``'s seconds: a number > 0 (argparse's error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of seconds")
    return value


def count(text: str) -> int:
    """A ``--limit``'s count: a whole number >= 1 (argparse's error otherwise)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1")
    return int(text)


# -- the commands ----------------------------------------------------------------------------

def print_run(run: Run, extra: Sequence[tuple[str, str]] = ()) -> None:
    """A run's summary for people: one ``label  value`` line each (``extra`` added), and an
    ERROR run's traceback on stderr."""
    from .runtime.values import from_json

    status = run.status.to_dict()
    lines = [("run", run.id), ("function", run.spec.get("function", "")),
             ("state", f"{status.get('state')} ({_duration(run)})"),
             ("message", status.get("message") or ""), *extra]
    for title, values in (("results", status.get("results")),
                          ("outputs", status.get("outputs"))):
        for name, value in (values or {}).items():
            decoded = from_json(value)
            text = json.dumps(value, ensure_ascii=False) if decoded is value else repr(decoded)
            lines.append((f"{title}.{name}", _clip(text, 300)))
    if status.get("logs"):
        lines.append(("logs", f"pyhost logs {run.id[:12]}"))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")
    print_error(run)


def print_error(run: Run) -> None:
    """An ERROR run's traceback (else its error's type and message) on stderr."""
    error = run.status.error or {}
    if run.status.state == "ERROR" and error:
        sys.stdout.flush()  # the run's block first, where both go to one terminal
        print(error.get("traceback", "").rstrip() or f"{error.get('type')}: "
              f"{error.get('message')}", file=sys.stderr)


def print_json(value: Any) -> None:
    """Print ``value`` as the one JSON document of a ``--json`` command."""
    print(json_text(value))


def json_text(value: Any) -> str:
    """``value`` as strict JSON, indented: NaN and the infinities as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (JSON has no token for them; Python's would break other
    readers), anything else JSON cannot hold as its ``str``."""
    return json.dumps(_finite(value), indent=2, ensure_ascii=False, default=str,
                      allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def run_document(runtime: Runtime, run: Run) -> dict[str, Any]:
    """The run's record as the catalog holds it (read again: what ``show`` prints)."""
    return dict(runtime.get("run", run.id).document)



def _runs(args: argparse.Namespace) -> int:
    from .runtime.entities import parse_key

    runs = _listed_runs(args.project, args.state, args.function, args.limit)
    if args.json:
        print_json([_summary(run) for run in runs])
        return 0
    if not runs:
        what = " ".join(filter(None, [args.state, "runs",
                                      args.function and f"of {args.function!r}"]))
        print(f"no {what} in project {args.project!r}")
        return 0
    rows = [("ID", "FUNCTION", "STATE", "STARTED", "DURATION", "MESSAGE")]
    for run in runs:
        function = run.spec.get("function")
        message = (run.status.message or "").strip().splitlines()
        rows.append((run.id[:12], parse_key(function).name if function else "?",
                     run.status.state or "?",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(_started(run))),
                     _duration(run), _clip(message[0] if message else "", 60)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _listed_runs(project: str, state: str | None, function: str | None,
                 limit: int | None) -> list[Run]:
    """The runs ``runs`` lists, newest first."""
    from .runtime import Run, get_runtime, list_runs

    runtime = get_runtime()
    if function is None:
        runs = [Run(record, runtime)
                for record in runtime.find("run", project=project, state=state, limit=limit)]
    else:
        try:
            runs = list_runs(project, state=state, function=function)
        except NotInCatalog:  # no such project: no runs, as without --function
            runs = []
        runs = runs[-limit:] if limit else runs
    return runs[::-1]


def _summary(run: Run) -> dict[str, Any]:
    """A run as ``runs --json`` lists it."""
    from .runtime.entities import parse_key

    function = run.spec.get("function")
    return {"id": run.id, "key": run.key, "project": run.project,
            "function": parse_key(function).name if function else None,
            "function_key": function, "action": run.spec.get("action"),
            "state": run.status.state, "created": run.metadata.get("created"),
            "updated": run.metadata.get("updated"), "duration": round(_seconds_taken(run), 3),
            "message": run.status.message}


def _logs(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    run = find_run(get_runtime(), args.run_id, args.project)
    if args.follow:
        try:
            for line in run.logs(follow=True):
                sys.stdout.write(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            return 130
        return 0
    text = run.logs()
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif run.status.state in ("CREATED", "READY", "RUNNING"):
        print(f"(run {run.id} is {run.status.state} and printed nothing yet; "
              "pyhost logs -f follows it)", file=sys.stderr)
    else:
        print(f"(run {run.id} printed nothing)", file=sys.stderr)
    return 0


_WAIT_STATUS = {"COMPLETED": 0, "ERROR": 1, "STOPPED": 2}


def _wait(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    runtime = get_runtime()
    run = find_run(runtime, args.run_id, args.project).wait(args.timeout)
    state = run.status.state
    if args.json:
        print_json(run_document(runtime, run))
    if run.spec.get("action") == "serve" and state == "RUNNING":
        print(f"run {run.id} is serving", file=sys.stderr)
        return 0
    if state not in _WAIT_STATUS:
        print(f"run {run.id} is still {state} after {args.timeout:g} s", file=sys.stderr)
        return 124
    if args.json:
        print_error(run)
    else:
        print_run(run)
    return _WAIT_STATUS[state]


def _stop(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    run = find_run(get_runtime(), args.run_id, args.project)
    before = run.status.state
    if before in _WAIT_STATUS:
        print(f"run {run.id} was already {before}; nothing to stop", file=sys.stderr)
        return 0
    run = run.stop()
    print(f"run {run.id}: {before} -> {run.status.state}", file=sys.stderr)
    return 0 if run.status.state in _WAIT_STATUS else 1


def _agent(args: argparse.Namespace) -> int:
    from .runtime.agent import agent_pid, stop_agent
    from .runtime.home import runtime_home

    home = runtime_home()
    if args.what == "stop":
        pid = stop_agent(home)
        print(f"agent {pid} stopped" if pid else f"no agent runs for {home}")
        return 0
    pid = agent_pid(home)
    print(f"agent {pid} serves {home}" if pid else f"no agent runs for {home}")
    return 0 if pid else 3


def _show(args: argparse.Namespace) -> int:
    from .runtime import get_runtime
    from .runtime.entities import Dataitem

    runtime = get_runtime()
    if "://" in args.ref:
        document = _find_document(runtime, args.ref)
    else:
        document = run_document(runtime, find_run(runtime, args.ref))
    print_json(document)
    if args.json:
        return 0
    if document.get("entity_type") == "dataitem" and "table" in (document.get("status") or {}):
        print("\nhead():")
        print(Dataitem(document, runtime).as_df().head().to_string())
    return 0


# -- helpers ---------------------------------------------------------------------------------

_COMPLETED_RUNS = 500  # the newest runs whose ids completion offers


def complete_run_ids(prefix: str, parsed_args: argparse.Namespace | None = None,
                     **_: Any) -> list[str]:
    """The ids (as ``runs`` shows them) of the newest runs that start with ``prefix``, newest
    first, in ``--project`` when it was given: argcomplete's completer for RUN_ID. Nothing
    when the home has no catalog yet (none is made) or it cannot be read."""
    from .errors import PyHostError
    from .runtime import Runtime
    from .runtime.home import runtime_home

    home = runtime_home()
    if not (home / "catalog.db").exists():
        return []
    try:
        runtime = Runtime.open(home, settle=False)  # completing changes nothing
        try:
            records = runtime.find("run", project=getattr(parsed_args, "project", None),
                                   limit=_COMPLETED_RUNS)
        finally:
            runtime.close()
    except PyHostError:
        return []
    width = max(12, len(prefix))
    return [record.id[:width] for record in reversed(records) if record.id.startswith(prefix)]


def find_run(runtime: Runtime, ref: str, project: str | None = None) -> Run:
    """The run with id ``ref``, or the one run whose id starts with it.

    Raises:
        NotInCatalog: no such run (in ``project``, when given).
        ConfigurationError: several runs' ids start with ``ref``.
    """
    from .runtime import Run

    where = f" in project {project!r}" if project else ""
    try:
        record = runtime.get("run", ref)
    except NotInCatalog:
        matches = [record for record in runtime.find("run", project=project)
                   if ref and record.id.startswith(ref)]
        if not matches:
            raise NotInCatalog(f"no run {ref!r}{where}") from None
        if len(matches) > 1:
            raise ConfigurationError(f"{len(matches)} runs{where} have ids starting with "
                                     f"{ref!r}; give more of the id") from None
        record = matches[0]
    if project is not None and record.project != project:
        raise NotInCatalog(f"no run {ref!r}{where} (it is of project {record.project!r})")
    return Run(record, runtime)


def _find_document(runtime: Runtime, key: str) -> dict[str, Any]:
    """The document of the entity ``key`` names (no id: its latest version).

    Raises:
        ConfigurationError: not an entity key.
        NotInCatalog: no such entity.
    """
    from .runtime.catalog import ENTITY_TYPES
    from .runtime.entities import parse_key

    parts = parse_key(key)
    if parts.entity_type not in ENTITY_TYPES:
        raise ConfigurationError(f"{key}: no entity type {parts.entity_type!r} (the types are "
                                 f"{', '.join(ENTITY_TYPES)})")
    record = (runtime.get(parts.entity_type, parts.id) if parts.id
              else runtime.latest(parts.entity_type, parts.project, parts.name))
    if (record.project, record.name) != (parts.project, parts.name):
        raise NotInCatalog(f"no {key} (that id is {record.document.get('key')})")
    return record.document


def _started(run: Run) -> float:
    return float(run.status.timings.get("CREATED") or time.time())


def _seconds_taken(run: Run) -> float:
    """From its creation to its end (to now, while it is active)."""
    ended = run.status.timings.get(run.status.state) if run.status.state in (
        "COMPLETED", "ERROR", "STOPPED") else None
    return max(0.0, (ended or time.time()) - _started(run))


def _duration(run: Run) -> str:
    seconds = _seconds_taken(run)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
