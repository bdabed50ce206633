"""The runtime's commands of ``pyhost``: ``run``, ``build``, ``runs``, ``logs``, ``wait``,
``stop``, ``show``, and the part of ``gc`` that settles runs left active by dead processes.

Every command works on this process's runtime (its home is ``$PYHOST_HOME``, see
:mod:`pyhost.runtime.home`). Malformed command lines are argparse's errors (exit 2); what
the runtime refuses is a :class:`~pyhost.errors.PyHostError`, printed by ``cli.main``
(exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, NotInCatalog

if TYPE_CHECKING:
    from .runtime import Run, Runtime

__all__ = ["Pairs", "add_commands", "json_pair", "parse_pair", "parse_target", "settle_runs",
           "split_target"]

_RUN_HELP = """\
SOURCE is a local file or directory (the function's code_src, recorded as an absolute
path); HANDLER is 'func' or 'module:func', found in SOURCE's files. The split is at the
last ':' when what precedes it is an existing file or directory, else at the ':' before:

  main.py:train            code_src=main.py  handler=train
  src:pkg.jobs:train       code_src=src      handler=pkg.jobs:train

--param NAME=VALUE: VALUE is read as JSON when it parses as JSON (3, 2.5, true, null,
[1, 2], {"a": 1}), else kept as the string it is; quote it as JSON to force a string:
--param 'tag="3"'. --env values are strings as they are.

exit status: 0 the run COMPLETED; 1 it ended ERROR or STOPPED, or the runtime refused it
(the reason on stderr); 2 a malformed command line; 130 interrupted (the run is stopped;
with --local it ends ERROR when the next pyhost command opens the catalog).
"""


_BUILD_HELP = """\
SOURCE:HANDLER as for `pyhost run`. The function is saved with --requirements and
--base-image (a new version if they changed), then its image is built FROM the base
(default: the session image) with the requirements resolved as wheels on this host, each
--instruction a RUN step as root, and the source at /opt/function. The image is tagged
pyhost/<project>/<function>:<version> and later runs of that version use it; an unchanged
build is not redone. Build steps have no network unless --allow-network (apt-get needs it).

exit status: 0 the image is built (or was current); 1 the build ended ERROR, or the runtime
refused it (the reason on stderr); 2 a malformed command line.
"""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``, ``build``, ``runs``, ``logs`` and ``show`` to the ``pyhost``
    subcommands."""
    run = _function_command(commands, "run", "save a python function and run it as a job",
                            "Save SOURCE:HANDLER as a python function (a new version if it "
                            "changed) and run it, waiting for the end: the handler's log "
                            "streams to stderr as it runs, the summary goes to stdout.",
                            _RUN_HELP)
    run.add_argument("--action", default="job", choices=["job"], help="what to run (job)")
    run.add_argument("--param", dest="parameters", metavar="NAME=VALUE", type=json_pair,
                     action=Pairs, help="a handler argument; VALUE as JSON if it parses")
    run.add_argument("--input", dest="inputs", metavar="NAME=KEY", type=parse_pair,
                     action=Pairs, help="a handler argument from an entity, "
                                         "store://<project>/<type>/<kind>/<name>[:<id>]")
    run.add_argument("--output", dest="outputs", metavar="OUTPUT=ENTITY", type=parse_pair,
                     action=Pairs, help="name the entity an output becomes")
    run.add_argument("--secret", dest="secrets", metavar="NAME", action="append",
                     help="pass this environment variable to the handler (never recorded)")
    run.add_argument("--env", dest="envs", metavar="NAME=VALUE", type=parse_pair, action=Pairs,
                     help="an environment variable for the handler")
    run.add_argument("--timeout", type=_seconds, metavar="S",
                     help="seconds the handler may run (enforced in a session, not --local)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="run in this process: no container, NOT a sandbox")
    where.add_argument("--launcher", choices=["docker", "process", "swarm"],
                       help="where the session runs (default: docker)")
    run.add_argument("--detach", "-d", action="store_true",
                     help="print the run's id and return: the run goes on in a supervisor "
                          "process (pyhost wait / logs -f / stop RUN_ID)")
    run.set_defaults(run=_run)

    build = _function_command(commands, "build", "build a python function's image",
                              "Save SOURCE:HANDLER as a python function and build its "
                              "image, waiting for the end.", _BUILD_HELP)
    build.add_argument("--requirements", nargs="+", action="extend", metavar="REQ",
                       help="pip requirements: names with versions, or wheel files")
    build.add_argument("--instruction", dest="instructions", action="append", metavar="CMD",
                       help="a shell command run as root in the image (repeatable)")
    build.add_argument("--base-image", metavar="IMAGE", help="the image to build FROM")
    build.add_argument("--find-links", action="append", metavar="DIR",
                       help="a local directory of wheels (repeatable)")
    build.add_argument("--index-url", metavar="URL", help="the package index to use")
    build.add_argument("--offline", action="store_true",
                       help="use no index: --find-links and the host's wheelhouse only")
    build.add_argument("--allow-network", action="store_true",
                       help="let the build steps reach the network")
    build.add_argument("--force", action="store_true",
                       help="build even when the image is current")
    build.set_defaults(run=_build)

    runs = commands.add_parser("runs", help="list a project's runs, newest last",
                               description="A project's runs, newest last: the id's first "
                                           "12 characters (enough for logs and show), "
                                           "function, state, start, duration, message.")
    runs.add_argument("--project", default="default", help="the project (default: default)")
    runs.add_argument("--state", type=str.upper, metavar="STATE",
                      choices=["CREATED", "READY", "RUNNING", "COMPLETED", "ERROR", "STOPPED"],
                      help="only runs in this state (CREATED, READY, RUNNING, COMPLETED, "
                           "ERROR, STOPPED)")
    runs.add_argument("--limit", type=_count, metavar="N", help="only the newest N")
    runs.set_defaults(run=_runs)

    logs = commands.add_parser("logs", help="what a run's handler printed")
    logs.add_argument("run_id", metavar="RUN_ID", help="a run id, or its start (as `runs` "
                                                       "shows it)")
    logs.add_argument("--project", help="fail unless the run is of this project")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="print lines as they are written, until the run ends")
    logs.set_defaults(run=_logs)

    wait = commands.add_parser(
        "wait", help="wait until a run ends (from any process)",
        description="Wait until the run ends; a serve run, until it serves.",
        epilog="exit status: 0 COMPLETED (or a serve run RUNNING), 1 ERROR, 2 STOPPED, "
               "124 the timeout passed first", formatter_class=argparse.RawTextHelpFormatter)
    wait.add_argument("run_id", metavar="RUN_ID", help="a run id, or its start")
    wait.add_argument("--project", help="fail unless the run is of this project")
    wait.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S seconds")
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

