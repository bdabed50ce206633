"""The runtime's commands of ``pyhost`` that start runs, ``run`` and ``build``, and the part
of ``gc`` that settles runs left active by dead processes. The commands that look at runs
(``runs``, ``logs``, ``wait``, ``stop``, ``show``) are in :mod:`pyhost.cli_runs`.

Every command works on this process's runtime (its home is ``$PYHOST_HOME``, see
:mod:`pyhost.runtime.home`). Malformed command lines are argparse's errors (exit 2); what
the runtime refuses is a :class:`~pyhost.errors.PyHostError`, printed by ``cli.main``
(exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from .cli_runs import print_error, print_json, print_run, run_document, seconds

if TYPE_CHECKING:
    from .runtime import Run

__all__ = ["Pairs", "add_commands", "json_pair", "parse_pair", "parse_target", "python_version",
           "settle_runs", "split_target"]

_RUN_HELP = """\
SOURCE is a local file or directory (the function's code_src, recorded as an absolute
path); HANDLER is 'func' or 'module:func', found in SOURCE's files. The split is at the
last ':' when what precedes it is an existing file or directory, else at the ':' before:

  main.py:train            code_src=main.py  handler=train
  src:pkg.jobs:train       code_src=src      handler=pkg.jobs:train

--param NAME=VALUE: VALUE is read as JSON when it parses as JSON (3, 2.5, true, null,
[1, 2], {"a": 1}), else kept as the string it is; quote it as JSON to force a string:
--param 'tag="3"'. --env values are strings as they are.

--python-version, --image and --requirement are fields of the function (a new version when
they change). With --requirement, the version's image is built first, as `pyhost build`
builds it (a no-op when it is current; its progress on stderr), and the job runs on it.

--json prints the run's document (what `pyhost show RUN_ID --json` prints) on stdout and
nothing else there; an ERROR run's traceback still goes to stderr.

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
    """Add ``run`` and ``build`` to the ``pyhost`` subcommands."""
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
    run.add_argument("--timeout", type=seconds, metavar="S",
                     help="seconds the handler may run (enforced in a session, not --local)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="run in this process: no container, NOT a sandbox")
    where.add_argument("--launcher", choices=["docker", "process", "swarm"],
                       help="where the session runs (default: docker)")
    run.add_argument("--python-version", type=python_version, metavar="VERSION",
                     help="the Python the run needs: 3.9 ... 3.13, or PYTHON3_9 ... "
                          "(default: the session image's, whatever it is)")
    run.add_argument("--image", metavar="IMAGE",
                     help="the image the job runs in (an image with the hxpy server)")
    run.add_argument("--requirement", dest="requirements", action="append", metavar="REQ",
                     help="a pip requirement or a wheel file (repeatable); the function's "
                          "image is built with them before the run")
    run.add_argument("--json", action="store_true",
                     help="print the run's document as JSON on stdout, nothing else")
    run.add_argument("--detach", "-d", action="store_true",
                     help="print the run's id and return: the run goes on in a supervisor "
                          "process (pyhost wait / logs -f / stop RUN_ID)")
    run.set_defaults(run=_run, parser=run)  # parser: for the errors argparse cannot see

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


# -- parsing the command line ----------------------------------------------------------------

def python_version(text: str) -> str:
    """DigitalHub's ``PYTHON3_X`` from ``3.X``, ``PYTHON3_X`` or ``python3.X``.

    Raises:
        argparse.ArgumentTypeError: no Python version the runtime knows.
    """
    from .runtime.sources import PYTHON_VERSIONS

    found = re.fullmatch(r"(?:python)?3[._](\d+)", text.strip(), re.IGNORECASE)
    name = f"PYTHON3_{found[1]}" if found else text
    if name not in PYTHON_VERSIONS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: one of {', '.join(PYTHON_VERSIONS.values())} (or "
            f"{', '.join(PYTHON_VERSIONS)})")
    return name


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

    if args.local and (args.image or args.requirements):
        args.parser.error("--image and --requirement need a container; --local runs in "
                          "this process")
    if args.local and args.detach:
        args.parser.error("--detach with --local: a local run runs in this process, which "
                          "--detach ends at once; run it in a session instead")
    code_src, handler = args.target
    project = get_or_create_project(args.project)
    fields: dict[str, Any] = {"python_version": args.python_version}
    if args.image:  # given only when asked for: an unchanged function stays one version
        fields["image"] = args.image
    if args.requirements:
        fields["requirements"] = args.requirements
    function = project.new_function(name=args.name or handler.rpartition(":")[2],
                                    kind="python", code_src=os.path.abspath(code_src),
                                    handler=handler, **fields)
    if args.requirements:
        build = function.run(action="build", launcher=args.launcher or "docker",
                             progress=lambda line: print(line, file=sys.stderr, flush=True),
                             wait=True)
        if build.status.state != "COMPLETED":
            _report(args, build)
            return 1
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
            _report(args, run.stop())
        return 130
    _report(args, run)
    return 0 if run.status.state == "COMPLETED" else 1


def _report(args: argparse.Namespace, run: Run) -> None:
    """The run's summary, or its document with ``--json``."""
    from .runtime import get_runtime

    if args.json:
        print_json(run_document(get_runtime(), run))
        print_error(run)
    else:
        print_run(run)


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
    print_run(run, [("image", run.status.image or run.spec.get("image", "")),
                     ("image_id", run.status.image_id or "")])
    return 0 if run.status.state == "COMPLETED" else 1


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


