"""Rows about many sessions: warm pools, parallel evals, idle memory."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Callable

import pyhost
from benchmarks.bench import MB, Bench, perf_counter, row
from benchmarks.containers import MinimalEval
from benchmarks.report import Baseline, Result, Target, Unavailable


@row("pool_open", issue="4")
def pool_open(bench: Bench) -> list[Result]:
    """With ``pyhost.warm_pool(4)``: ``py()`` + first eval, the pool full before each; then
    the pool drained faster than it refills: 12 sessions opened back to back and held."""
    if not hasattr(pyhost, "warm_pool"):
        raise Unavailable("pyhost.warm_pool does not exist")
    size, drained_opens = 4, 12
    warmup, n, rounds = 1, bench.n(20, 10), bench.n(5, 2)
    pool = pyhost.warm_pool(size, **bench.session_options)
    samples, rates = [], []
    try:
        for index in range(warmup + n):
            _wait_pool_full(pool)
            started = perf_counter()
            with bench.session() as session:
                session.eval("1")
                elapsed = perf_counter() - started
            if index >= warmup:
                samples.append(elapsed * 1e3)
        for _ in range(rounds):
            _wait_pool_full(pool)
            rates.append(drained_opens / _open_back_to_back(bench, drained_opens))
    finally:
        pool.close()
    cold = bench.results.get("cold_open")
    cold_ms = cold.samples if cold is not None else []
    return [
        Result("pool_open", "ms", samples, target=Target(0.5),  # issue 23
               baseline=Baseline("cold open of this run (no pool); ms",
                                 tuple(cold_ms)) if cold_ms else None),
        Result("pool_open[drained]", "opens/s", rates, higher_is_better=True,
               baseline=Baseline("cold opens of this run as a rate, 1000 / ms; opens/s",
                                 tuple(1e3 / ms for ms in cold_ms)) if cold_ms else None,
               note=f"{drained_opens} sessions opened back to back (py() + first eval) and "
                    f"held, from a full pool of {size} refilling meanwhile; a sample per round; "
                    f"comparison only"),
    ]


def _open_back_to_back(bench: Bench, count: int) -> float:
    """Seconds to open ``count`` sessions one after the other, each to its first eval,
    holding them all; they are closed afterwards, untimed."""
    sessions: list[pyhost.Session] = []
    try:
        started = perf_counter()
        for _ in range(count):
            sessions.append(_open(bench))
        return perf_counter() - started
    finally:
        for session in sessions:
            session.close()


def _wait_pool_full(pool: Any, timeout: float = 60.0) -> None:
    wait_ready = getattr(pool, "wait_ready", None)
    if wait_ready is None:
        time.sleep(1.0)
    elif not wait_ready(timeout):
        raise TimeoutError(f"the warm pool did not fill within {timeout} s")


@row("parallel_evals", issue="4")
def parallel_evals(bench: Bench) -> list[Result]:
    """Total evals/s with 1, 2, 4, 8, 16 sessions, one thread each; opening is not timed.

    Then the same with the least a Python session can do (``MinimalEval``: a process per
    connection, as sessions have) for comparison: how far k of those scale on this machine.
    """
    per_thread, rounds = bench.n(4000, 2000), bench.n(5, 3)
    results = []
    for name, measure in (("parallel_evals", _evals_per_second),
                          ("parallel_floor", _floor_evals_per_second)):
        single: Baseline | None = None
        for parallel in (1, 2, 4, 8, 16):
            rates = measure(bench, parallel, per_thread, rounds)
            floor = name == "parallel_floor"
            results.append(Result(
                f"{name}[{parallel}]", "evals/s", rates, higher_is_better=True,
                baseline=single, target=None if single is None or floor else _SCALING,
                note=_FLOOR_NOTE if floor else
                "" if single is None else "ratio = scaling over one session"))
            if single is None:
                single = Baseline(f"{'the floor' if floor else 'one session'}, one thread; "
                                  "evals/s", tuple(rates))
    return results


_FLOOR_NOTE = ("the least a Python session can do (benchmarks.containers.MinimalEval, a "
               "server process per connection), k threads; comparison only")


# Issue 23: many sessions at once get at least 1.2 times as much done as one.
_SCALING = Target(1.2, relative=True, higher_is_better=True)


def _evals_per_second(bench: Bench, parallel: int, per_thread: int, rounds: int) -> list[float]:
    with concurrent.futures.ThreadPoolExecutor(parallel) as executor:
        sessions = list(executor.map(lambda _: _open(bench), range(parallel)))
        try:
            return _rates(executor, sessions, _define_eval, per_thread, rounds)
        finally:
            list(executor.map(lambda session: session.close(), sessions))


def _floor_evals_per_second(bench: Bench, parallel: int, per_thread: int,
                            rounds: int) -> list[float]:
    floors = [bench.echo.connect_minimal_eval(pyhost.SessionOptions().spin)
              for _ in range(parallel)]
    try:
        with concurrent.futures.ThreadPoolExecutor(parallel) as executor:
            return _rates(executor, floors, MinimalEval.eval_define, per_thread, rounds)
    finally:
        for floor in floors:
            floor.close()


def _define_eval(session: pyhost.Session, index: int) -> None:
    session.define("x", index).eval("x")


def _rates(executor: concurrent.futures.Executor, targets: list[Any],
           step: Callable[[Any, int], Any], per_thread: int, rounds: int) -> list[float]:
    """Steps per second, all targets at once (a thread each), one sample per round."""
    rates = []
    for _ in range(rounds):
        barrier = threading.Barrier(len(targets) + 1)

        def work(target: Any, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for index in range(per_thread):
                step(target, index)

        futures = [executor.submit(work, target) for target in targets]
        barrier.wait()
        started = perf_counter()
        for future in futures:
            future.result()
        rates.append(len(targets) * per_thread / (perf_counter() - started))
    return rates


def _open(bench: Bench) -> pyhost.Session:
    session = bench.session()
    session.__enter__()  # keep it open across evals, as `with` would
    try:
        session.eval("1")
    except BaseException:
        session.close()
        raise
    return session


@row("idle_memory", issue="4")
def idle_memory(bench: Bench) -> list[Result]:
    """Memory of an idle session server, from its ``/proc/self/status`` read through eval:
    VmRSS (the target) and RssAnon, the part no other session shares (file pages of the
    image are shared between containers); first as started, then after user code imported
    numpy and pandas. Baseline: a bare ``python3`` in the image, without and with them."""
    n = bench.n(3, 2)
    imports = "import numpy, pandas"
    rss: dict[str, list[float]] = {"VmRSS": [], "RssAnon": []}
    rss_imported: dict[str, list[float]] = {"VmRSS": [], "RssAnon": []}
    preloaded = False
    for _ in range(n):
        with bench.session() as session:
            session.eval("1")
            preloaded |= bool(session.eval("'numpy' in __import__('sys').modules"))
            _append(rss, _session_status(session))
            session.exec(imports)
            _append(rss_imported, _session_status(session))
    bare: dict[str, list[float]] = {"VmRSS": [], "RssAnon": []}
    bare_imported: dict[str, list[float]] = {"VmRSS": [], "RssAnon": []}
    for _ in range(n):
        _append(bare, _bare_status(bench, ""))
        _append(bare_imported, _bare_status(bench, imports))
    before = ("the server had already imported numpy before any user code: "
              if preloaded else "")
    with_imports = f"after `{imports}` in the session"
    return [
        Result("idle_rss", "MB", rss["VmRSS"], target=Target(15.0),  # issue 23
               baseline=Baseline("a bare `python3` (signal.pause()) in the image; MB",
                                 tuple(bare["VmRSS"])),
               note=before + "VmRSS of the idle server process after one eval"),
        Result("idle_rss_anon", "MB", rss["RssAnon"],
               baseline=Baseline("a bare `python3` (signal.pause()) in the image; MB",
                                 tuple(bare["RssAnon"])),
               note="RssAnon: what each more session costs (file pages are shared)"),
        Result("idle_rss[numpy+pandas]", "MB", rss_imported["VmRSS"],
               baseline=Baseline(f"a bare `python3` that ran `{imports}`; MB",
                                 tuple(bare_imported["VmRSS"])),
               note=f"VmRSS {with_imports}; comparison only"),
        Result("idle_rss_anon[numpy+pandas]", "MB", rss_imported["RssAnon"],
               baseline=Baseline(f"a bare `python3` that ran `{imports}`; MB",
                                 tuple(bare_imported["RssAnon"])),
               note=f"RssAnon {with_imports}; comparison only"),
    ]


def _append(into: dict[str, list[float]], status: dict[str, float]) -> None:
    for name, values in into.items():
        values.append(status[name])


def _session_status(session: pyhost.Session) -> dict[str, float]:
    """The status of the session's server, idle for a moment."""
    time.sleep(0.3)
    return _status_fields(session.eval("open('/proc/self/status').read()"))


def _bare_status(bench: Bench, imports: str) -> dict[str, float]:
    """The status of a bare ``python3`` in the image that ran ``imports`` and waits."""
    api = bench.client.api
    script = "\n".join([imports, "import signal", "print('ready', flush=True)",
                        "signal.pause()"])
    container_id = bench.fleet.create(
        bench.image, entrypoint=["python3", "-c", script],
        host_config=api.create_host_config(network_mode="none"))
    try:
        api.start(container_id)
        deadline = time.monotonic() + 60
        while b"ready" not in api.logs(container_id, stdout=True, stderr=False):
            if time.monotonic() > deadline:
                raise TimeoutError("the bare python3 did not get ready within 60 s")
            time.sleep(0.05)
        time.sleep(0.3)
        exec_id = api.exec_create(container_id, ["cat", "/proc/1/status"])["Id"]
        return _status_fields(api.exec_start(exec_id).decode())
    finally:
        bench.fleet.remove(container_id)


def _status_fields(status: str) -> dict[str, float]:
    """The ``kB`` fields of ``/proc/<pid>/status``, in MB."""
    fields = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024 / MB
    return fields
