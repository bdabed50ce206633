"""The ``job`` task: run a function's handler once, in a sandboxed session (or, with
``local_execution=True``, in this process), and record what came of it.

Everything that can be checked is checked before anything starts (:mod:`.job_settings`).
Then the run is CREATED and READY; RUNNING while the handler runs; COMPLETED with
its results and outputs, ERROR with the user's own exception and traceback (after
``backoff_limit`` more attempts), or STOPPED.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hxpy.runtime.handler import DEFAULT_OUTPUT
from hxpy.runtime.job import run_job

from ..api import py
from ..errors import ConfigurationError, NotInCatalog, PyHostError, PythonError
from .catalog import Record, StaleState
from .entities import entity_class, parse_key
from .host_calls import HostCalls
from .job_settings import JobSettings, check_job
from .limits import cap_text, masker
from .runs import (
    ACTIVE,
    COMPLETED,
    ERROR,
    READY,
    RUNNING,
    SDK_DEFAULT_OUTPUT,
    STOPPED,
    Run,
    create_run,
    executing,
    finished,
    save_logs,
    transition,
)
from .sources import HandlerInfo, python_wanted
from .values import to_json

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["start_job"]

log = logging.getLogger("pyhost.runtime")


def start_job(function: Function, runtime: Runtime, *, inputs: dict[str, Any] | None = None,
              parameters: dict[str, Any] | None = None, outputs: dict[str, str] | None = None,
              wait: bool = False, local_execution: bool = False, launcher: Any = "docker",
              envs: list[dict[str, str]] | None = None, secrets: list[str] | None = None,
              resources: dict[str, Any] | None = None,
              volumes: list[dict[str, Any]] | None = None, backoff_limit: int = 0,
              timeout: float | None = None, node_selector: Any = None, affinity: Any = None,
              tolerations: Any = None, store_quota: int | str | None = None,
              log_cap: int | str | None = None, open_uploads: int | None = None,
              **unknown: Any) -> Run:
    """Check everything, record the run, and execute it (in the background unless ``wait``).

    Args:
        inputs: handler argument -> entity key (or entity) of this project.
        parameters: handler argument -> value (anything the session codec carries).
        outputs: output name -> the name of the entity it becomes.
        wait: return once the run ended (else at once, the run going on in this process).
        local_execution: run in this process, without a container: NOT a sandbox.
        launcher: where the container runs (``"docker"``, ``"process"``, a Launcher).
        envs: ``[{"name", "value"}]`` for the container's environment.
        secrets: names whose values come from this process's environment; they reach the
            handler's environment only, never the catalog, a log or a status.
        resources: ``{"cpu": "500m" | 1.5, "memory": "512Mi" | "1Gi"}``: container limits.
        volumes: DigitalHub volume specs: ``{"volume_type": "persistent_volume_claim",
            "name", "mount_path", "read_only": True}`` (a named engine volume, read-only
            unless ``read_only`` is False) or ``{"volume_type": "empty_dir", "mount_path",
            "spec": {"size_limit": "1Gi"}}`` (a scratch tmpfs).
        backoff_limit: attempts after a failed one.
        timeout: seconds the handler may run (None: no limit).
        node_selector, affinity, tolerations: recorded for a cluster launcher; unused here.
        store_quota: bytes the run may add to the store (uploads, tables, logs), e.g.
            ``"2Gi"`` (default 10 GiB); going over it ends the run ERROR naming it.
        log_cap: bytes of logs kept, the first and the last half (default ``"1Mi"``).
        open_uploads: uploads the run may hold open at once (default 16).

    Raises:
        ConfigurationError: an unknown setting, a malformed one, or arguments that do not
            fit the handler (the message names the argument); nothing has started.
        NotInCatalog: an input names no entity.
    """
    settings = check_job(function, runtime, inputs=inputs, parameters=parameters,
                         outputs=outputs, local_execution=local_execution, launcher=launcher,
                         envs=envs, secrets=secrets, resources=resources, volumes=volumes,
                         backoff_limit=backoff_limit, timeout=timeout,
                         node_selector=node_selector, affinity=affinity,
                         tolerations=tolerations, store_quota=store_quota, log_cap=log_cap,
                         open_uploads=open_uploads, **unknown)
    info = function.handler_info()
    record = create_run(runtime, function, "job", settings.record())
    execution = executing(record.id)
    work = (runtime, record, function, info, settings, execution)
    if wait:  # in this thread: no thread to start, and this thread's catalog connection
        _close_later(_execute(*work))
        return Run(record, runtime).refresh()
    threading.Thread(target=lambda: _close(_execute(*work)),
                     name=f"pyhost-run-{record.id[:8]}", daemon=True).start()
    return Run(record, runtime)


def _close(session: Any) -> None:
    if session is not None:
        session.close()


def _close_later(session: Any) -> None:
    """Remove a finished job's container in the background: the run is recorded, and the
    removal (tens of ms) is not its time. At exit, pyhost closes what is still open."""
    if session is not None:
        threading.Thread(target=session.close, name="pyhost-job-cleanup", daemon=True).start()


# -- recording and executing ---------------------------------------------------------------

def _execute(runtime: Runtime, record: Record, function: Function, info: HandlerInfo,
             settings: JobSettings, execution: Any) -> Any:
    """Run the attempts and record the end; the session still to close (None if none)."""
    session = None
    try:
        attempts: list[dict[str, Any]] = []
        for attempt in range(1, settings.backoff_limit + 2):
            record = transition(runtime, record, RUNNING, (READY, RUNNING),
                                message=f"attempt {attempt}")
            calls = HostCalls(runtime, function.project, record.id, record.document["key"],
                              settings.limits, masker(settings.secrets))
            started = time.time()
            outcome = _attempt(runtime, record, function, info, settings, calls, execution)
            session = outcome.session
            attempts.append({"attempt": attempt, "started": started, "ended": time.time(),
                             "state": outcome.state, "error": outcome.error})
            if outcome.state != ERROR or execution.stop_requested:
                break
        _finish(runtime, record, settings, calls, outcome, attempts, execution,
                undecorated=not info.outputs)
    except StaleState:
        log.warning("run %s was settled by another process while it ran", record.id)
    except Exception:  # the runtime's own failure: the run must not stay RUNNING
        log.exception("run %s: the runtime failed", record.id)
        with contextlib.suppress(Exception):
            transition(runtime, runtime.get("run", record.id), ERROR, ACTIVE,
                       message="the runtime failed; see the host's log")
    finally:
        finished(record.id)  # waiters wake before the container's removal
    return session


@dataclass
class _Outcome:
    state: str
    answer: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    logs: str = ""
    container: str | None = None
    session: Any = None  # to close once the run is recorded (removal takes tens of ms)


def _attempt(runtime: Runtime, record: Record, function: Function, info: HandlerInfo,
             settings: JobSettings, calls: HostCalls, execution: Any) -> _Outcome:
    job = {"files": function.source().files, "module": info.module,
           "function": info.function, "project": function.project, "run_id": record.id,
           "inputs": {name: calls.get_entity(parse_key(key).entity_type, key)
                      for name, key in settings.inputs.items()},
           "parameters": settings.parameters}
    try:
        if settings.local_execution:
            return _run_locally(job, calls, settings, function.source_directory())
        def started(container_id: str | None) -> None:
            transition(runtime, runtime.get("run", record.id), RUNNING, RUNNING,
                       container=container_id)

        return _run_in_session(job, calls, settings, function, execution, started)
    except PythonError as exc:
        return _Outcome(ERROR, error={"type": exc.remote_type, "message": exc.remote_message,
                                      "traceback": exc.remote_traceback}, logs=exc.output)
    except PyHostError as exc:
        state = STOPPED if execution.stop_requested else ERROR
        return _Outcome(state, error={"type": type(exc).__name__, "message": str(exc),
                                      "traceback": ""})
    finally:
        calls.abort_uploads()


def _run_locally(job: dict[str, Any], calls: HostCalls, settings: JobSettings,
                 source: str) -> _Outcome:
    """The handler in this process (no sandbox), what this thread prints captured as a
    session's output is."""
    import traceback

    saved = {name: os.environ.get(name) for name in {**settings.envs, **settings.secrets}}
    os.environ.update({**settings.envs, **settings.secrets})
    try:
        with _captured() as captured:
            try:  # imported from the version's own files in the store: nothing to write
                answer = run_job({**job, "files": {}}, calls.dispatch, source)
            except Exception as exc:
                # from the handler on: not this frame, nor run_job's
                frames = traceback.extract_tb(exc.__traceback__)[2:]
                text = "".join(traceback.format_list(frames) +
                               traceback.format_exception_only(type(exc), exc))
                raise PythonError(type(exc).__qualname__, str(exc),
                                  "Traceback (most recent call last):\n" + text,
                                  captured.getvalue()) from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return _Outcome(COMPLETED, answer, logs=captured.getvalue())