def _function_command(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                      name: str, help: str, description: str,
                      epilog: str) -> argparse.ArgumentParser:
    """A command on ``SOURCE:HANDLER`` with ``--project`` and ``--name``."""
    parser = commands.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="SOURCE:HANDLER", type=parse_target)
    parser.add_argument("--project", default="default", help="the project (default: "
                                                              "default; made if missing)")
    parser.add_argument("--name", help="the function's name (default: the handler's name)")
    return parser


def split_target(target: str) -> tuple[str, str]:
    """``(code_src, handler)`` from ``SOURCE:HANDLER`` (the rule is in ``pyhost run -h``).

    Raises:
        ValueError: no ':', an empty handler, or no existing file or directory before it.
    """
    parts = target.split(":")
    if len(parts) < 2:
        raise ValueError(f"{target!r}: give SOURCE:HANDLER, e.g. main.py:main")
    for cut in (len(parts) - 1, len(parts) - 2):  # handler 'func', then 'module:func'
        source, handler = ":".join(parts[:cut]), ":".join(parts[cut:])
        if cut >= 1 and source and os.path.exists(source):
            if not all(handler.split(":")):
                raise ValueError(f"{target!r}: the handler {handler!r} is 'func' or "
                                 "'module:func'")
            return source, handler
    raise ValueError(f"{target!r}: no file or directory {':'.join(parts[:-1])!r} (relative "
                     f"to {os.getcwd()}); give SOURCE:HANDLER")


def parse_target(text: str) -> tuple[str, str]:
    try:
        return split_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE")
    return name, value


def json_pair(text: str) -> tuple[str, Any]:
    name, value = parse_pair(text)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of seconds")
    return seconds


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1")
    return int(text)


