# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: `register-python-argcomplete pyhost` completes)
"""The ``pyhost`` command: engine up, image build, doctor, gc; and the runtime's run, runs,
logs and show."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import __version__, cli_runs, cli_runtime, cli_serve
from .errors import ConfigurationError, EngineUnavailable, PyHostError

__all__ = ["build_parser", "main"]


def _say(line: str) -> None:
    print(line, flush=True)


def _engine_up(args: argparse.Namespace) -> int:
    from .launchers.docker.dockerd import ensure_engine
    from .launchers.docker.paths import engine_view

    client = ensure_engine(install=not args.no_install, progress=_say)
    kind = engine_view(client).kind
    print(f"engine ready: {kind}")
    for change in kind.changes():
        print(f"  {kind.product}: {change}")
    return 0


def _image_build(args: argparse.Namespace) -> int:
    from .launchers.docker.dockerd import ensure_engine
    from .launchers.docker.image import DEFAULT_TAG, build_image
    from .launchers.docker.python_images import DEBIAN_VERSIONS, build_python_image, python_route

    if args.python is None:
        client = ensure_engine(install=not args.no_install, progress=_say)
        started = time.monotonic()
        tag = args.tag or DEFAULT_TAG
        image_id = build_image(tag, base=args.base, force=args.force, progress=_say,
                               client=client)
        print(f"image ready: {tag} = {image_id[:19]} ({time.monotonic() - started:.1f} s)")
        _print_versions(client, image_id)
        return 0
    versions = DEBIAN_VERSIONS if args.python == "all" else (args.python,)
    if args.tag or (args.base and len(versions) > 1):
        # hxpy:py3.X is what runs of that python_version look for, so it is not renamed.
        raise ConfigurationError("--python builds hxpy:py<version>: drop --tag, and give "
                                 "--base only with a single version")
    for version in versions:
        python_route(version)  # an unknown version fails before anything is built
    client = ensure_engine(install=not args.no_install, progress=_say)
    for version in versions:
        started = time.monotonic()
        image_id = build_python_image(version, base=args.base, force=args.force,
                                      progress=_say, client=client)
        print(f"image ready: {python_route(version).tag} = {image_id[:19]} "
              f"({time.monotonic() - started:.1f} s)")
        _print_versions(client, image_id)
    return 0


def _print_versions(client: Any, image_id: str) -> None:
    """The pinned versions an image holds, as its label records them."""
    from .launchers.docker.client import inspect_image
    from .launchers.docker.image import image_labels
    from .launchers.docker.pins import VERSIONS_LABEL, parse_versions

    attrs = inspect_image(client, image_id) or {}
    held = parse_versions(image_labels(attrs).get(VERSIONS_LABEL, ""))
    print("  versions: " + (", ".join(f"{name} {version}" for name, version in held.items())
                            or "none recorded"))


def _engine_swarm_up(args: argparse.Namespace) -> int:
    from .launchers.docker.dockerd import ensure_engine
    from .launchers.docker.swarm.cluster import swarm_up

    state, made = swarm_up(ensure_engine(install=not args.no_install, progress=_say),
                           args.advertise_addr)
    print(("made " if made else "already ") + state.describe())
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .launchers.docker.client import docker_client
    from .launchers.docker.doctor import diagnose
    from .launchers.docker.swarm.doctor import diagnose_swarm

    checks = diagnose(args.io, args.tag)
    if checks[0].ok:  # the engine answers
        checks += diagnose_swarm(docker_client())
    for check in checks:
        print(check)
    return 0 if all(check.ok for check in checks) else 1


_GC_HELP = """Settle as ERROR the runs that dead pyhost processes left active, then remove
the containers and socket directories of dead pyhost processes. Each part runs whatever
became of the other. A part that cannot run because no Docker engine answers is reported as
skipped, which is no failure (without an engine gc can remove nothing); the exit status is 1 when
a part that ran failed."""


def _gc(args: argparse.Namespace) -> int:
    failed = False
    parts = (("runs", cli_runtime.settle_runs), ("containers", _collect_orphans),
             ("swarm", _collect_swarm_orphans))
    for name, part in parts:
        try:
            outcome, ok = part()
        except PyHostError as exc:
            outcome, ok = f"failed: {exc}", False
        print(f"{name}: {outcome}", file=sys.stdout if ok else sys.stderr)
        failed = failed or not ok
    return 1 if failed else 0


def _collect_orphans() -> tuple[str, bool]:
    from .launchers.docker.orphans import collect

    return _on_engine(collect)


def _collect_swarm_orphans() -> tuple[str, bool]:
    from .launchers.docker.swarm.orphans import collect_swarm

    return _on_engine(collect_swarm)


def _on_engine(collect: Callable[[Any], Any]) -> tuple[str, bool]:
    """Run a gc part on the engine: skipped (no failure) when none answers."""
    from .launchers.docker.client import docker_client

    try:
        client = docker_client()
    except EngineUnavailable as exc:
        return f"skipped: {exc}", True
    report = collect(client)
    return str(report), not report.failed


def build_parser() -> argparse.ArgumentParser:
    """The ``pyhost`` command line's parser, every subcommand in it."""
    from .launchers.docker.image import DEFAULT_TAG

    parser = argparse.ArgumentParser(prog="pyhost", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyhost {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log lifecycle events")
    commands = parser.add_subparsers(dest="command", required=True)

    engine = commands.add_parser("engine", help="the Docker engine")
    engine_cmds = engine.add_subparsers(dest="action", required=True)
    up = engine_cmds.add_parser("up", help="reuse a running engine, or install and start one")
    up.add_argument("--no-install", action="store_true", help="never install or start dockerd")
    up.set_defaults(run=_engine_up)
    swarm = engine_cmds.add_parser("swarm-up", help="make the engine a single-node swarm "
                                   "manager (a no-op in a swarm); needed by launcher='swarm'")
    swarm.add_argument("--advertise-addr", default=None,
                       help="the address other nodes reach this one at (default: the first "
                            "global IPv4 address)")
    swarm.add_argument("--no-install", action="store_true", help="never install or start dockerd")
    swarm.set_defaults(run=_engine_swarm_up)

    image = commands.add_parser("image", help="the session image")
    image_cmds = image.add_subparsers(dest="action", required=True)
    build = image_cmds.add_parser("build", help="build Dockerfile.hxpy unless up to date")
    build.add_argument("--tag", default=None, help=f"default: {DEFAULT_TAG}")
    build.add_argument("--python", default=None, metavar="VERSION",
                       help="build hxpy:py<VERSION> for runs of that python_version (3.9, "
                            "3.11, 3.13 offline: python:3.X-slim, else a Debian base); "
                            "'all' builds those three")
    build.add_argument("--base", default=None, help="base image (default: python:3.12-slim, "
                                                    "else a Debian base made with debootstrap)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--no-install", action="store_true", help="never install or start dockerd")
    build.set_defaults(run=_image_build)

    doctor = commands.add_parser("doctor", help="check engine, image, permissions and io dir")
    doctor.add_argument("--io", default="io", help="the io directory sessions will mount")
    doctor.add_argument("--tag", default=DEFAULT_TAG)
    doctor.set_defaults(run=_doctor)

    gc = commands.add_parser("gc", help="settle runs, remove containers and dirs of dead "
                                        "pyhost processes", description=_GC_HELP)
    gc.set_defaults(run=_gc)

    console = commands.add_parser(
        "console", help="the catalog in the browser: projects, runs and live logs",
        description="Serve the web console of $PYHOST_HOME (or --home) until interrupted. On "
                    "a loopback address no token is asked; on any other, a token is made "
                    "(or --token / PYHOST_CONSOLE_TOKEN) and the URL printed carries it.")
    console.add_argument("--host", default="127.0.0.1", help="address to bind (default: "
                                                             "127.0.0.1)")
    console.add_argument("--port", type=int, default=8765, help="default: 8765")
    console.add_argument("--home", default=None, help="the home whose catalog is shown "
                                                      "(default: $PYHOST_HOME)")
    console.add_argument("--token", default=os.environ.get("PYHOST_CONSOLE_TOKEN"),
                         help="the token pages ask for (default: $PYHOST_CONSOLE_TOKEN, else "
                              "one is made when --host is not a loopback address)")
    console.set_defaults(run=_console)

    cli_runtime.add_commands(commands)
    cli_runs.add_run_commands(commands)
    cli_serve.add_serve_command(commands)
    return parser


def _console(args: argparse.Namespace) -> int:
    from .console import serve

    serve(args.host, args.port, args.home, args.token or None)
    return 0


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this process is one (argcomplete
    sets ``_ARGCOMPLETE``); otherwise nothing, not even the import."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:  # installed without its dependencies: no completion, no failure
        return
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    """Run the ``pyhost`` command line."""
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    try:
        return int(args.run(args))
    except PyHostError as exc:
        print(f"pyhost: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