class _PerThread(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a thread running a local job writes to its own
    buffer, every other thread to the stream that was there before."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.buffers: dict[int, io.StringIO] = {}

    def write(self, text: str) -> int:
        return self.buffers.get(threading.get_ident(), self.fallback).write(text)

    def flush(self) -> None:
        self.fallback.flush()


_streams_lock = threading.Lock()


@contextlib.contextmanager
def _captured() -> Any:
    buffer = io.StringIO()
    with _streams_lock:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _PerThread):
                setattr(sys, name, _PerThread(getattr(sys, name)))
            getattr(sys, name).buffers[threading.get_ident()] = buffer
    try:
        yield buffer
    finally:
        with _streams_lock:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _PerThread):
                    stream.buffers.pop(threading.get_ident(), None)


def _run_in_session(job: dict[str, Any], calls: HostCalls, settings: JobSettings,
                    function: Function, execution: Any,
                    started: Callable[[str | None], None]) -> _Outcome:
    # The container keeps at most log_cap of output too; the host cuts it again on saving.
    session = py(timeout=settings.timeout, output_cap=settings.limits.log_cap,
                 **settings.session_options())
    execution.stopper = session.kill
    session.__enter__()  # kept across evals; closed by the caller once the run is recorded
    try:
        for name, handler in calls.table().items():
            session.handle(name, handler)
        if execution.stop_requested:
            session.close()
            return _Outcome(STOPPED)
        # Recorded when the container starts, before the job's one round trip.
        session.init(lambda started_session: started(started_session.container_id))
        job = {**job, "python": python_wanted(function.spec)}
        answer = (session.define("__job__", job)
                  .exec("from hxpy.runtime.job import run_job").eval("run_job(__job__)"))
    except BaseException:
        session.close()
        raise
    return _Outcome(COMPLETED, answer, logs=session.last_output,
                    container=session.container_id, session=session)