class Pairs(argparse.Action):
    """Collect a repeated ``NAME=VALUE`` option into a dict; a name given twice is an error
    (which one was meant is a guess)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        name, value = values
        found = dict(getattr(namespace, self.dest) or {})
        if name in found:
            raise argparse.ArgumentError(self, f"{name!r} given twice")
        found[name] = value
        setattr(namespace, self.dest, found)


# -- the commands ----------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    from .runtime import get_or_create_project

    if args.detach and args.local:
        raise ConfigurationError("--detach with --local: a local run runs in this process, "
                                 "which --detach ends at once; run it in a session instead")
    code_src, handler = args.target
    project = get_or_create_project(args.project)
    function = project.new_function(name=args.name or handler.rpartition(":")[2],
                                    kind="python", code_src=os.path.abspath(code_src),
                                    handler=handler)
    run = function.run(action=args.action, inputs=args.inputs or {},
                       parameters=args.parameters or {}, outputs=args.outputs or {},
                       secrets=args.secrets or [],
                       envs=[{"name": k, "value": v} for k, v in (args.envs or {}).items()],
                       timeout=args.timeout, local_execution=args.local,
                       launcher=args.launcher or "docker", wait=False)
    if args.detach:
        print(run.id)  # the run goes on in its supervisor: pyhost wait/logs -f/stop RUN_ID
        return 0
    try:  # followed here, not with wait=True, so that Ctrl-C can stop the run
        for line in run.logs(follow=True):  # the handler's log on stderr as it runs
            sys.stderr.write(line)
            sys.stderr.flush()
        run.wait()
    except KeyboardInterrupt:
        if args.local:  # a thread of this process cannot be stopped; the next one settles it
            print(f"\ninterrupted; run {run.id} ends ERROR when the next pyhost opens the "
                  "catalog", file=sys.stderr)
        else:
            print(f"\ninterrupted; stopping run {run.id}", file=sys.stderr)
            _print_run(run.stop())
        return 130
    _print_run(run)
    return 0 if run.status.state == "COMPLETED" else 1


def _build(args: argparse.Namespace) -> int:
    from .runtime import get_or_create_project

    code_src, handler = args.target
    project = get_or_create_project(args.project)
    fields: dict[str, Any] = {"requirements": args.requirements or []}
    if args.base_image:
        fields["base_image"] = args.base_image
    function = project.new_function(name=args.name or handler.rpartition(":")[2],
                                    kind="python", code_src=os.path.abspath(code_src),
                                    handler=handler, **fields)
    progress = "bar" if sys.stderr.isatty() else "lines"
    run = function.run(action="build", instructions=args.instructions or [],
                       find_links=args.find_links or [], index_url=args.index_url,
                       offline=args.offline, allow_network=args.allow_network,
                       force=args.force, progress=progress, wait=True)
    _print_run(run, [("image", run.status.image or run.spec.get("image", "")),
                     ("image_id", run.status.image_id or "")])
    return 0 if run.status.state == "COMPLETED" else 1


def _print_run(run: Run, extra: Sequence[tuple[str, str]] = ()) -> None:
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

    run = _find_run(get_runtime(), args.run_id, args.project)
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

    run = _find_run(get_runtime(), args.run_id, args.project).wait(args.timeout)
    state = run.status.state
    if run.spec.get("action") == "serve" and state == "RUNNING":
        print(f"run {run.id} is serving", file=sys.stderr)
        return 0
    if state not in _WAIT_STATUS:
        print(f"run {run.id} is still {state} after {args.timeout:g} s", file=sys.stderr)
        return 124
    _print_run(run)
    return _WAIT_STATUS[state]


def _stop(args: argparse.Namespace) -> int:
    from .runtime import get_runtime

    run = _find_run(get_runtime(), args.run_id, args.project)
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
        document = runtime.get("run", _find_run(runtime, args.ref).id).document
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    if document.get("entity_type") == "dataitem" and "table" in (document.get("status") or {}):
        print("\nhead():")
        print(Dataitem(document, runtime).as_df().head().to_string())
    return 0


# -- gc's part -------------------------------------------------------------------------------

def settle_runs() -> tuple[str, bool]:
    """Settle as ERROR the active runs whose owner process is gone: ``(what was done, ok)``.

    A home with no catalog yet is left alone (no catalog is made for this).

    Raises:
        CatalogUnavailable: the catalog cannot be read or written.
    """
    from .runtime import Runtime
    from .runtime.home import runtime_home

    home = runtime_home()
    if not (home / "catalog.db").exists():
        return f"no catalog at {home / 'catalog.db'}; nothing to settle", True
    runtime = Runtime.open(home, settle=False)  # to say which runs it settles
    try:
        settled = runtime.settle_orphans()
    finally:
        runtime.close()
    ids = ", ".join(run_id[:12] for run_id in settled)
    return (f"settled {len(settled)} run(s) left active by dead processes"
            + (f" ({ids})" if ids else "")), True


# -- helpers ---------------------------------------------------------------------------------

def _find_run(runtime: Runtime, ref: str, project: str | None = None) -> Run:
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
