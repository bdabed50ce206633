"""The ``job`` task: run a function's handler once, in a sandboxed session (or, with
``local_execution=True``, in this process: :mod:`.local`), and record what came of it.

Everything that can be checked is checked before anything starts (:mod:`.job_spec`). Then
the run is CREATED and READY; RUNNING while the handler runs; COMPLETED with its results and
outputs, ERROR with the user's own exception and traceback (after ``backoff_limit`` more
attempts), or STOPPED. An attempt whose container went with its engine (a restart of the
Docker engine) is followed by the next one only once the engine answers again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hxpy.runtime.handler import DEFAULT_OUTPUT

from ...api import py
from ...errors import (
    ConfigurationError,
    EngineUnavailable,
    NotInCatalog,
    PyHostError,
    PythonError,
    SessionDied,
)
from ...launchers import get_launcher
from ..catalog import Record
from ..entities import entity_class, parse_key
from ..executions import Execution
from ..host_calls import HostCalls
from ..limits import masker
from ..run_log import HEAD, RunLog
from ..runs import (
    COMPLETED,
    ERROR,
    READY,
    RUNNING,
    SDK_DEFAULT_OUTPUT,
    STOPPED,
    log_key,
    record_end,
    run_log,
    stop_grace,
    transition,
)
from ..sources import python_wanted
from ..values import to_json
from .base import Cleanup, OneShotTask
from .job_spec import JobSpec, check_job
from .local import run_here

if TYPE_CHECKING:
    from ...session.blocking import Session
    from ..context import Runtime
    from ..function import Function

__all__ = ["ENGINE_WAIT", "JobTask"]

#: Seconds an attempt whose engine went away waits for it to answer again before the next.
ENGINE_WAIT = 120.0


class JobTask(OneShotTask[JobSpec]):
    """``fn.run(action="job", ...)``: the settings are :func:`~.job_spec.check_job`'s and
    :func:`~.spec.common_settings`'s.

    Settings:
        inputs: handler argument -> entity key (or entity) of this project.
        parameters: handler argument -> value (anything the session codec carries).
        outputs: output name -> the name of the entity it becomes.
        wait: return once the run ended (else at once, the run going on in this process).
        local_execution: run in this process, without a container: NOT a sandbox.
        launcher: where the container runs (``"docker"``, ``"swarm"``, ``"process"``, a
            Launcher).
        envs: ``[{"name", "value"}]`` for the container's environment.
        secrets: names whose values come from this process's environment; they reach the
            handler's environment only, never the catalog, a log or a status.
        resources: ``{"cpu": "500m" | 1.5, "mem": "512Mi" | "1Gi"}``: container limits.
        volumes: DigitalHub volume specs (:func:`~.spec.parse_volumes`).
        backoff_limit: attempts after a failed one.
        timeout: seconds the handler may run (None: no limit).
        node_selector, affinity, tolerations: where the session may run, in Kubernetes'
            shapes; the launcher refuses what it cannot express (one engine has no node to
            choose; Swarm takes labels: ``docs/scale-out.md``).
        store_quota: bytes the run may add to the store (uploads, tables, logs), e.g.
            ``"2Gi"`` (default 10 GiB); going over it ends the run ERROR naming it.
        log_cap: bytes of logs kept, the first and the last half (default ``"1Mi"``).
        open_uploads: uploads the run may hold open at once (default 16).
    """

    action = "job"

    def check(self, function: Function, runtime: Runtime, **settings: Any) -> JobSpec:
        return check_job(function, runtime, **settings)

    def detached_settings(self, spec: JobSpec, settings: dict[str, Any]) -> dict[str, Any] | None:
        """A container job nobody waits for goes to a supervisor process; a local one
        stays in its caller (it runs in this interpreter by definition), as does one on a
        launcher object (a name is what another process can find)."""
        if spec.local_execution or not isinstance(spec.launcher, str):
            return None
        return {**settings, "inputs": dict(spec.inputs)}

    def running_at_once(self, spec: JobSpec) -> str | None:
        """A local run's handler is called right after its record: RUNNING from the start."""
        return _attempt_message(1) if spec.local_execution else None

    def execute(self, function: Function, runtime: Runtime, record: Record, spec: JobSpec,
                execution: Execution) -> Cleanup:
        """The attempts, then the end recorded; the session to close (None if none)."""
        attempts: list[dict[str, Any]] = []
        outcome = _Outcome(ERROR)
        calls: HostCalls | None = None
        mask = masker(spec.secrets)
        log = run_log(runtime, record, spec.limits.log_cap, mask,
                      lambda size: calls.count_logs(size) if calls is not None else size)
        for attempt in range(1, spec.backoff_limit + 2):
            if attempt > 1 or record.state != RUNNING:  # else recorded so (running_at_once)
                record = transition(runtime, record, RUNNING, (READY, RUNNING),
                                    message=_attempt_message(attempt),
                                    logs=log_key(runtime, log))
            calls = HostCalls(runtime, function.project, record.id, record.document["key"],
                              spec.limits, mask)
            if attempt > 1:
                log.write(f"[pyhost] attempt {attempt} of {spec.backoff_limit + 1}\n")
            started = time.time()
            outcome = _attempt(runtime, record, function, spec, calls, execution, log)
            log.write(outcome.logs)  # what the reply carried: not streamed yet
            log.flush()
            attempts.append({"attempt": attempt, "started": started, "ended": time.time(),
                             "state": outcome.state, "error": outcome.error})
            if outcome.state != ERROR or execution.stop_requested:
                break
            if outcome.engine_lost and attempt <= spec.backoff_limit:
                _await_engine(spec, execution, log, attempt + 1)
        assert calls is not None  # at least one attempt ran
        try:
            # A local run's record is written by this thread alone until it ends (a session's
            # start is recorded by the launcher's callback: read it again).
            _finish(runtime, record, spec, calls, outcome, attempts, execution,
                    undecorated=not function.handler_info().outputs,
                    current=record if spec.local_execution else None)
        except BaseException:
            if outcome.session is not None:
                outcome.session.close()
            raise
        return outcome.session.close if outcome.session is not None else None


