"""Rows about the Swarm launcher: a cold session, a job end to end, and jobs in flight, each
against the same thing on the plain engine in the same run.

The engine must be a swarm manager; when it is not, it is made a single-node one for the
rows (``swarm_up``) and leaves the swarm again afterwards. Swarm tasks run the bench's image
by tag (a service names its image; the plain-engine baselines use the same image).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

import pyhost
from benchmarks.bench import Bench, perf_counter, row
from benchmarks.report import Baseline, Result, Target, Unavailable
from benchmarks.rows_runtime import _catalog, _completed

HANDLER = "def f(x):\n    return x + 1\n"
IN_FLIGHT = 8


@contextlib.contextmanager
def _swarm(bench: Bench) -> Iterator[Any]:
    """A Swarm launcher on the bench's engine, a manager for the block. It remembers how
    long each ``start`` took (``.starts``: the service created until its task runs and its
    port is known), so a cold open can be split into scheduling and the rest."""
    try:
        from pyhost.launchers.docker.swarm.cluster import swarm_leave, swarm_up
        from pyhost.launchers.docker.swarm.launcher import SwarmLauncher
    except ImportError as exc:
        raise Unavailable(f"no swarm launcher: {exc}") from None

    class Timed(SwarmLauncher):
        def __init__(self, client: Any) -> None:
            super().__init__(client=client)
            self.starts: list[float] = []

        def start(self, spec: Any) -> Any:
            started = perf_counter()
            try:
                return super().start(spec)
            finally:
                self.starts.append(perf_counter() - started)

    state, made = swarm_up(bench.client)
    if not state.manager:
        raise Unavailable(state.describe())
    try:
        yield Timed(bench.client)
    finally:
        if made:
            swarm_leave(bench.client)


@row("swarm_cold_open", issue="13")
def swarm_cold_open(bench: Bench) -> list[Result]:
    """``py(launcher="swarm")`` to the first eval answered, against ``py()`` on the plain
    engine; interleaved. Split: the launcher's start (service created until its task runs and
    the node's published port is known) and the rest (connect, handshake, the eval)."""
    warmup, n = 1, bench.n(12, 6)
    swarm_ms, plain_ms, start_ms = [], [], []
    with _swarm(bench) as launcher:
        for index in range(warmup + n):
            with bench.session() as session:
                started = perf_counter()
                session.eval("1")
                plain = perf_counter() - started
            with pyhost.py(launcher=launcher, io=None, image=bench.image_tag) as session:
                started = perf_counter()
                session.eval("1")
                elapsed = perf_counter() - started
            if index >= warmup:
                swarm_ms.append(elapsed * 1e3)
                plain_ms.append(plain * 1e3)
                start_ms.append(launcher.starts[-1] * 1e3)
    rest = [total - start for total, start in zip(swarm_ms, start_ms)]
    return [
        Result("swarm_cold_open", "ms", swarm_ms,
               baseline=Baseline("py() on the plain engine + eval('1'); ms", tuple(plain_ms)),
               note="ratio reported, no target: Swarm scheduling adds latency"),
        Result("swarm_cold_open[start]", "ms", start_ms,
               note="SwarmLauncher.start: create the service, the scheduler assigns the "
                    "task, the node creates the container and joins it to the overlay, the "
                    "task's published port read back (polled every 20 ms)"),
        Result("swarm_cold_open[rest]", "ms", rest,
               note="connect to the node's port, handshake, the eval"),
    ]


@row("swarm_job", issue="13")
def swarm_job(bench: Bench) -> list[Result]:
    """``fn.run(launcher="swarm", wait=True)`` of ``f(x) = x + 1`` to COMPLETED, against the
    same job on the plain engine; interleaved."""
    warmup, n = 1, bench.n(12, 6)
    swarm_ms, plain_ms = [], []
    with _swarm(bench) as swarm, _catalog():
        function = _function(bench)
        for index in range(warmup + n):
            started = perf_counter()
            run = function.run(wait=True, launcher=bench.launcher, parameters={"x": index})
            plain = perf_counter() - started
            _completed(run, index + 1)
            started = perf_counter()
            run = function.run(wait=True, launcher=swarm, parameters={"x": index})
            elapsed = perf_counter() - started
            _completed(run, index + 1)
            if index >= warmup:
                swarm_ms.append(elapsed * 1e3)
                plain_ms.append(plain * 1e3)
    return [Result("swarm_job", "ms", swarm_ms,
                   baseline=Baseline("the same job on the plain engine; ms", tuple(plain_ms)),
                   note="end to end: checks, catalog records, the service, the handler, "
                        "the result recorded; ratio reported, no target")]


@row("swarm_jobs_per_s", issue="13")
def swarm_jobs_per_s(bench: Bench) -> list[Result]:
    """Jobs per second with :data:`IN_FLIGHT` in flight on the swarm, against the same on the
    plain engine; rounds of each alternate."""
    rounds, per_round = bench.n(3, 2), 2 * IN_FLIGHT
    swarm_rate, plain_rate = [], []
    with _swarm(bench) as swarm, _catalog():
        function = _function(bench)
        _in_flight(function, bench.launcher, IN_FLIGHT)  # warm-up
        for _ in range(rounds):
            plain_rate.append(_in_flight(function, bench.launcher, per_round))
            swarm_rate.append(_in_flight(function, swarm, per_round))
    return [Result("swarm_jobs_per_s", "jobs/s", swarm_rate, higher_is_better=True,
                   baseline=Baseline("the same on the plain engine; jobs/s",
                                     tuple(plain_rate)),
                   note=f"{per_round} jobs per round, {IN_FLIGHT} in flight (threads "
                        "calling fn.run(wait=True)); ratio reported, no target")]


