"""Interleaved A/B of a cold open: two pyhost trees (each with its own image), and a bare
create+start of the image, taken in turn.

    python benchmarks/ab_cold_open.py N TREE_A IMAGE_A TREE_B IMAGE_B

Each tree's ``py()`` runs in a worker process of its own (``PYTHONPATH`` = the tree and its
``container/``), which opens a session and evaluates ``1`` when told to, and answers with the
wall time and the CPU time its process spent (host CPU: the SDK, the handshake). The order
of the arms turns each round (A B bare, B bare A, bare A B), so a drift in the machine's load
falls on all of them. Prints medians and quartiles; differences below the quartile spread
are noise on a shared machine.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

#: What a worker measures: ``py()``'s first eval, the CPU of its process meanwhile, the time
#: before the engine's start was sent, and from its answer to the eval's (the engine's own
#: start, which varies most on a shared machine, is in neither of the last two).
MEASURES = ("wall", "cpu", "pre", "post")


def worker(image: str) -> int:
    """Open one session per line read; print the times of :data:`MEASURES` in ms."""
    import pyhost
    from pyhost.launchers.docker.client import docker_client
    api = docker_client().api
    request = api.request
    start: list[float] = [0.0, 0.0]  # when the engine's start was sent, and answered

    def timed(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent = time.perf_counter()
        try:
            return request(method, url, *args, **kwargs)
        finally:
            if url.endswith("/start"):
                start[:] = [sent, time.perf_counter()]

    api.request = timed
    for _ in sys.stdin:
        with pyhost.py(io=None, image=image) as session:
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            session.eval("1")
            ended = time.perf_counter()
            after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(json.dumps({"wall": (ended - started) * 1e3, "cpu": cpu * 1e3,
                          "pre": (start[0] - started) * 1e3, "post": (ended - start[1]) * 1e3}),
              flush=True)
    return 0


def bare_start(client: object, image: str) -> float:
    """Create + start of ``image`` running ``sleep infinity``, network none (as the row's
    baseline); removal is not timed. Milliseconds."""
    api = client.api  # type: ignore[attr-defined]
    host_config = api.create_host_config(network_mode="none")
    started = time.perf_counter()
    container = api.create_container(image, entrypoint=["sleep", "infinity"],
                                     user="61000:61000", host_config=host_config,
                                     labels={"org.pyhost.bench": "1"})
    try:
        api.start(container)
        return (time.perf_counter() - started) * 1e3
    finally:
        api.remove_container(container, force=True)


def main(argv: list[str]) -> int:
    if argv[0] == "--worker":
        return worker(argv[1])
    import docker
    samples, tree_a, image_a, tree_b, image_b = int(argv[0]), *argv[1:5]
    client = docker.from_env()
    workers = {}
    for name, tree, image in (("A", tree_a, image_a), ("B", tree_b, image_b)):
        env = {**os.environ, "PYTHONPATH": f"{tree}:{tree}/container"}
        workers[name] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", image], env=env, cwd=tree,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    results: dict[str, dict[str, list[float]]] = {
        arm: {measure: [] for measure in MEASURES} for arm in ("A", "B")}
    results["bare"] = {"wall": []}
    orders = (("A", "B", "bare"), ("B", "bare", "A"), ("bare", "A", "B"))
    try:
        for index in range(samples + 1):
            for arm in orders[index % 3]:
                if arm == "bare":
                    measured = {"wall": bare_start(client, image_a)}
                else:
                    process = workers[arm]
                    assert process.stdin is not None and process.stdout is not None
                    process.stdin.write("\n")
                    process.stdin.flush()
                    measured = json.loads(process.stdout.readline())
                if index:  # the first round warms up
                    for key, value in measured.items():
                        results[arm][key].append(value)
    finally:
        for process in workers.values():
            assert process.stdin is not None
            process.stdin.close()
            process.wait()
    print(f"{samples} rounds; A = {tree_a} ({image_a[:19]}), B = {tree_b} ({image_b[:19]})")
    for arm, series in results.items():
        for key, values in series.items():
            low, mid, high = statistics.quantiles(values, n=4)
            print(f"  {arm:<5}{key:<5} median {statistics.median(values):7.2f} ms "
                  f"(quartiles {low:7.2f} {high:7.2f})")
    ratio = [a / bare for a, bare in zip(results["A"]["wall"], results["bare"]["wall"])]
    ratio_b = [b / bare for b, bare in zip(results["B"]["wall"], results["bare"]["wall"])]
    print(f"  A/bare median {statistics.median(ratio):.3f}, B/bare median "
          f"{statistics.median(ratio_b):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