def _attempt_message(attempt: int) -> str:
    return f"attempt {attempt}"


@dataclass
class _Outcome:
    state: str
    answer: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None
    logs: str = ""
    container: str | None = None
    session: Session | None = None  # to close once the run is recorded (tens of ms)
    engine_lost: bool = False  # the engine went away (or did not answer) under the attempt


def _await_engine(spec: JobSpec, execution: Execution, log: RunLog, attempt: int) -> None:
    """Wait (up to :data:`ENGINE_WAIT`, a stop ends it) for the engine that went away to
    answer again, so the next attempt is not spent on an engine still restarting."""
    log.write(f"[pyhost] the engine went away; waiting up to {ENGINE_WAIT:g} s for it to "
              f"answer before attempt {attempt}\n")
    launcher = get_launcher(spec.launcher)
    deadline = time.monotonic() + ENGINE_WAIT
    while not execution.stop_requested and time.monotonic() < deadline:
        if launcher.wait_until_ready(min(1.0, deadline - time.monotonic())):
            return


def _attempt(runtime: Runtime, record: Record, function: Function, spec: JobSpec,
             calls: HostCalls, execution: Execution, log: RunLog) -> _Outcome:
    info = function.handler_info()
    job = {"files": function.source().files, "module": info.module,
           "function": info.function, "project": function.project, "run_id": record.id,
           "inputs": {name: calls.get_entity(parse_key(key).entity_type, key)
                      for name, key in spec.inputs.items()},
           "parameters": spec.parameters}
    try:
        if spec.local_execution:
            answer, logs = run_here(job, calls.dispatch, function.source_directory(),
                                    {**spec.envs, **spec.secrets})
            return _Outcome(COMPLETED, answer, logs=logs)

        def started(container_id: str | None) -> None:
            transition(runtime, runtime.get("run", record.id), RUNNING, RUNNING,
                       container=container_id)

        return _run_in_session(job, calls, spec, function, execution, started, log)
    except PythonError as exc:
        return _Outcome(ERROR, error={"type": exc.remote_type, "message": exc.remote_message,
                                      "traceback": exc.remote_traceback}, logs=exc.output)
    except PyHostError as exc:
        state = STOPPED if execution.stop_requested else ERROR
        lost = (isinstance(exc, SessionDied) and exc.engine_lost) or \
            isinstance(exc, EngineUnavailable)
        return _Outcome(state, error={"type": type(exc).__name__, "message": str(exc),
                                      "traceback": ""}, engine_lost=lost)
    finally:
        calls.abort_uploads()


def _run_in_session(job: dict[str, Any], calls: HostCalls, spec: JobSpec,
                    function: Function, execution: Execution,
                    started: Callable[[str | None], None], log: RunLog) -> _Outcome:
    # What the handler prints streams into the run's log as it runs; the reply carries
    # only what was not streamed yet.
    session = py(timeout=spec.timeout, output_cap=min(spec.limits.log_cap, HEAD),
                 **spec.session_options())
    grace = stop_grace()  # read now: a bad value fails the start, not the stop
    execution.stopper = lambda: session.kill(grace=grace)
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
                  .exec("from hxpy.runtime.job import run_job")
                  .eval("run_job(__job__)", on_output=log.write))
    except BaseException:
        session.close()
        raise
    return _Outcome(COMPLETED, answer, logs=session.last_output,
                    container=session.container_id, session=session)


def _finish(runtime: Runtime, record: Record, spec: JobSpec, calls: HostCalls,
            outcome: _Outcome, attempts: list[dict[str, Any]], execution: Execution,
            undecorated: bool = False, current: Record | None = None) -> None:
    mask = calls.mask
    state = STOPPED if execution.stop_requested else outcome.state
    changes: dict[str, Any] = {"attempts": attempts, "metrics": calls.metrics,
                               "produced": calls.produced, "consumed": calls.consumed}
    error = outcome.error
    if state == COMPLETED:
        try:
            answer, mapping = mask(outcome.answer), spec.outputs
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
    record_end(runtime, record.id, state, (RUNNING,), current=current, **changes)


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
