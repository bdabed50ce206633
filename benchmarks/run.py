"""pyhost benchmarks: ``python benchmarks/run.py [--quick] [--only NAME ...]``.

Prints the machine, then one table row per measurement: samples, best/median/p95, the target,
a baseline measured in the same run and the verdict. It is a report: a missed target is a
``MISS`` in the table, never a failed assertion, and the exit status is 0 whenever the runner
itself worked.

To add a row, write one function that takes the :class:`Bench` and returns a list of
:class:`~benchmarks.report.Result`, and decorate it with ``@row("name")``. Raise
:class:`~benchmarks.report.Unavailable` when a feature it needs is missing; the row then
shows ``n/a`` with the reason and the run goes on.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyhost  # noqa: E402
from benchmarks.containers import EchoServer, Fleet, LabellingClient, echo_once  # noqa: E402
from benchmarks.report import (  # noqa: E402
    Baseline,
    Result,
    Target,
    Unavailable,
    format_table,
)
from pyhost.launchers.docker.client import docker_client
from pyhost.launchers.docker.launcher import DockerLauncher  # noqa: E402

RESULTS_FILE = Path(__file__).resolve().parent / "results.json"
MB = 1e6  # decimal megabytes, for MB and MB/s alike
perf_counter = time.perf_counter


# -- the registry of rows ---------------------------------------------------------------------

RowFunction = Callable[["Bench"], "list[Result]"]


@dataclass(frozen=True)
class Row:
    name: str
    issue: str
    function: RowFunction


ROWS: dict[str, Row] = {}


def row(name: str, issue: str = "") -> Callable[[RowFunction], RowFunction]:
    """Register a row function under ``name`` (its results are printed in registry order)."""

    def register(function: RowFunction) -> RowFunction:
        ROWS[name] = Row(name, issue, function)
        return function

    return register


class Bench:
    """What rows share: the engine, labelled containers, a lazily started echo server, and
    the results of earlier rows (a later row may use one as its baseline)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.client = docker_client()
        self.run_id = secrets.token_hex(6)
        self.fleet = Fleet(self.client, self.run_id)
        # Session containers get the bench labels too, through the launcher's client.
        labelling = LabellingClient(self.client, self.fleet.labels)
        self.launcher = DockerLauncher(client=labelling)
        # The image is held by id: a rebuild that moves the tag during the run (tests do that)
        # must not mix two servers in one report.
        self.image_tag = _session_image(self.client)
        self.image = str(self.client.api.inspect_image(self.image_tag)["Id"])
        self.results: dict[str, Result] = {}
        self._echo: EchoServer | None = None

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def session(self, **options: Any) -> pyhost.Session:
        """A session as ``py()`` makes it, on the labelling launcher and without an io mount
        (the runner must not write into the working directory)."""
        return pyhost.py(**self.session_options, **options)

    @property
    def session_options(self) -> dict[str, Any]:
        """What every session of the run is opened with (a warm pool must match them)."""
        return {"launcher": self.launcher, "io": None, "image": self.image}

    @property
    def echo(self) -> EchoServer:
        if self._echo is None:
            self._echo = EchoServer(self.fleet, self.image)
        return self._echo

    def close(self) -> int:
        if self._echo is not None:
            self._echo.close()
            self._echo = None
        return self.fleet.remove_all()


def _session_image(client: Any) -> str:
    try:
        from pyhost.launchers.docker.image import resolve_image
    except ImportError:
        return "hxpy:latest"
    return resolve_image(client)


# -- rows --------------------------------------------------------------------------------------