@row("swarm_jobs_warm", issue="23")
def swarm_jobs_warm(bench: Bench) -> list[Result]:
    """``swarm_jobs_per_s`` with warm tasks: a ``warm_pool`` as large as a round on each
    launcher, full before the round starts, so each job's session is a started, handshaken
    task; rounds of each alternate."""
    from benchmarks.rows_scale import _wait_pool_full

    rounds, per_round = bench.n(3, 2), 2 * IN_FLIGHT
    rates: dict[str, list[float]] = {"swarm": [], "plain": []}
    with _swarm(bench) as swarm, _catalog():
        function = _function(bench)
        options: dict[str, Any] = {"io": None, "image": bench.image_tag}
        launchers = {"swarm": swarm, "plain": bench.launcher}
        pools = {name: pyhost.warm_pool(per_round, launcher=launcher, **options)
                 for name, launcher in launchers.items()}
        try:
            for _ in range(rounds):
                for name, launcher in launchers.items():
                    _wait_pool_full(pools[name], 300)
                    rates[name].append(_in_flight(function, launcher, per_round))
        finally:
            for pool in pools.values():
                pool.close()
    return [Result("swarm_jobs_per_s[warm]", "jobs/s", rates["swarm"], higher_is_better=True,
                   target=Target(0.8, relative=True, higher_is_better=True),
                   baseline=Baseline("the same on the plain engine with its own pool; jobs/s",
                                     tuple(rates["plain"])),
                   note=f"{per_round} jobs per round, {IN_FLIGHT} in flight, from a full pool "
                        f"of {per_round} on each launcher (bursts, not a sustained rate: a "
                        "pool refills at the launcher's start rate)")]


def _function(bench: Bench) -> Any:
    import pyhost.runtime as dh

    project = dh.get_or_create_project("bench")
    return project.new_function(name="increment", kind="python", code=HANDLER, handler="f",
                                image=bench.image_tag)


def _in_flight(function: Any, launcher: Any, count: int) -> float:
    """Run ``count`` jobs, :data:`IN_FLIGHT` at a time; jobs per second."""
    def one(index: int) -> None:
        _completed(function.run(wait=True, launcher=launcher, parameters={"x": index}),
                   index + 1)

    started = perf_counter()
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(one, range(count)))
    return count / (perf_counter() - started)



@row("swarm_warm", issue="23")
def swarm_warm(bench: Bench) -> list[Result]:
    """Warm pools on the swarm: ``py(launcher="swarm")`` + first eval taken from
    ``warm_pool(2, launcher="swarm")`` (``swarm_open[warm]``), and a job whose session comes
    from such a pool (``swarm_job[warm]``); each against the same on the plain engine, the
    pools full before each sample; interleaved."""
    from benchmarks.rows_scale import _wait_pool_full

    warmup, n = 1, bench.n(12, 6)
    opens: dict[str, list[float]] = {"swarm": [], "plain": []}
    jobs: dict[str, list[float]] = {"swarm": [], "plain": []}
    taken = 0
    with _swarm(bench) as swarm, _catalog():
        function = _function(bench)
        options: dict[str, Any] = {"io": None, "image": bench.image_tag}
        pools = {"swarm": pyhost.warm_pool(2, launcher=swarm, **options),
                 "plain": pyhost.warm_pool(2, launcher=bench.launcher, **options)}
        launchers = {"swarm": swarm, "plain": bench.launcher}
        try:
            for index in range(warmup + n):
                for name, pool in pools.items():
                    _wait_pool_full(pool, 120)
                    started = perf_counter()
                    with pyhost.py(launcher=launchers[name], **options) as session:
                        session.eval("1")
                        opened = perf_counter() - started
                    _wait_pool_full(pool, 120)
                    started = perf_counter()
                    run = function.run(wait=True, launcher=launchers[name],
                                       parameters={"x": index})
                    elapsed = perf_counter() - started
                    from_pool = pool.ready < 2
                    _completed(run, index + 1)
                    if index >= warmup:
                        opens[name].append(opened * 1e3)
                        jobs[name].append(elapsed * 1e3)
                        taken += from_pool and name == "swarm"
        finally:
            for pool in pools.values():
                pool.close()
    return [
        Result("swarm_open[warm]", "ms", opens["swarm"], target=Target(2.0, relative=True),
               baseline=Baseline("the same from a plain-engine pool (pool_open); ms",
                                 tuple(opens["plain"]))),
        Result("swarm_job[warm]", "ms", jobs["swarm"], target=Target(2.0, relative=True),
               baseline=Baseline("the same job from a plain-engine pool (job_warm); ms",
                                 tuple(jobs["plain"])),
               note=f"{taken} of {n} swarm jobs seen taking a pooled task"),
    ]