def _finish(runtime: Runtime, record: Record, settings: JobSettings, calls: HostCalls,
            outcome: _Outcome, attempts: list[dict[str, Any]], execution: Any,
            undecorated: bool = False) -> None:
    mask = calls.mask
    state = STOPPED if execution.stop_requested else outcome.state
    changes: dict[str, Any] = {"attempts": attempts, "metrics": calls.metrics,
                               "produced": calls.produced, "consumed": calls.consumed}
    error = outcome.error
    if state == COMPLETED:
        try:
            answer, mapping = mask(outcome.answer), settings.outputs
            if undecorated:
                answer, mapping = _sdk_output_names(answer, mapping)
            results, outputs = _record_outputs(calls, answer, mapping)
            changes.update(results=results, outputs=outputs, message="completed")
        except (ConfigurationError, NotInCatalog) as exc:
            state, error = ERROR, {"type": type(exc).__name__, "message": str(exc),
                                   "traceback": ""}
    if calls.exceeded is not None and state != STOPPED:
        # Over a quota is an error even when the handler caught the refusal.
        state, error = ERROR, {"type": "ConfigurationError", "message": calls.exceeded,
                               "traceback": (error or {}).get("traceback", "")}
        changes.pop("results", None)
        changes.pop("outputs", None)
    if state == ERROR and error:
        error = {key: mask(value) for key, value in error.items()}
        changes.update(error=error, message=f"{error['type']}: {error['message']}")
    elif state != COMPLETED:
        changes.update(message="stopped")
    for attempt in attempts:
        if attempt["error"]:
            attempt["error"] = {key: mask(value) for key, value in attempt["error"].items()}
    changes["logs"] = _save_logs(runtime, record, settings, calls, mask(outcome.logs))
    transition(runtime, runtime.get("run", record.id), state, (RUNNING,), **changes)


