"""``pyhost serve SOURCE:HANDLER``: a serve run in the foreground, for users who supervise
it with systemd or compose. It prints the service's URLs and serves until SIGINT (Ctrl-C) or
SIGTERM, which stop it cleanly: every replica removed, the run STOPPED.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .cli_runtime import Pairs, json_pair, parse_pair, parse_target

__all__ = ["add_serve_command"]

_SERVE_HELP = """\
SOURCE:HANDLER as for `pyhost run`. The handler is called as handler(context, event) for
each HTTP request; --init-function NAME is called once per replica as NAME(context,
**init_parameters). --port P publishes replica i on host port P + i (default 0: any free
port); --address the host address they are published on (default 127.0.0.1).

exit status: 0 stopped by SIGINT or SIGTERM; 1 the serve could not start or ended in
ERROR (the reason on stderr); 2 a malformed command line.
"""


def add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``pyhost`` subcommands."""
    serve = commands.add_parser(
        "serve", epilog=_SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="serve a python function over HTTP, in the foreground",
        description="Save SOURCE:HANDLER as a python function and serve it with REPLICAS "
                    "sandboxed replicas until interrupted.")
    serve.add_argument("target", metavar="SOURCE:HANDLER", type=parse_target)
    serve.add_argument("--project", default="default", help="the project (default: default)")
    serve.add_argument("--name", help="the function's name (default: the handler's name)")
    serve.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    serve.add_argument("--port", type=int, default=0, help="host port of the first replica")
    serve.add_argument("--address", default="127.0.0.1",
                       help="host address the ports are published on (default 127.0.0.1)")
    serve.add_argument("--service-type", default="NodePort",
                       choices=["NodePort", "ClusterIP", "LoadBalancer"])
    serve.add_argument("--network", help="an engine network the replicas join (ClusterIP)")
    serve.add_argument("--init-function", metavar="NAME",
                       help="called once per replica as NAME(context, **init_parameters)")
    serve.add_argument("--init-param", dest="init_parameters", metavar="NAME=VALUE",
                       type=json_pair, action=Pairs,
                       help="an init_function argument; VALUE as JSON if it parses")
    serve.add_argument("--secret", dest="secrets", metavar="NAME", action="append",
                       help="pass this environment variable to the handler (never recorded)")
    serve.add_argument("--env", dest="envs", metavar="NAME=VALUE", type=parse_pair, action=Pairs,
                       help="an environment variable for the handler")
    serve.add_argument("--launcher", choices=["docker", "process", "swarm"], default="docker",
                       help="where the replicas run (default: docker)")
    serve.add_argument("--detach", "-d", action="store_true",
                       help="print the run's id and return: the replicas are supervised by a "
                            "process of their own until `pyhost stop RUN_ID`")
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .runtime import get_or_create_project

    code_src, handler = args.target
    project = get_or_create_project(args.project)
    fields: dict[str, Any] = {}
    if args.init_function:
        fields["init_function"] = args.init_function
    function = project.new_function(name=args.name or handler.rpartition(":")[2],
                                    kind="python", code_src=os.path.abspath(code_src),
                                    handler=handler, **fields)
    # Ctrl-C while the replicas start is a KeyboardInterrupt (exit 130; the replicas go at
    # exit); once they serve, it stops the run cleanly.
    run = function.run(action="serve", replicas=args.replicas, port=args.port,
                       address=args.address, service_type=args.service_type,
                       network=args.network, init_parameters=args.init_parameters or {},
                       secrets=args.secrets or [], launcher=args.launcher,
                       envs=[{"name": k, "value": v} for k, v in (args.envs or {}).items()],
                       wait=not args.detach)
    if args.detach:
        print(run.id)  # pyhost wait RUN_ID: until it serves; pyhost stop RUN_ID
        return 0
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        if run.status.state != "RUNNING":
            print(f"pyhost: serve run {run.id} ended {run.status.state}: "
                  f"{run.status.message}", file=sys.stderr)
            return 1
        print(f"run {run.id} serving ({args.replicas} replica(s)); Ctrl-C stops it")
        for url in run.status.service["urls"]:
            print(url)
        sys.stdout.flush()
        while not stop.wait(0.5):
            if run.refresh().status.state != "RUNNING":
                print(f"pyhost: serve run {run.id} ended {run.status.state}: "
                      f"{run.status.message}", file=sys.stderr)
                return 1
        run.stop()
        print(f"run {run.id} {run.status.state}")
        return 0
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
