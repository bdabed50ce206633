"""Rows about the serve task: requests/s and latency of a trivial served handler over
loopback, against uvicorn serving a bare hello-world ASGI app from the same image, in the
same run, on the same network path (a port published on 127.0.0.1 from the pyhost-serve
bridge).

The load comes from Debian's ``wrk`` in another process (one per replica, each with half the
connections, summed); ``make bench`` installs it (``make wrk``), and the row is unavailable
without it. Trials of serve and baseline are interleaved.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench import Bench, row
from benchmarks.report import Baseline, Result, Target, Unavailable
from pyhost.launchers.docker.networking import serve_network

HANDLER = "def hello(context, event):\n    return 'hello'\n"
# The same as an async def: awaited on the replica's event loop, no worker thread.
ASYNC_HANDLER = "async def hello(context, event):\n    return 'hello'\n"
BARE_APP = """
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"hello"})

uvicorn.run(app, host="0.0.0.0", port=8080, log_config=None, access_log=False,
            lifespan="off", log_level="warning", server_header=False)
"""
CONNECTIONS = 8
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@row("serve_rps[1]", issue="12")
def serve_rps_1(bench: Bench) -> list[Result]:
    return _serve_rows(bench, 1)


@row("serve_rps[2]", issue="12")
def serve_rps_2(bench: Bench) -> list[Result]:
    return _serve_rows(bench, 2)


@row("serve_rps_async[1]", issue="12")
def serve_rps_async_1(bench: Bench) -> list[Result]:
    """The same with the handler written ``async def``: what the worker-thread hop of a
    plain ``def`` handler costs."""
    return _serve_rows(bench, 1, ASYNC_HANDLER, "serve_rps_async")


def _serve_rows(bench: Bench, replicas: int, handler: str = HANDLER,
                prefix: str = "serve_rps") -> list[Result]:
    if shutil.which("wrk") is None:
        raise Unavailable("wrk is not installed (`make wrk`: apt-get install wrk)")
    trials, seconds = bench.n(3, 1), 2 if bench.quick else 4
    served: list[tuple[float, float, float]] = []
    bare: list[tuple[float, float, float]] = []
    with _serve_run(bench, replicas, handler) as urls, \
            _bare_servers(bench, replicas) as bare_urls:
        _load(urls, 1)  # warm-up of both
        _load(bare_urls, 1)
        for _ in range(trials):
            served.append(_load(urls, seconds))
            bare.append(_load(bare_urls, seconds))
    name = f"{prefix}[{replicas}]"
    detail = prefix.replace("serve_rps", "serve")
    base = f"uvicorn hello-world ASGI app, {replicas} container(s) of the same image"
    note = f"wrk, {CONNECTIONS} keep-alive connections over loopback, {seconds} s a trial"
    return [
        Result(name, "req/s", [s[0] for s in served], higher_is_better=True,
               target=Target(0.8, relative=True, higher_is_better=True),
               baseline=Baseline(f"{base}; req/s", tuple(b[0] for b in bare)), note=note),
        Result(f"{detail}_p50[{replicas}]", "ms", [s[1] for s in served],
               baseline=Baseline(f"{base}; p50 ms", tuple(b[1] for b in bare))),
        Result(f"{detail}_p99[{replicas}]", "ms", [s[2] for s in served],
               target=Target(2.0, relative=True),
               baseline=Baseline(f"{base}; p99 ms", tuple(b[2] for b in bare))),
    ]


@contextlib.contextmanager
def _serve_run(bench: Bench, replicas: int, handler: str) -> Iterator[list[str]]:
    import pyhost.runtime as dh

    home = Path(tempfile.mkdtemp(prefix="pyhost-bench-serve-"))
    run = None
    try:
        dh.configure(home)
        function = dh.get_or_create_project("bench").new_function(
            name="hello", kind="python", code=handler, handler="hello", image=bench.image)
        run = function.run(action="serve", replicas=replicas, launcher=bench.launcher)
        if run.status.state != "RUNNING":
            raise Unavailable(f"the serve run ended {run.status.state}: {run.status.message}")
        yield list(run.status.service["urls"])
    finally:
        if run is not None:
            run.stop()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _bare_servers(bench: Bench, replicas: int) -> Iterator[list[str]]:
    """Containers of the bench image running only uvicorn and the bare app, with the
    session's sandbox, on the serve network, published on loopback."""
    api = bench.client.api
    network = serve_network(bench.client)
    made = []
    try:
        for _ in range(replicas):
            host_config = api.create_host_config(
                network_mode=network, port_bindings={8080: ("127.0.0.1",)}, read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=256,
                mem_limit="1g", tmpfs={"/tmp": "rw,size=64m"})
            container = bench.fleet.create(bench.image, entrypoint=["python3", "-c", BARE_APP],
                                           user="1000:1000", host_config=host_config,
                                           ports=[8080])
            made.append(container)
            api.start(container)
        urls = []
        for container in made:
            port = api.inspect_container(container)["NetworkSettings"]["Ports"]["8080/tcp"]
            urls.append(f"http://127.0.0.1:{port[0]['HostPort']}")
        for url in urls:
            _wait_answers(url)
        yield urls
    finally:
        for container in made:
            with contextlib.suppress(Exception):
                api.remove_container(container, force=True)


def _wait_answers(url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as answer:
                answer.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _load(urls: list[str], seconds: int) -> tuple[float, float, float]:
    """(requests/s summed, p50 ms, p99 ms the worst) of wrk runs at ``urls`` at once."""
    per = max(1, CONNECTIONS // len(urls))
    processes = [subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{seconds}s", "--latency",
                                   url + "/"], stdout=subprocess.PIPE, text=True)
                 for url in urls]
    outputs = [process.communicate()[0] for process in processes]
    rates, p50s, p99s = [], [], []
    for output in outputs:
        rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
        p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
        if not (rate and p50 and p99) or "Non-2xx" in output:
            raise Unavailable(f"wrk said: {output.strip()[-300:]}")
        rates.append(float(rate[1]))
        p50s.append(float(p50[1]) * _UNITS[p50[2]])
        p99s.append(float(p99[1]) * _UNITS[p99[2]])
    return sum(rates), max(p50s), max(p99s)
