"""The replicas of a serve run, supervised by threads of this process.

Each replica gets a supervising thread that starts a session and evaluates
``serve(__serve__)`` (:mod:`hxpy.runtime.serve`) in it, a batch that lasts the replica's
life, answering its calls meanwhile: ``context.project``/``context.run`` calls (the job's
:class:`~pyhost.runtime.host_calls.HostCalls`), its logs and its health. Once every replica
has said it listens the run is RUNNING with ``status.service`` (the URLs) and
``status.replicas``. A replica whose session breaks (its container killed, OOM) is started
again, with a back-off, and its restarts counted. ``run.stop()`` removes every replica: the
run is STOPPED. When this process ends, the replicas go with it: each server exits when its
host connection drops and its container is removed by the engine (``auto_remove``); a run
left RUNNING that way is settled STOPPED by the next process that opens the catalog.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hxpy.runtime import calls as call_names

from ...api import py
from ...errors import ConfigurationError, PyHostError, PythonError, short
from ...session.conversation import terminated
from ..catalog import Record, StaleState
from ..executions import Execution, executing, finished
from ..host_calls import HostCalls
from ..limits import masker
from ..runs import (
    ACTIVE,
    ERROR,
    READY,
    RUNNING,
    STOPPED,
    log_key,
    run_log,
    stop_grace,
    transition,
)
from ..sources import python_wanted
from .serve_spec import CONTAINER_PORT, ServeSpec
from .service_client import forget, remember

if TYPE_CHECKING:
    from ...session.blocking import Session
    from ..context import Runtime
    from ..function import Function

__all__ = ["TAIL_LINES", "Service", "live_service"]

log = logging.getLogger("pyhost.runtime")

_STATUS_EVERY = 5.0  # seconds between two status writes carrying only new counters
_BACKOFF = (0.5, 30.0)  # first and longest pause before a broken replica starts again
TAIL_LINES = 10  # a replica's last log lines a failed start's error shows
_TAIL_LINE_CHARS = 300  # each cut to this many characters: the message stays small


def live_service(run_id: str) -> Service | None:
    """The service this process supervises for ``run_id``, if any."""
    with _services_lock:
        return _services.get(run_id)


_services: dict[str, Service] = {}
_services_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """A process that ends normally stops its services: STOPPED, every replica removed."""
    for service in _live_services():
        service.stop()


def _live_services() -> list[Service]:
    with _services_lock:
        return list(_services.values())


@dataclass
class _Replica:
    index: int
    state: str = "starting"  # starting, ready, restarting, stopped
    restarts: int = 0
    container: str | None = None
    url: str | None = None
    host_port: int = 0  # kept across restarts, so a replica keeps its URL
    health: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    session: Session | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def describe(self) -> dict[str, Any]:
        return {"index": self.index, "state": self.state, "restarts": self.restarts,
                "container": self.container, "url": self.url, "error": self.error,
                **{key: self.health.get(key, 0) for key in ("requests", "errors",
                                                             "rejected")}}


class Service:
    """The replicas of one serve run, supervised by threads of this process."""

    def __init__(self, runtime: Runtime, record: Record, function: Function,
                 settings: ServeSpec, execution: Execution | None = None) -> None:
        self.runtime = runtime
        self.run_id = record.id
        self.function = function
        self.settings = settings
        self.replicas = [_Replica(index) for index in range(settings.replicas)]
        self._record = record
        self._execution = execution or executing(record.id)
        self._execution.stopper = self._stop_replicas
        self._execution.wait_ready = self.wait_ready
        self._mask = masker(settings.secrets)
        self._calls = HostCalls(runtime, function.project, record.id, record.document["key"],
                                settings.limits, self._mask)
        self._lock = threading.RLock()
        self._settled = threading.Event()  # every replica listens, or the start failed
        self._ending = threading.Event()  # stop() or a failure: supervisors stop waiting
        self._failure: dict[str, str] | None = None
        self._running = False
        self._last_write = 0.0
        self._threads: list[threading.Thread] = []
        # Every replica's output, each line tagged with its replica: the head stays past
        # log_cap, the tail rolls (masked before it is written: _append_log).
        self._log = run_log(runtime, record, settings.limits.log_cap)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with _services_lock:
            _services[self.run_id] = self
        remember(self.run_id, self.urls)
        self._write(READY, logs=log_key(self.runtime, self._log))
        for replica in self.replicas:
            thread = threading.Thread(target=self._supervise, args=(replica,), daemon=True,
                                      name=f"pyhost-serve-{self.run_id[:8]}-{replica.index}")
            self._threads.append(thread)
            thread.start()
        threading.Thread(target=self._settle_at_end, daemon=True,
                         name=f"pyhost-serve-{self.run_id[:8]}").start()
        # Waited for or not, a start that takes longer than ready_timeout fails.
        threading.Thread(target=self.wait_ready, daemon=True,
                         name=f"pyhost-serve-{self.run_id[:8]}-ready").start()

    def wait_ready(self, timeout: float | None = None) -> Record:
        """Wait until every replica answers (RUNNING) or the start failed; the record. Not
        up within ``timeout`` (default ``ready_timeout``): the start fails, every replica
        is removed and the run ends ERROR naming the replicas that did not come up."""
        timeout = self.settings.ready_timeout if timeout is None else timeout
        if not self._settled.wait(timeout):
            self._fail({"type": "TimeoutError", "traceback": "",
                        "message": self._not_up(timeout)})
        if self._failure is not None:  # recorded once every replica is gone
            self._execution.done.wait(30)
        return self.runtime.get("run", self.run_id)

    def _not_up(self, timeout: float) -> str:
        """Which replicas did not answer within ``timeout``, each with its last log lines."""
        with self._lock:
            late = [replica for replica in self.replicas if replica.state != "ready"]
            parts = []
            for replica in late:
                shown = "".join(f"\n    {line[:_TAIL_LINE_CHARS]}" for line in replica.tail)
                parts.append(f"replica {replica.index} (container "
                             f"{(replica.container or 'not started')[:12]}, "
                             f"{replica.state}): " +
                             (f"its last log lines:{shown}" if shown else "no log line"))
        return (f"{len(late)} of {len(self.replicas)} replica(s) did not answer within "
                f"{timeout:g} s; " + "; ".join(parts))

    def wait_ended(self) -> None:
        """Until every replica is gone and the run recorded STOPPED or ERROR."""
        self._execution.done.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every replica as a stopped job is stopped (SIGTERM: the server shuts down
        and the replica sends what it printed since its last report; killed if it still
        runs :func:`stop_grace` seconds later) and wait for the run to end (STOPPED)."""
        self._execution.stop_requested = True
        self._ending.set()
        self._stop_replicas()
        self._execution.done.wait(timeout)

    def _stop_replicas(self) -> None:
        """SIGTERM to every replica at once, each killed past the grace; returns once all
        ended. (Killed at once, a replica lost what it printed since its last report, up to
        half a second of its log.)"""
        grace = stop_grace()
        stopping = [threading.Thread(target=session.kill, args=(grace,), daemon=True)
                    for session in self._sessions()]
        for thread in stopping:  # side by side: each waits out its own grace
            thread.start()
        for thread in stopping:
            thread.join()

    def urls(self) -> list[str]:
        """The URLs of the replicas that listen now."""
        with self._lock:
            return [r.url for r in self.replicas if r.url and r.state == "ready"]

    def _kill_all(self) -> None:
        for session in self._sessions():
            session.kill()

    def _sessions(self) -> list[Session]:
        return [session for replica in self.replicas
                if (session := replica.session) is not None]

    @property
    def _stopping(self) -> bool:
        return self._execution.stop_requested or self._failure is not None

    def _fail(self, error: dict[str, str]) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = {key: self._mask(value) for key, value in error.items()}
        self._settled.set()
        self._ending.set()
        self._kill_all()

    def _settle_at_end(self) -> None:
        for thread in self._threads:
            thread.join()
        self._calls.abort_uploads()  # a replica killed mid-upload leaves a staged file
        try:
            with self._lock:
                for replica in self.replicas:
                    replica.state, replica.url = "stopped", None
                changes: dict[str, Any] = {"replicas": self._replica_status(),
                                           "service": self._service(),
                                           "metrics": self._calls.metrics,
                                           "produced": self._calls.produced}
                if self._failure is not None:
                    changes.update(error=self._failure, message=f"{self._failure['type']}: "
                                   f"{self._failure['message']}")
                    state = ERROR
                else:
                    state, changes["message"] = STOPPED, "stopped"
                transition(self.runtime, self.runtime.get("run", self.run_id), state, ACTIVE,
                           **changes)
        except StaleState:
            log.warning("serve run %s was settled by another process", self.run_id)
        except Exception:
            log.exception("serve run %s: recording its end failed", self.run_id)
        finally:
            with _services_lock:
                _services.pop(self.run_id, None)
            forget(self.run_id)
            self._settled.set()
            finished(self.run_id)

    # -- one replica ---------------------------------------------------------------------

    def _supervise(self, replica: _Replica) -> None:
        pause = _BACKOFF[0]
        while not self._stopping:
            started = time.monotonic()
            broke = self._mask(self._serve_once(replica))  # it goes into the status
            if self._stopping:
                break
            with self._lock:
                replica.restarts += 1
                replica.state, replica.url, replica.error = "restarting", None, broke
            log.warning("serve run %s: replica %d ended (%s); starting it again in %.1f s",
                        self.run_id, replica.index, broke, pause)
            self._append_log(replica.index, f"replica ended ({broke}); restarting\n")
            self._write()
            # A replica that served a while restarts at once; one that keeps failing waits.
            pause = _BACKOFF[0] if time.monotonic() - started > 60 else \
                min(pause * 2, _BACKOFF[1])
            self._ending.wait(pause if replica.restarts > 1 else 0.1)

    def _serve_once(self, replica: _Replica) -> str:
        """Run the replica's session until it ends; why it ended."""
        port = self.settings.published(replica.index)
        if replica.host_port and port.host_address is not None and not port.host_port:
            port = type(port)(port.container_port, port.host_address, replica.host_port)
        session = py(timeout=None, network=self.settings.network, ports=(port,),
                     auto_remove=True, **self.settings.session_options())
        replica.session = session
        try:
            if self._stopping:
                return "stopped"
            for name, handler in self._calls.table().items():
                session.handle(name, handler)
            # Bound to this replica: a replica reports for itself only, whatever index it
            # sends (each replica's session has its own handlers).
            session.handle(call_names.SERVE_LOGS,
                           lambda index, text: self._append_log(
                               self._own_index(replica, index), text))
            session.handle(call_names.SERVE_HEALTH,
                           lambda index, health: self._on_health(
                               self._own_index(replica, index), health))
            session.init(lambda started: self._on_start(replica, started))
            session.define("__serve__", self._job(replica))
            session.exec("from hxpy.runtime.serve import serve").eval("serve(__serve__)")
            return "its server stopped"
        except PythonError as exc:
            if self._stopping and terminated(exc):  # our own stop's SIGTERM: no failure
                return "stopped"
            self._append_log(replica.index, f"replica failed: {exc}\n")
            if not self._running:  # the start itself fails: the run cannot serve
                self._fail({"type": exc.remote_type, "message": exc.remote_message,
                            "traceback": exc.remote_traceback})
            return f"{exc.remote_type}: {exc.remote_message}"
        except PyHostError as exc:
            reason = f"{type(exc).__name__}: {short(exc, first_line=True)}"
            if not self._running and not self._stopping:  # the start fails: no restart
                self._fail({"type": type(exc).__name__, "message": str(exc),
                            "traceback": ""})
            return reason
        finally:
            replica.session = None
            session.close()

    def _job(self, replica: _Replica) -> dict[str, Any]:
        info = self.function.handler_info()
        return {"files": self.function.source().files, "module": info.module,
                "function": info.function, "project": self.function.project,
                "run_id": self.run_id, "replica": replica.index,
                "init_function": self.settings.init_function,
                "init_parameters": self.settings.init_parameters, "port": CONTAINER_PORT,
                "workers": self.settings.workers,
                "python": python_wanted(self.function.spec)}

    def _on_start(self, replica: _Replica, session: Session) -> None:
        host, port = session.ports.get(CONTAINER_PORT, ("", 0))
        with self._lock:
            replica.container = session.container_id
            replica.url = f"http://{host}:{port}" if host else None
            if self.settings.service_type == "NodePort":
                replica.host_port = port

    # -- what replicas report ------------------------------------------------------------

    @staticmethod
    def _own_index(replica: _Replica, index: Any) -> int:
        """``index`` if it is the calling replica's own.

        Raises:
            ConfigurationError: another replica's index, or not an index at all.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index != replica.index:
            raise ConfigurationError(f"replica {replica.index} reports as replica "
                                     f"{replica.index} only, not {str(index)[:40]!r}")
        return index

    def _append_log(self, index: int, text: str) -> None:
        if not isinstance(text, str):
            raise ConfigurationError(f"serve logs are text, not {type(text).__name__}")
        lines = self._mask(text).splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        with self._lock:
            self.replicas[index].tail.extend(line.rstrip("\n") for line in lines[-TAIL_LINES:])
        self._log.write("".join(f"[replica {index}] {line}" for line in lines))

    def _on_health(self, index: int, health: dict[str, Any]) -> None:
        if not isinstance(health, dict):
            raise ConfigurationError(f"a replica's health is a dict, not "
                                     f"{type(health).__name__}")
        replica = self.replicas[index]
        became_ready = False
        with self._lock:
            # Only what the status shows, and only numbers: a replica's report is its own.
            replica.health = {key: value for key, value in health.items()
                              if key in ("ready", "requests", "errors", "rejected")
                              and isinstance(value, (int, float))}
            if replica.health.get("ready") and replica.state != "ready":
                replica.state, replica.error, became_ready = "ready", None, True
            everyone = all(r.state == "ready" for r in self.replicas)
        if became_ready and everyone and not self._running and not self._stopping:
            self._running = True
            self._write(RUNNING, message=f"serving on {', '.join(self.urls())}")
            self._settled.set()
        elif became_ready or time.monotonic() - self._last_write > _STATUS_EVERY:
            self._write()

    # -- the record ----------------------------------------------------------------------

    def _service(self) -> dict[str, Any]:
        return {"type": self.settings.service_type, "urls": self.urls(),
                "port": CONTAINER_PORT}

    def _replica_status(self) -> list[dict[str, Any]]:
        return [replica.describe() for replica in self.replicas]

    def _write(self, state: str | None = None, **changes: Any) -> None:
        """Record the replicas and the service (and a new state, or the current one)."""
        with self._lock:
            self._last_write = time.monotonic()
            try:
                record = self.runtime.get("run", self.run_id)
                current = record.state
                if current not in ACTIVE:
                    return
                changes = {"replicas": self._replica_status(), "service": self._service(),
                           **changes}
                self._record = transition(self.runtime, record, state or current, current,
                                          **changes)
            except StaleState:
                log.warning("serve run %s was moved by another process", self.run_id)
            except Exception:
                log.exception("serve run %s: recording its status failed", self.run_id)

