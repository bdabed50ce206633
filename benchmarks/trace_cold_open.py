"""Where a cold open goes: every engine request, the connect attempts, the server's start.

Run from a tree: ``python -m benchmarks.trace_cold_open [N]``. It opens N sessions as the
``cold_open`` row does (``py()`` on a new container to the first eval answered), each after a
bare create+start of the same image, and prints the medians of:

* each engine API request made from ``py()`` to the first eval (method and path, count, ms),
  taken by wrapping the SDK client's ``request`` (docker-py's APIClient is a
  ``requests.Session``, so every call goes through it);
* the start of the server's process: the engine's ``State.StartedAt`` against the host's
  clock (one kernel, one clock), from the moment ``start`` was sent;
* the connect attempts (how many refused before one got through) and the time from the
  first attempt to the connection;
* the handshake (connected to welcome) and the first eval (welcome to its answer).

CPU is shared with other work here: compare medians taken in the same minute only.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import pyhost
from benchmarks.containers import Fleet, LabellingClient
from pyhost.launchers.docker.client import docker_client
from pyhost.launchers.docker.launcher import DockerLauncher
from pyhost.session import handshake, transport

Events = list[tuple[str, float, float]]  # (what, start, end), perf_counter seconds


def _path(url: str) -> str:
    parts = urlparse(url).path.split("/")
    # /v1.41/containers/<id>/start -> containers/*/start
    kept = [part if len(part) < 40 else "*" for part in parts[2:]]
    return "/".join(kept)


def instrument(client: Any, events: Events) -> None:
    """Record every request the SDK client sends, and the connect and handshake steps."""
    api = client.api
    request = api.request

    def timed_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return request(method, url, *args, **kwargs)
        finally:
            events.append((f"{method} {_path(url)}", started, time.perf_counter()))

    api.request = timed_request
    socket_for = transport._socket_for

    def counted_socket(endpoint: Any) -> Any:
        events.append(("connect attempt", time.perf_counter(), time.perf_counter()))
        return socket_for(endpoint)

    transport._socket_for = counted_socket  # type: ignore[assignment]
    def timed(name: str, call: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                events.append((name, started, time.perf_counter()))

        return wrapper

    handshake.connect = timed("connect", handshake.connect)  # type: ignore[assignment]
    import pyhost.session.blocking as blocking
    blocking.open_server = timed("open_server", handshake.open_server)  # type: ignore[assignment]


def _since(started: float, at: float) -> float:
    return (at - started) * 1e3


def _epoch(stamp: str) -> float:
    """RFC 3339 with nanoseconds (the engine's) to epoch seconds."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(head + "+00:00").timestamp()
    return whole + float("0." + (frac or "0"))


def main(argv: list[str]) -> int:
    samples = int(argv[0]) if argv else 20
    client = docker_client()
    fleet = Fleet(client, f"trace{int(time.time())}")
    labelling = LabellingClient(client, fleet.labels)
    launcher = DockerLauncher(client=labelling)
    image = str(client.api.inspect_image(sys.argv[2] if len(argv) > 1 else
                                         _default_image(client))["Id"])
    events: Events = []
    instrument(client, events)
    table: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, list[int]] = defaultdict(list)
    try:
        for index in range(samples + 1):
            bare = fleet.time_bare_start(image)
            events.clear()
            with pyhost.py(launcher=launcher, io=None, image=image) as session:
                wall0, started = time.time(), time.perf_counter()
                session.eval("1")
                ended = time.perf_counter()
                recorded = list(events)
                state = client.api.inspect_container(f"pyhost-{session.id}")["State"]
            if index == 0:
                continue  # warm-up
            ms = functools.partial(_since, started)
            table["total (py() eval to answer)"].append(ms(ended))
            table["bare create+start"].append(bare * 1e3)
            per_call: dict[str, int] = defaultdict(int)
            for what, begin, end in recorded:
                per_call[what] += 1
                if what != "connect attempt":
                    table[what].append((end - begin) * 1e3)
                if what.endswith("/start"):
                    start_sent = begin
                if what == "connect":
                    connected = end
                    table["connect starts (from t0)"].append(ms(begin))
                if what == "open_server":
                    welcomed = end
                    table["open_server end (from t0)"].append(ms(end))
                    table["first eval after welcome"].append((ended - end) * 1e3)
            if index == samples:  # the last one's timeline: the gaps are pyhost's own work
                print("timeline of the last open (ms from the eval call):")
                for what, begin, end in sorted(recorded, key=lambda event: event[1]):
                    print(f"  {ms(begin):8.2f} {ms(end):8.2f}  {what}")
            for what, count in per_call.items():
                counts[what].append(count)
            server_start = _epoch(state["StartedAt"]) - wall0 + started
            table["engine StartedAt (from start sent)"].append((server_start - start_sent) * 1e3)
            table["StartedAt to connected"].append((connected - server_start) * 1e3)
            table["StartedAt to welcome"].append((welcomed - server_start) * 1e3)
            table["StartedAt to eval answered"].append((ended - server_start) * 1e3)
    finally:
        fleet.remove_all()
    width = max(len(name) for name in table) + 2
    print(f"{samples} samples, medians (ms); image {image[:19]}")
    for name, values in table.items():
        calls_per_open = counts.get(name)
        calls = f" x{statistics.median(calls_per_open):g}/open" if calls_per_open else ""
        print(f"  {name:<{width}} {statistics.median(values):8.2f}{calls}")
    for name, per_open in counts.items():
        if name not in table:
            print(f"  {name:<{width}} x{statistics.median(per_open):g}/open "
                  f"(min {min(per_open)}, max {max(per_open)})")
    return 0


def _default_image(client: Any) -> str:
    from pyhost.launchers.docker.image import resolve_image
    return resolve_image(client)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