@row("cold_open", issue="2")
def cold_open(bench: Bench) -> list[Result]:
    """``py()`` to the first eval answered; container removal is not counted.

    Baseline, interleaved with it: create + start of a bare container of the same image.
    """
    warmup, n = 1, bench.n(20, 12)
    opens, bares = [], []
    for index in range(warmup + n):
        bare = bench.fleet.time_bare_start(bench.image)
        with bench.session() as session:
            started = perf_counter()
            session.eval("1")
            elapsed = perf_counter() - started
        if index >= warmup:
            opens.append(elapsed * 1e3)
            bares.append(bare * 1e3)
    return [Result("cold_open", "ms", opens, target=Target(1.5, relative=True),
                   baseline=Baseline("bare create+start of the image (sleep infinity, "
                                     "network none); ms", tuple(bares)))]


@row("warm_roundtrip", issue="2")
def warm_roundtrip(bench: Bench) -> list[Result]:
    """``define("x", i).eval("x")`` on an open session against two 16-byte echoes into a
    container of the same image; blocks of the three alternate.

    The target's baseline is the polling echo: both ends frame with ``hxpy.wire`` and poll
    for up to the session's ``spin`` before sleeping, as a session's two ends do, so it is
    the same transport with no work in between. The blocking echo (plain blocking reads, no
    polling) follows each row as a comparison: a session that polls can beat it, so it cannot
    be the bar.

    Where the scheduler puts the ends matters a lot on a small VM (a wake-up on the other
    CPU costs about three times a same-CPU one). So after the unpinned rows, everything is
    measured again with the host process and both containers pinned: all on one CPU, and the
    host on another CPU than the servers. Last, a session with ``spin=0`` against the
    blocking echo: neither end polls.
    """
    warmup, n = 500, bench.n(5000, 5000)
    payload = b"0123456789abcdef"
    results = []
    with contextlib.ExitStack() as stack:
        polling = bench.echo.connect_polling(pyhost.SessionOptions().spin)
        stack.callback(polling.close)
        sock = bench.echo.connect(len(payload))
        stack.callback(sock.close)
        into = memoryview(bytearray(len(payload)))
        echoes = {"polling": functools.partial(polling.roundtrip, payload),
                  "blocking": functools.partial(echo_once, sock, payload, into)}
        with bench.session() as session:
            session.eval("1")
            _roundtrips(session, echoes, warmup)
            results += _roundtrip_rows("warm_roundtrip", "unpinned",
                                       *_roundtrips(session, echoes, n))
            for placement, (host_cpu, server_cpu) in _placements().items():
                name = f"warm_roundtrip[{placement}]"
                containers = [session.container_id, bench.echo.container_id]
                with _pinned(bench, host_cpu, server_cpu, containers) as problem:
                    if problem:
                        results.append(Result(name, "us", unavailable=f"cannot pin: {problem}"))
                        continue
                    # Measured here: after pinning, both run about 30% slower for the first
                    # thousand or two round trips; all settle before the timed ones.
                    _roundtrips(session, echoes, 4000)
                    timed = _roundtrips(session, echoes, n // 2)
                results += _roundtrip_rows(
                    name, placement, *timed,
                    note=f"pinned: host on CPU {host_cpu}, containers on CPU {server_cpu}")
        # Without polling (spin=0) both ends sleep in recv as the blocking echo does.
        blocking = {"blocking": echoes["blocking"]}
        with bench.session(spin=0) as session:
            session.eval("1")
            _roundtrips(session, blocking, warmup)
            evals, times = _roundtrips(session, blocking, n)
            results.append(Result(
                "warm_roundtrip[no_spin]", "us", evals,
                baseline=Baseline("the blocking echo (no polling on either end), unpinned; us",
                                  tuple(times["blocking"])),
                note="spin=0: neither end polls before sleeping; comparison only"))
    return results


def _roundtrip_rows(name: str, placement: str, evals: list[float],
                    times: dict[str, list[float]], note: str = "") -> list[Result]:
    """The row judged against the polling echo, and the same evals against the blocking one."""
    vs_blocking = f"{name[:-1]},vs_blocking]" if name.endswith("]") else f"{name}[vs_blocking]"
    return [
        Result(name, "us", evals, target=Target(2.0, relative=True), note=note,
               baseline=Baseline(f"polling echo ({placement}): 16 bytes in hxpy.wire frames, "
                                 f"both ends polling as a session's do; us",
                                 tuple(times["polling"]))),
        Result(vs_blocking, "us", evals, note=note,
               baseline=Baseline(f"blocking echo ({placement}): 16 bytes, blocking reads, no "
                                 f"polling; comparison only, the evals are those of {name}; us",
                                 tuple(times["blocking"]))),
    ]


@row("eval_cpu", issue="2")
def eval_cpu(bench: Bench) -> list[Result]:
    """CPU per warm ``define("x", i).eval("x")``: this process plus the session's container
    (the engine's accounting), with the default spin and, as the baseline, with spin=0."""
    blocks, per_block = bench.n(8, 5), bench.n(4000, 2000)
    spinning = _cpu_per_eval(bench, blocks, per_block)
    sleeping = _cpu_per_eval(bench, blocks, per_block, spin=0)
    return [Result("eval_cpu", "us", spinning,
                   baseline=Baseline("the same with spin=0; CPU us per eval", tuple(sleeping)),
                   note="host process + session container CPU per eval; comparison only")]


def _cpu_per_eval(bench: Bench, blocks: int, per_block: int, **options: Any) -> list[float]:
    """CPU microseconds per eval, one sample per block of ``per_block`` evals."""
    samples = []
    with bench.session(**options) as session:
        session.eval("1")
        container_id = session.container_id
        for _ in range(blocks):
            host, server = time.process_time(), _container_cpu(bench, container_id)
            for index in range(per_block):
                session.define("x", index).eval("x")
            used = (time.process_time() - host) + (_container_cpu(bench, container_id) - server)
            samples.append(used / per_block * 1e6)
    return samples


def _container_cpu(bench: Bench, container_id: str | None) -> float:
    """CPU seconds the container has used, from the engine's one-shot stats."""
    if container_id is None:
        raise Unavailable("the session has no container")
    stats = bench.client.api.stats(container_id, stream=False, one_shot=True)
    usage = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
    if usage is None:
        raise Unavailable("the engine reports no CPU usage for containers")
    return float(usage) / 1e9


def _roundtrips(session: pyhost.Session, echoes: Mapping[str, Callable[[], None]], n: int,
                block: int = 500) -> tuple[list[float], dict[str, list[float]]]:
    """``n`` timed evals and ``n`` timed round trips of each echo (us), in alternating
    blocks."""
    evals: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in echoes}
    while len(evals) < n:
        for index in range(min(block, n - len(evals))):
            started = perf_counter()
            value = session.define("x", index).eval("x")
            evals.append((perf_counter() - started) * 1e6)
            if value != index:
                raise AssertionError(f"eval returned {value!r}, not {index}")
        for name, echo in echoes.items():
            samples = times[name]
            while len(samples) < len(evals):
                started = perf_counter()
                echo()
                samples.append((perf_counter() - started) * 1e6)
    return evals, times


