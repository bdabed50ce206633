"""The run-inspection commands of ``pyhost``: ``runs``, ``logs``, ``wait``, ``stop``, ``show``,
and what the runtime's other commands share with them: finding a run by (the start of) its
id, and printing a run's summary.

Every command works on this process's runtime (its home is ``$PYHOST_HOME``, see
:mod:`pyhost.runtime.home`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, NotInCatalog

if TYPE_CHECKING:
    from .runtime import Run, Runtime

__all__ = ["add_run_commands", "count", "find_run", "print_run", "seconds"]


def add_run_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``runs``, ``logs``, ``wait``, ``stop`` and ``show`` to the ``pyhost``
    subcommands."""
    runs = commands.add_parser("runs", help="list a project's runs, newest last",
                               description="A project's runs, newest last: the id's first "
                                           "12 characters (enough for logs and show), "
                                           "function, state, start, duration, message.")
    runs.add_argument("--project", default="default", help="the project (default: default)")
    runs.add_argument("--state", type=str.upper, metavar="STATE",
                      choices=["CREATED", "READY", "RUNNING", "COMPLETED", "ERROR", "STOPPED"],
                      help="only runs in this state (CREATED, READY, RUNNING, COMPLETED, "
                           "ERROR, STOPPED)")
    runs.add_argument("--limit", type=count, metavar="N", help="only the newest N")
    runs.set_defaults(run=_runs)

    logs = commands.add_parser("logs", help="what a run's handler printed")
    logs.add_argument("run_id", metavar="RUN_ID", help="a run id, or its start (as `runs` "
                                                       "shows it)")
    logs.add_argument("--project", help="fail unless the run is of this project")
    logs.set_defaults(run=_logs)

    wait = commands.add_parser(
        "wait", help="wait until a run ends (from any process)",
        description="Wait until the run ends; a serve run, until it serves.",
        epilog="exit status: 0 COMPLETED (or a serve run RUNNING), 1 ERROR, 2 STOPPED, "
               "124 the timeout passed first", formatter_class=argparse.RawTextHelpFormatter)
    wait.add_argument("run_id", metavar="RUN_ID", help="a run id, or its start")
    wait.add_argument("--project", help="fail unless the run is of this project")
    wait.add_argument("--timeout", type=seconds, metavar="S", help="give up after S seconds")
    wait.set_defaults(run=_wait)

    stop = commands.add_parser(
        "stop", help="stop a run (its supervisor, or the process that runs it)",
        description="Stop a run: its container removed, the run STOPPED. A run nobody waited "
                    "for is stopped from any process of this host; one that runs in a "
                    "caller's own thread is stopped there.")
    stop.add_argument("run_id", metavar="RUN_ID", help="a run id, or its start")
    stop.add_argument("--project", help="fail unless the run is of this project")
    stop.set_defaults(run=_stop)

    show = commands.add_parser("show", help="an entity or run as JSON")
    show.add_argument("ref", metavar="KEY_OR_RUN_ID",
                      help="store://<project>/<type>/<kind>/<name>[:<id>] (no id: the "
                           "latest version), or a run id or its start")
    show.set_defaults(run=_show)


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
    error = status.get("error") or {}
    if run.status.state == "ERROR" and error:
        sys.stdout.flush()  # the run's block first, where both go to one terminal
        print(error.get("traceback", "").rstrip() or f"{error.get('type')}: "
              f"{error.get('message')}", file=sys.stderr)



def _runs(args: argparse.Namespace) -> int:
    from .runtime import Run, get_runtime
    from .runtime.entities import parse_key

    runtime = get_runtime()
    records = runtime.find("run", project=args.project, state=args.state, limit=args.limit)
    if not records:
        print(f"no {args.state + ' ' if args.state else ''}runs in project {args.project!r}")
        return 0
    rows = [("ID", "FUNCTION", "STATE", "STARTED", "DURATION", "MESSAGE")]
    for record in records:
        run = Run(record, runtime)
        function = run.spec.get("function")
        message = (run.status.message or "").strip().splitlines()
        rows.append((run.id[:12], parse_key(function).name if function else "?",
                     run.status.state or "?",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)),
                     _duration(run), _clip(message[0] if message else "", 60)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    run = find_run(get_runtime(), args.run_id, args.project)
    text = run.logs()
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif run.status.state in ("CREATED", "READY", "RUNNING"):
        print(f"(run {run.id} is {run.status.state}; its logs are kept when it ends)",
              file=sys.stderr)
    else:
        print(f"(run {run.id} printed nothing)", file=sys.stderr)
    return 0


_WAIT_STATUS = {"COMPLETED": 0, "ERROR": 1, "STOPPED": 2}


def _wait(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    run = find_run(get_runtime(), args.run_id, args.project).wait(args.timeout)
    state = run.status.state
    if run.spec.get("action") == "serve" and state == "RUNNING":
        print(f"run {run.id} is serving", file=sys.stderr)
        return 0
    if state not in _WAIT_STATUS:
        print(f"run {run.id} is still {state} after {args.timeout:g} s", file=sys.stderr)
        return 124
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


def _show(args: argparse.Namespace) -> int:
    from .runtime import get_runtime
    from .runtime.entities import Dataitem

    runtime = get_runtime()
    if "://" in args.ref:
        document = _find_document(runtime, args.ref)
    else:
        document = runtime.get("run", find_run(runtime, args.ref).id).document
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    if document.get("entity_type") == "dataitem" and "table" in (document.get("status") or {}):
        print("\nhead():")
        print(Dataitem(document, runtime).as_df().head().to_string())
    return 0


# -- helpers ---------------------------------------------------------------------------------

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


def _duration(run: Run) -> str:
    timings = run.status.timings
    started = timings.get("CREATED") or run.metadata.get("created") or time.time()
    ended = timings.get(run.status.state) if run.status.state in (
        "COMPLETED", "ERROR", "STOPPED") else None
    seconds = max(0.0, (ended or time.time()) - started)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
