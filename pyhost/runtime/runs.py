"""Runs: the record of one execution of a function, and its lifecycle.

States move CREATED -> READY -> RUNNING -> COMPLETED | ERROR | STOPPED, each move a
compare-and-set on the catalog record (two processes never both move a run) with its time
in ``status.timings``; a run whose work starts the moment it is recorded (a local job) is
written RUNNING in the insert that creates it (:func:`create_run`). A run executing in
this process signals its end through an event, so :meth:`Run.wait` returns the moment it
ends; a run of another process is re-read from the catalog with a short back-off. A run
whose owner process died is settled as ERROR by the next process that opens the catalog
(:func:`settle_orphaned_runs`) or by ``pyhost gc``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, overload

from hxpy.runtime.handler import DEFAULT_OUTPUT

from ..errors import CatalogUnavailable, ConfigurationError, NotInCatalog
from ..launchers.ownership import SUPERVISOR_LABEL, Owner, owner_alive
from .catalog import CatalogBusy, Record, StaleState
from .entities import Entity, EntityKey, entity_class, iso_time, new_id, parse_key
from .executions import execution_here
from .limits import DEFAULT_LOG_CAP, env_seconds, parse_size
from .run_ends import FALLBACK, EndWatch, tell_ended
from .run_log import LOG_FILE, LogFollower, RunLog, read_log
from .values import from_json

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["ACTIVE", "DEFAULT_STOP_GRACE", "END_PATIENCE", "FINAL", "SDK_DEFAULT_OUTPUT",
           "Run", "RunStatus", "create_run", "log_key", "record_end", "run_log",
           "settle_orphaned_runs", "stop_grace", "transition"]

log = logging.getLogger("pyhost.runtime")
# What DigitalHub names the value an undecorated handler returns; pyhost's "result" stays its
# alias (run.result("result"), outputs={"result": ...}).
SDK_DEFAULT_OUTPUT = "output_0"
_POLL_MAX = 0.1  # seconds at most between two reads of another process's run
# Seconds a run's end is tried again while the catalog is unavailable (record_end).
END_PATIENCE = 120.0
DEFAULT_STOP_GRACE = 10.0  # seconds; PYHOST_STOP_GRACE (stop_grace)

CREATED, READY, RUNNING = "CREATED", "READY", "RUNNING"
COMPLETED, ERROR, STOPPED = "COMPLETED", "ERROR", "STOPPED"
ACTIVE = (CREATED, READY, RUNNING)
FINAL = (COMPLETED, ERROR, STOPPED)


class RunStatus:
    """A run's status, read-only: ``state``, ``message``, ``results`` (a dict),
    ``outputs`` (output or entity name -> key), ``metrics``, ``attempts``, ``timings``
    (state -> time), ``error`` (the remote ``type``, ``message``, ``traceback``) and
    ``container`` (where it ran)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self._status = status

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._status.get(name, {} if name in ("results", "outputs", "metrics",
                                                      "timings", "error") else None)
        if name == "results":
            return {key: from_json(item) for key, item in (value or {}).items()}
        return value

    def to_dict(self) -> dict[str, Any]:
        return dict(self._status)

    def __repr__(self) -> str:
        return f"<RunStatus {self.state}: {self.message or ''}>"