def _placements() -> dict[str, tuple[int, int]]:
    """CPU pairs (host, containers) to pin to: none on a one-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return {}
    return {"same_cpu": (cpus[0], cpus[0]), "cross_cpu": (cpus[0], cpus[1])}


@contextlib.contextmanager
def _pinned(bench: Bench, host_cpu: int, server_cpu: int,
            containers: list[str | None]) -> Iterator[str]:
    """Pin this process to ``host_cpu`` and ``containers`` (through the engine's cpuset) to
    ``server_cpu``; yield "" or why pinning failed; undo both afterwards."""
    api = bench.client.api
    before = os.sched_getaffinity(0)
    everything = ",".join(str(cpu) for cpu in sorted(before))
    pinned: list[str] = []
    try:
        try:
            for container_id in containers:
                if container_id is None:
                    raise ValueError("a container is not running")
                api.update_container(container_id, cpuset_cpus=str(server_cpu))
                pinned.append(container_id)
            os.sched_setaffinity(0, {host_cpu})
        except Exception as exc:  # e.g. a remote engine with other CPUs
            yield f"{type(exc).__name__}: {exc}"
            return
        yield ""
    finally:
        os.sched_setaffinity(0, before)
        for container_id in pinned:
            try:
                api.update_container(container_id, cpuset_cpus=everything)
            except Exception:  # removed meanwhile: nothing to undo
                pass


@row("docker_exec", issue="2")
def docker_exec(bench: Bench) -> list[Result]:
    """``docker exec <c> python3 -c "print(1)"`` through the SDK, for comparison; the baseline
    is the warm round trip of this run, so the ratio is how much slower exec is."""
    warmup, n = 2, bench.n(20, 10)
    api = bench.client.api
    container_id = bench.echo.container_id
    samples = []
    for index in range(warmup + n):
        started = perf_counter()
        exec_id = api.exec_create(container_id, ["python3", "-c", "print(1)"])["Id"]
        output = api.exec_start(exec_id)
        elapsed = perf_counter() - started
        if output.strip() != b"1":
            raise AssertionError(f"docker exec printed {output!r}")
        if index >= warmup:
            samples.append(elapsed * 1e3)
    warm = bench.results.get("warm_roundtrip")
    baseline = None
    if warm is not None and warm.samples:
        baseline = Baseline("pyhost warm round trip of this run, in ms",
                            tuple(value / 1e3 for value in warm.samples))
    return [Result("docker_exec", "ms", samples, baseline=baseline,
                   note="comparison only: what one exec per eval would cost")]


@row("ndarray_roundtrip", issue="3")
def ndarray_roundtrip(bench: Bench) -> list[Result]:
    """``define("m", arr).eval("m")`` of a 1000x1000 float64 array: 8 MB each way."""
    import numpy as np

    from hxpy import codec

    try:
        codec.encode(np.zeros((2, 2)))
    except codec.MarshalError as exc:
        raise Unavailable(f"ndarray codec not available: {exc}") from None
    warmup, n = 2, bench.n(20, 8)
    array = np.random.default_rng(0).random((1000, 1000))
    moved = 2 * array.nbytes / MB
    rates = []
    with bench.session() as session:
        try:
            back = session.define("m", np.zeros((2, 2))).eval("m")  # numpy loads in the server
        except (pyhost.MarshalError, pyhost.ProtocolError, pyhost.PythonError) as exc:
            raise Unavailable(f"the session server cannot round-trip an ndarray (stale image? "
                              f"`pyhost image build`): {exc}") from None
        for index in range(warmup + n):
            started = perf_counter()
            back = session.define("m", array).eval("m")
            elapsed = perf_counter() - started
            if index == 0 and not (isinstance(back, np.ndarray) and np.array_equal(back, array)):
                raise AssertionError(f"the array came back as {type(back).__name__}, changed")
            if index >= warmup:
                rates.append(moved / elapsed)
    block = array.tobytes()
    into = memoryview(bytearray(len(block)))
    floor = []
    sock = bench.echo.connect(len(block))
    try:
        for index in range(warmup + n):
            started = perf_counter()
            echo_once(sock, block, into)
            elapsed = perf_counter() - started
            if index >= warmup:
                floor.append(2 * len(block) / MB / elapsed)
    finally:
        sock.close()
    return [Result("ndarray_roundtrip", "MB/s", rates, higher_is_better=True,
                   target=Target(2000, higher_is_better=True),
                   baseline=Baseline("raw 8 MB echo each way over the Unix socket (floor); MB/s",
                                     tuple(floor)),
                   note="MB/s = 2 x 8 MB / (define + eval) time")]


@row("grid_table", issue="3")
def grid_table(bench: Bench) -> list[Result]:
    """1,000,000 rows x 5 columns: DataFrame -> Grid -> session -> Grid -> DataFrame."""
    try:
        from hxpy import haystack
    except ImportError as exc:
        raise Unavailable(f"hxpy.haystack not available: {exc}") from None
    grid_type = getattr(haystack, "Grid", None)
    if grid_type is None or not hasattr(grid_type, "from_dataframe"):
        raise Unavailable("hxpy.haystack.Grid.from_dataframe not available")
    from hxpy import codec

    rows = 1_000_000
    frame = _table(rows)
    try:
        small = grid_type.from_dataframe(frame.head(1000))
        codec.encode(small)
    except codec.MarshalError as exc:
        raise Unavailable(f"the codec cannot encode a Grid: {exc}") from None
    warmup, n = 0, bench.n(3, 2)
    seconds, host_only = [], []
    with bench.session() as session:
        try:  # pandas loads in the server on first use: not part of the figure
            session.define("grid", small).eval("grid.to_dataframe()")
        except (pyhost.MarshalError, pyhost.ProtocolError, pyhost.PythonError) as exc:
            raise Unavailable(f"the session server cannot round-trip a Grid (stale image? "
                              f"`pyhost image build`): {exc}") from None
        for index in range(warmup + n):
            started = perf_counter()
            grid = grid_type.from_dataframe(frame)
            back = session.define("grid", grid).eval("grid.to_dataframe()")
            result = back.to_dataframe()
            elapsed = perf_counter() - started
            if len(result) != rows or list(result.columns) != list(frame.columns):
                raise AssertionError(f"the table came back as {result.shape}")
            del grid, back, result
            if index >= warmup:
                seconds.append(elapsed)
    for _ in range(n):  # the host's own share: convert and encode, decode and convert back
        started = perf_counter()
        encoded = codec.encode(grid_type.from_dataframe(frame))
        codec.decode(encoded).to_dataframe()
        host_only.append(perf_counter() - started)
        del encoded
    return [Result("grid_table", "s", seconds, target=Target(2.0),
                   baseline=Baseline("host only, no session: from_dataframe + encode + decode "
                                     "+ to_dataframe; s", tuple(host_only)),
                   note=f"{rows:,} rows: " + ", ".join(f"{name} {dtype}" for name, dtype
                                                      in frame.dtypes.items())
                        + " (every name distinct)")]


def _table(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "value": rng.random(rows),
        "count": np.arange(rows, dtype=np.int64),
        "flag": rng.random(rows) < 0.5,
        "ts": pd.date_range("2024-01-01", periods=rows, freq="min", tz="America/New_York"),
        # As hard as a real text column: every value distinct, of varying length, in no
        # order (a repetitive column would favour anything that shares or dictionary-codes).
        "name": [f"{token:x}-{index}" for index, token in
                 enumerate(rng.integers(0, 2**48, rows).tolist())],
    })


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
        Result("pool_open", "ms", samples, target=Target(10.0),
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
    """Total evals/s with 1, 2, 4, 8, 16 sessions, one thread each; opening is not timed."""
    per_thread, rounds = bench.n(4000, 2000), bench.n(5, 3)
    results = []
    single: Baseline | None = None
    for parallel in (1, 2, 4, 8, 16):
        rates = _evals_per_second(bench, parallel, per_thread, rounds)
        results.append(Result(
            f"parallel_evals[{parallel}]", "evals/s", rates, higher_is_better=True,
            baseline=single,
            note="" if single is None else "ratio = scaling over one session"))
        if single is None:
            single = Baseline("one session, one thread; evals/s", tuple(rates))
    return results


def _evals_per_second(bench: Bench, parallel: int, per_thread: int, rounds: int) -> list[float]:
    with concurrent.futures.ThreadPoolExecutor(parallel) as executor:
        sessions = list(executor.map(lambda _: _open(bench), range(parallel)))
        try:
            rates = []
            for _ in range(rounds):
                barrier = threading.Barrier(parallel + 1)

                def work(session: pyhost.Session, barrier: threading.Barrier = barrier) -> None:
                    barrier.wait()
                    for index in range(per_thread):
                        session.define("x", index).eval("x")

                futures = [executor.submit(work, session) for session in sessions]
                barrier.wait()
                started = perf_counter()
                for future in futures:
                    future.result()
                rates.append(parallel * per_thread / (perf_counter() - started))
            return rates
        finally:
            list(executor.map(lambda session: session.close(), sessions))


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
        Result("idle_rss", "MB", rss["VmRSS"], target=Target(40.0),
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


# -- the run -----------------------------------------------------------------------------------

def machine_facts(bench: Bench | None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyhost": getattr(pyhost, "__version__", "?"),
        "git": _git_revision(),
        # Other work on the machine moves every number here: look at this first.
        "load_average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }
    if bench is not None:
        version = bench.client.version()
        info = bench.client.info()
        facts["docker"] = (f"{version.get('Version')} (API {version.get('ApiVersion')}, "
                           f"{info.get('Driver')}, cgroup v{info.get('CgroupVersion', '?')}, "
                           f"{info.get('NCPU')} CPUs)")
        facts["image"] = f"{bench.image_tag} = {_image_state(bench)}"
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + (" + uncommitted changes" if dirty.strip() else "")


def _image_state(bench: Bench) -> str:
    text = bench.image[7:19]
    try:
        from pyhost.launchers.docker.image import image_status

        status = image_status(bench.image_tag, bench.client)
    except Exception:  # best effort: the image module is optional here
        return text
    current = getattr(status, "up_to_date", None)
    return text + {True: ", built from the current sources",
                   False: ", STALE: built from older sources (`pyhost image build`)",
                   None: ""}[current]


def run(names: list[str], quick: bool) -> tuple[dict[str, Any], list[Result]]:
    bench = Bench(quick)
    facts = machine_facts(bench)
    print(_facts_text(facts), flush=True)
    busy = os.getloadavg()[0]
    if busy > (os.cpu_count() or 1) * 0.5:
        print(f"warning: the machine is busy (load {busy:.1f} on {os.cpu_count()} cores); "
              "expect noisy numbers\n", flush=True)
    results: list[Result] = []
    try:
        for name in names:
            entry = ROWS[name]
            issue = f" (issue {entry.issue})" if entry.issue else ""
            print(f"[{time.strftime('%H:%M:%S')}] {name}{issue} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                produced = entry.function(bench)
            except Unavailable as exc:
                produced = [Result(name, "", unavailable=str(exc))]
            except Exception as exc:  # a broken row must not cost the others
                traceback.print_exc()
                produced = [Result(name, "", unavailable=f"error: {type(exc).__name__}: {exc}")]
            for result in produced:
                bench.results[result.name] = result
            results.extend(produced)
            print(f"[{time.strftime('%H:%M:%S')}] {name} took {time.monotonic() - started:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        leftovers = bench.close()
        if leftovers:
            print(f"removed {leftovers} leftover bench container(s)", file=sys.stderr)
    return facts, results


def _facts_text(facts: dict[str, Any]) -> str:
    width = max(len(key) for key in facts)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in facts.items()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples (the whole run in about three minutes)")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help=f"run only this row (repeatable, or comma separated): "
                             f"{', '.join(ROWS)}")
    parser.add_argument("--build", action="store_true",
                        help="first bring the session image up to date with the sources "
                             "(`pyhost image build`; a no-op when current)")
    parser.add_argument("--json", metavar="PATH", default=str(RESULTS_FILE),
                        help="where to write the results as JSON ('' for nowhere)")
    args = parser.parse_args(argv)
    names = [name for value in args.only for name in value.split(",") if name] or list(ROWS)
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}")
    started = time.monotonic()
    if args.build:
        from pyhost.launchers.docker.image import build_image

        print(f"session image: {build_image()}", file=sys.stderr, flush=True)
    facts, results = run(names, args.quick)
    print(format_table(results))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s; "
          f"load average at the end {load}")
    if args.json:
        data = {"facts": facts, "quick": args.quick,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "results": [result.to_json() for result in results]}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