def _save_logs(runtime: Runtime, record: Record, settings: JobSettings, calls: HostCalls,
               text: str) -> str | None:
    """The logs cut to ``log_cap`` and to what the store quota leaves, then saved."""
    text = cap_text(text, settings.limits.log_cap)
    size = len(text.encode("utf-8", errors="replace"))
    kept = calls.count_logs(size)
    if kept < size:
        text = cap_text(text, max(kept - 256, 0))  # room for the marker
    return save_logs(runtime, record, text, settings.limits.log_cap)


def _record_outputs(calls: HostCalls, answer: dict[str, Any],
                    mapping: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Results (JSON) and outputs (name -> key) of what the handler returned: its tables
    recorded, the entity keys it returned checked to be entities of the run's project.

    Raises:
        ConfigurationError: an entity key of another project or an unknown type, or a table
            over the store quota.
        NotInCatalog: an entity key that names no entity.
    """
    if not isinstance(answer, dict):
        raise ConfigurationError(f"the job answered with a {type(answer).__name__}, not the "
                                 "results of its handler")
    results = {name: to_json(value) for name, value in (answer.get("results") or {}).items()}
    outputs: dict[str, str] = {}
    for name, key in (answer.get("entities") or {}).items():
        outputs[mapping.get(name, name)] = results[name] = _own_entity(calls, name, key)
    for name, table in (answer.get("tables") or {}).items():
        document = calls.log_table(mapping.get(name, name), table)
        outputs[mapping.get(name, name)] = results[name] = document["key"]
    return results, outputs


def _sdk_output_names(answer: Any, mapping: dict[str, str]
                      ) -> tuple[Any, dict[str, str]]:
    """An undecorated handler's return value under DigitalHub's name for it, ``output_0``
    (the container names it ``result``; ``outputs={"result": ...}`` still maps it)."""
    if not isinstance(answer, dict):
        return answer, mapping
    renamed = {part: {(SDK_DEFAULT_OUTPUT if name == DEFAULT_OUTPUT else name): value
                      for name, value in (values or {}).items()}
               if isinstance(values, dict) else values for part, values in answer.items()}
    entity = mapping.get(DEFAULT_OUTPUT, mapping.get(SDK_DEFAULT_OUTPUT))
    mapping = {name: value for name, value in mapping.items()
               if name not in (DEFAULT_OUTPUT, SDK_DEFAULT_OUTPUT)}
    if entity is not None:
        mapping[SDK_DEFAULT_OUTPUT] = entity
    return renamed, mapping


def _own_entity(calls: HostCalls, output: str, key: Any) -> str:
    """``key`` if it names an existing entity version of the run's project."""
    parts = parse_key(key) if isinstance(key, str) else None
    if parts is None or parts.project != calls.project or not parts.id:
        raise ConfigurationError(f"output {output!r}: {str(key)[:300]!r} is not an entity "
                                 f"version of project {calls.project!r}; a run's outputs are "
                                 "entities of its own project")
    entity_class(parts.entity_type)
    record = calls.runtime.get(parts.entity_type, parts.id)
    if record.project != calls.project or record.document.get("key") != key:
        raise ConfigurationError(f"output {output!r}: {key} is not an entity of project "
                                 f"{calls.project!r}")
    return str(key)