class Run:
    """A run of a function, as recorded in the catalog (see the module docstring)."""

    def __init__(self, record: Record, runtime: Runtime) -> None:
        self._record = record
        self._runtime = runtime

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def key(self) -> str:
        return str(self._record.document["key"])

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def runtime(self) -> Runtime:
        """The catalog and store the run is recorded in."""
        return self._runtime

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._record.document.get("spec") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._record.document.get("metadata") or {})

    @property
    def status(self) -> RunStatus:
        return RunStatus(dict(self._record.document.get("status") or {}))

    def refresh(self) -> Run:
        """Read the run again from the catalog."""
        self._record = self._runtime.get("run", self.id)
        return self

    def wait(self, timeout: float | None = None, log_info: bool = False) -> Run:
        """Wait until the run ends (or ``timeout`` seconds pass); the refreshed run. A serve
        run never ends by itself: its wait returns once every replica answers (RUNNING), as
        DigitalHub's returns once the service is deployed (see :meth:`_wait_serving`).

        A run executing in this process ends the wait at once; so does one another
        process executes, which tells its end (:mod:`.run_ends`). ``log_info`` logs the
        wait's start and end (logger ``pyhost.runtime``), as DigitalHub's does.
        """
        if log_info:
            log.info("waiting for run %s", self.id)
        if self._record.kind.endswith("+serve"):
            self._wait_serving(timeout)
        else:
            execution = execution_here(self.id)
            if execution is not None:
                execution.done.wait(timeout)
                self.refresh()
            else:
                self._wait_told(timeout)
        if log_info:
            log.info("run %s is %s", self.id, self.status.state)
        return self

    def _wait_serving(self, timeout: float | None) -> None:
        """Until every replica answers. A service of this process that is not up within
        ``timeout`` (default: its ``ready_timeout``) is failed: every replica removed, the
        run ERROR naming the replicas that did not come up, with their last log lines. A
        service of another process is only watched."""
        execution = execution_here(self.id)
        if execution is not None and execution.wait_ready is not None:
            self._record = execution.wait_ready(timeout)
        else:
            self._poll_while((CREATED, READY), timeout)

    def _wait_told(self, timeout: float | None) -> None:
        """Until another process records the run's end and tells it; polled as
        :meth:`_poll_while` where the home cannot hold the FIFO that tells it."""
        home = self._runtime.home
        try:
            watch = EndWatch(home, self.id) if home is not None else None
        except OSError:
            watch = None
        if watch is None:
            self._poll_while(ACTIVE, timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with watch:
            while self.refresh().status.state in ACTIVE:
                left = FALLBACK if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    break
                watch.wait(min(left, FALLBACK))

    def _poll_while(self, states: tuple[str, ...], timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while self.refresh().status.state in states:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, _POLL_MAX)

    def result(self, name: str) -> Any:
        """One result of the run (an entity output's result is its key). ``"result"``, the
        name pyhost gave an undecorated handler's value, answers with ``output_0``,
        DigitalHub's name for it.

        Raises:
            NotInCatalog: the run has no result of that name (DigitalHub returns None).
        """
        results = self.status.results
        name = _alias(name, results)
        if name not in results:
            raise NotInCatalog(f"run {self.id} has no result {name!r} (it has "
                               f"{', '.join(results) or 'none'})")
        return results[name]

    def results(self) -> dict[str, Any]:
        """Every result, by name (a copy)."""
        return dict(self.status.results)

    @overload
    def metrics(self, name: str) -> list[dict[str, Any]]: ...

    @overload
    def metrics(self, name: None = None) -> dict[str, list[dict[str, Any]]]: ...

    def metrics(self, name: str | None = None) -> Any:
        """The series of the metric ``name``: every value the handler logged, oldest first,
        each ``{"value", "step", "time"}`` (``step``: as given, else the point's index in its
        series; ``time``: when the host received it). Without ``name``, every metric's
        series by name. Read from the store, so a run still going shows what it has logged
        so far; ``status.metrics`` holds each metric's last value (see
        :mod:`~pyhost.runtime.metric_series`).

        Raises:
            NotInCatalog: the run logged no metric ``name``.
        """
        from .metric_series import read_series, series_path

        try:
            path = self._runtime.store.resolve(series_path(self.project, self.id))
            with open(path, encoding="utf-8") as lines:
                series = read_series(lines)
        except FileNotFoundError:
            series = {}
        if name is None:
            return series
        if name not in series:
            raise NotInCatalog(f"run {self.id} logged no metric {name!r} (it logged "
                               f"{', '.join(series) or 'none'})")
        return series[name]

    def outputs(self, as_key: bool = False, as_dict: bool = False) -> dict[str, Any]:
        """Every output: name -> the entity (its key with ``as_key``, its document with
        ``as_dict``).

        Raises:
            ConfigurationError: an output names an entity of another project (see
                :meth:`output`).
        """
        found: dict[str, Any] = {}
        for name, key in self.status.outputs.items():
            entity = self.output(name)
            found[name] = key if as_key else entity.to_dict() if as_dict else entity
        return found

    def output(self, name: str) -> Entity:
        """The entity an output became, by entity name or by output name.

        Raises:
            NotInCatalog: the run has no such output.
            ConfigurationError: the output names an entity of another project (a record
                tampered with: a run's outputs are checked when it ends).
        """
        outputs = self.status.outputs
        name = _alias(name, outputs)
        if name not in outputs:
            raise NotInCatalog(f"run {self.id} has no output {name!r} (it has "
                               f"{', '.join(outputs) or 'none'})")
        key = parse_key(outputs[name])
        cls = entity_class(key.entity_type)
        if key.project != self.project or not key.id:
            raise ConfigurationError(f"run {self.id} of project {self.project!r}: output "
                                     f"{name!r} names {outputs[name]}, not a version of an "
                                     "entity of its project; refused")
        record = self._runtime.get(key.entity_type, key.id)
        if record.project != self.project:
            raise ConfigurationError(f"run {self.id} of project {self.project!r}: output "
                                     f"{name!r} is an entity of project {record.project!r}; "
                                     "refused")
        return cls(record.document, self._runtime)

    def inputs(self, as_dict: bool = False) -> dict[str, Any]:
        """The entities the run was given: parameter -> entity (its document with
        ``as_dict``)."""
        found: dict[str, Any] = {}
        for name, key in (self.spec.get("inputs") or {}).items():
            parts = parse_key(key)
            record = (self._runtime.get(parts.entity_type, parts.id) if parts.id
                      else self._runtime.latest(parts.entity_type, self.project, parts.name))
            entity = entity_class(parts.entity_type)(record.document, self._runtime)
            found[name] = entity.to_dict() if as_dict else entity
        return found

    def logs(self, follow: bool = False) -> Any:
        """What the handler printed (stdout, stderr and ``logging``), as far as it got: a
        run's log is written while it runs, kept whole up to ``log_cap`` (64 MiB by
        default), past it its first MiB, a line saying how much was dropped, and its end.

        With ``follow``, an iterator of the log's lines instead, from its start, as they
        are written, until the run ends (any process may follow: the log is re-read at
        most 100 ms apart)."""
        if follow:
            return self._follow()
        path = self.status.logs or self.refresh().status.logs  # begun since it was read
        if not path:
            return ""
        return read_log(self._runtime.store.resolve(path).parent, self.log_cap)

    def log_directory(self) -> Path:
        """Where the run's log is written (:class:`~.run_log.RunLog`; a reader finds no log
        there before it begins)."""
        return self._runtime.store.resolve(_log_directory(self.project, self.id))

    @property
    def log_cap(self) -> int:
        """Bytes of its log the run keeps (``log_cap``, default 64 MiB)."""
        cap = self.spec.get("log_cap")
        return parse_size("log_cap", cap) if cap else DEFAULT_LOG_CAP

    def _follow(self) -> Iterator[str]:
        directory = self.log_directory()
        follower = LogFollower(directory, self.log_cap)
        partial = ""
        while True:
            ended = self.refresh().status.state in FINAL
            text = partial + follower.read()
            *lines, partial = text.split("\n")
            yield from (line + "\n" for line in lines)
            if ended:
                if partial:
                    yield partial
                return
            time.sleep(_POLL_MAX)

    def stop(self) -> Run:
        """Stop the run: its container is sent SIGTERM (the handler is interrupted, its
        ``finally`` blocks run), killed if it still runs :func:`stop_grace` seconds later,
        and removed; the run ends STOPPED. A run that has already ended is left as it is
        (logged at INFO, naming its state); two stops at once have one effect.

        Raises:
            ConfigurationError: the run executes in another process (stop it there).
        """
        execution = execution_here(self.id)
        if execution is None:
            if self.refresh().status.state in FINAL:
                log.info("run %s was already %s; nothing to stop", self.id,
                         self.status.state)
                return self
            self._signal_supervisor()
            self._wait_told(stop_grace() + 30)
            return self
        execution.stop_requested = True
        if execution.stopper is not None:
            execution.stopper()
        execution.done.wait(30)
        return self.refresh()

    def _signal_supervisor(self) -> None:
        """Ask the run's supervisor process (:mod:`pyhost.runtime.supervisor`) to stop it.

        Raises:
            ConfigurationError: the run executes in a process of its caller, or on another
                host (stop it there).
        """
        labels = self.metadata.get("owner") or {}
        owner = Owner.from_labels(labels)
        if owner is None or labels.get(SUPERVISOR_LABEL) != "1" or not owner_alive(owner) or \
                owner.host != socket.gethostname():
            raise ConfigurationError(f"run {self.id} executes in another process "
                                     f"(pid {labels.get('org.pyhost.owner.pid')} on "
                                     f"{labels.get('org.pyhost.owner.host')}); stop it there")
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(owner.pid, signal.SIGTERM)

    def invoke(self, method: str | None = None, path: str = "/", *, json: Any = None,
               body: bytes | str | None = None, headers: dict[str, str] | None = None,
               params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Call a serve run's service once, on its next replica (round robin).

        Args:
            method: the HTTP method (default POST with a body or json, else GET).
            path: the URL path, e.g. ``"/predict"``.
            json: a value sent as JSON (Content-Type application/json).
            body: bytes (or text) sent as they are.
            headers, params: request headers and query fields.
            timeout: seconds to wait for the answer.

        Returns:
            a :class:`~pyhost.runtime.tasks.service_client.ServiceResponse` (``status``,
            ``headers``, ``body``, ``text``, ``json()``); a 4xx or 5xx is an answer too.

        Raises:
            ServiceUnavailable: no replica answered.
        """
        from .tasks.service_client import invoke, live_urls

        urls = live_urls(self.id)
        if urls is None:  # another process supervises it: the URLs it recorded
            urls = list((self.refresh().status.service or {}).get("urls") or [])
        return invoke(self.id, urls, method, path, json=json, body=body, headers=headers,
                      params=params, timeout=timeout)

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.status.state}>"


def _alias(name: str, found: dict[str, Any]) -> str:
    """``output_0`` for ``result`` when only the former is there (see :meth:`Run.result`)."""
    if name == DEFAULT_OUTPUT and name not in found and SDK_DEFAULT_OUTPUT in found:
        return SDK_DEFAULT_OUTPUT
    return name


def create_run(runtime: Runtime, function: Function, action: str,
               spec: dict[str, Any], running: str | None = None) -> Record:
    """Record a new run of ``function`` (kind ``python+<action>``) and make it READY, or
    RUNNING with the message ``running`` when given (a run whose work starts the moment it
    is recorded, in this thread: one write instead of two, its log where :func:`run_log`
    writes it).

    Args:
        spec: the task's settings as the run records them (never a secret's value).
    """
    run_id = new_id()
    now = time.time()
    kind = f"{function.kind}+{action}"
    at = iso_time(now)
    # CREATED and READY (and RUNNING) in one write: nothing happens between them worth a
    # transaction.
    status: dict[str, Any] = {"state": READY, "timings": {CREATED: now, READY: now},
                              "attempts": []}
    if running is not None:
        status.update(state=RUNNING, timings={CREATED: now, READY: now, RUNNING: now},
                      message=running,
                      logs=f"{_log_directory(function.project, run_id)}/{LOG_FILE}")
    document = {
        "entity_type": "run", "project": function.project, "name": run_id,
        "kind": kind, "id": run_id,
        "key": str(EntityKey(function.project, "run", kind, run_id, None)),
        "metadata": {"created": at, "updated": at, "owner": _owner().labels(run_id)},
        "spec": {"function": function.key, "function_id": function.id, "action": action,
                 **spec},
        "status": status,
    }
    return runtime.add(Record("run", function.project, run_id, run_id, kind, now, now,
                              status["state"], document))


def _log_directory(project: str, run_id: str) -> str:
    """Where a run's log is, relative to the store."""
    return f"{project}/run/{run_id}/logs"


_owners: dict[int, Owner] = {}


def _owner() -> Owner:
    """This process as a run's owner: read once per process (it reads /proc), a forked
    child reading its own."""
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        owner = _owners[pid] = Owner.current()
    return owner


def run_log(runtime: Runtime, record: Record, cap: int = DEFAULT_LOG_CAP,
            mask: Callable[[str], str] = str,
            allow: Callable[[int], int] | None = None) -> RunLog:
    """The run's log in the store (:mod:`.run_log`), written while it runs."""
    directory = runtime.store.path(record.project, "run", record.id, "logs", make=False)
    return RunLog(directory, cap, mask, allow)


def log_key(runtime: Runtime, log: RunLog) -> str:
    """Where ``log`` is, relative to the store: what ``status.logs`` records."""
    return str(os.path.relpath(log.path, runtime.store.root))


def transition(runtime: Runtime, record: Record, state: str,
               expect: str | tuple[str, ...], **changes: Any) -> Record:
    """Move a run to ``state`` if it is in ``expect``, recording the time and ``changes``
    (merged into its status).

    Raises:
        StaleState: the run is no longer in ``expect`` (another process moved it).
    """
    now = time.time()
    document = dict(record.document)
    status = dict(document.get("status") or {})
    status.update(changes)
    status["state"] = state
    status["timings"] = {**(status.get("timings") or {}), state: now}
    document["status"] = status
    document["metadata"] = {**(document.get("metadata") or {}), "updated": iso_time(now)}
    updated = runtime.update("run", record.id, document, state=state, expect_state=expect,
                             updated=now)
    if state in FINAL:
        execution = execution_here(record.id)
        if execution is not None:
            execution.ended = updated
        if runtime.home is not None:  # other processes' waits end now
            tell_ended(runtime.home, record.id)
    return updated


def stop_grace() -> float:
    """Seconds a stopped run's handler has to end after SIGTERM before it is killed:
    ``$PYHOST_STOP_GRACE`` (read by the process executing the run), default 10.

    Raises:
        ConfigurationError: the variable is not a number of seconds over 0.
    """
    return env_seconds("PYHOST_STOP_GRACE", DEFAULT_STOP_GRACE)


def record_end(runtime: Runtime, run_id: str, state: str, expect: str | tuple[str, ...],
               patience: float | None = None, current: Record | None = None,
               **changes: Any) -> Record:
    """:func:`transition` of a run to how it ended, tried again while another process holds
    the catalog's write lock past the busy timeout, for up to ``patience`` seconds (default
    :data:`END_PATIENCE`): a run's end is what its waiters wait for, and its results exist
    nowhere else. Each try re-reads the run, so a run that another process settled
    meanwhile raises :class:`StaleState`, never a second end; the first try takes
    ``current`` instead when given: the run as the caller last wrote it, for a caller that
    alone writes it while it is active (another process can only move its state, which the
    compare-and-set sees).

    Raises:
        CatalogUnavailable: the catalog failed, or stayed locked for ``patience`` seconds.
        StaleState: the run is no longer in ``expect``.
    """
    deadline = time.monotonic() + (END_PATIENCE if patience is None else patience)
    while True:
        try:
            record = runtime.get("run", run_id) if current is None else current
            current = None
            return transition(runtime, record, state, expect, **changes)
        except CatalogUnavailable as exc:
            if not isinstance(exc.__cause__, CatalogBusy) or time.monotonic() >= deadline:
                raise
            log.warning("run %s ended %s, but the catalog is unavailable (%s); trying again",
                        run_id, state, exc)
            time.sleep(0.2)


def settle_orphaned_runs(runtime: Runtime) -> list[str]:
    """Mark ERROR the active runs whose owner process is gone; their ids."""
    settled = []
    for record in runtime.find("run", state=list(ACTIVE)):
        owner = Owner.from_labels((record.document.get("metadata") or {}).get("owner") or {})
        if owner is None or owner_alive(owner):
            continue
        # A serve run has no end of its own: its supervisor's end stops it.
        state = STOPPED if record.kind == "python+serve" else ERROR
        try:
            transition(runtime, record, state, ACTIVE,
                       message=f"host process exited (pid {owner.pid} on {owner.host})")
        except StaleState:
            continue
        settled.append(record.id)
    return settled
