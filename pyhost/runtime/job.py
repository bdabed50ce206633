"""The ``job`` task: run a function's handler once, in a sandboxed session (or, with
``local_execution=True``, in this process), and record what came of it.

Everything that can be checked is checked before anything starts: the settings, the
arguments against the handler's signature (read from its source), the inputs against the
catalog. Then the run is CREATED and READY; RUNNING while the handler runs; COMPLETED with
its results and outputs, ERROR with the user's own exception and traceback (after
``backoff_limit`` more attempts), or STOPPED.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hxpy.runtime.job import RESERVED, run_job

from ..api import py
from ..errors import ConfigurationError, PyHostError, PythonError
from ..launchers import get_launcher
from ..launchers.base import LaunchSpec, Volume
from ..launchers.ownership import Owner
from .catalog import Record, StaleState
from .entities import Entity, EntityKey, check_name, new_id, parse_key
from .host_calls import HostCalls
from .runs import (
    ACTIVE,
    COMPLETED,
    CREATED,
    ERROR,
    READY,
    RUNNING,
    STOPPED,
    Run,
    executing,
    finished,
    transition,
)
from .sources import PYTHON_VERSIONS, HandlerInfo
from .values import to_json

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["VOLUME_TYPES", "JobSettings", "parse_resources", "parse_volumes", "start_job"]

log = logging.getLogger("pyhost.runtime")

_SERVE_ONLY = ("context", "event", "events")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_MEMORY_FACTORS = {None: 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
                   "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


@dataclass
class JobSettings:
    """A job's task settings, checked (see :func:`start_job`)."""

    inputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # name -> value: never recorded
    cpus: float | None = None
    mem_limit: int | None = None
    volumes: tuple[Volume, ...] = ()
    backoff_limit: int = 0
    timeout: float | None = None
    launcher: Any = "docker"
    local_execution: bool = False
    placement: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the run's spec records: everything but secret values."""
        return {
            "inputs": self.inputs, "parameters": {k: to_json(v) for k, v in
                                                  self.parameters.items()},
            "outputs": self.outputs,
            "envs": [{"name": k, "value": v} for k, v in self.envs.items()],
            "secrets": sorted(self.secrets), "resources": {"cpu": self.cpus,
                                                           "memory": self.mem_limit},
            "volumes": [dataclasses.asdict(volume) for volume in self.volumes],
            "backoff_limit": self.backoff_limit, "timeout": self.timeout,
            "local_execution": self.local_execution,
            "launcher": self.launcher if isinstance(self.launcher, str) else
            type(self.launcher).__name__, **self.placement,
        }


def start_job(function: Function, runtime: Runtime, *, inputs: dict[str, Any] | None = None,
              parameters: dict[str, Any] | None = None, outputs: dict[str, str] | None = None,
              wait: bool = False, local_execution: bool = False, launcher: Any = "docker",
              envs: list[dict[str, str]] | None = None, secrets: list[str] | None = None,
              resources: dict[str, Any] | None = None,
              volumes: list[dict[str, Any]] | None = None, backoff_limit: int = 0,
              timeout: float | None = None, node_selector: Any = None, affinity: Any = None,
              tolerations: Any = None, **unknown: Any) -> Run:
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

    Raises:
        ConfigurationError: an unknown setting, a malformed one, or arguments that do not
            fit the handler (the message names the argument); nothing has started.
        NotInCatalog: an input names no entity.
    """
    if unknown:
        raise ConfigurationError(f"fn.run(): unknown setting(s) {', '.join(sorted(unknown))}")
    info = function.handler_info()
    settings = JobSettings(
        inputs=_check_inputs(runtime, function.project, inputs or {}),
        parameters=_check_parameters(parameters or {}),
        outputs=_check_outputs(outputs or {}, info),
        envs=_check_envs(envs or []), secrets=_resolve_secrets(secrets or []),
        volumes=parse_volumes(volumes or []),
        backoff_limit=_check_count("backoff_limit", backoff_limit),
        timeout=timeout, launcher=launcher, local_execution=bool(local_execution),
        placement={"node_selector": node_selector, "affinity": affinity,
                   "tolerations": tolerations})
    settings.cpus, settings.mem_limit = parse_resources(resources or {})
    if settings.volumes:
        if settings.local_execution:
            raise ConfigurationError("volumes: a local run has no container to mount them in")
        get_launcher(settings.launcher).check(LaunchSpec("check", volumes=settings.volumes))
    _check_signature(info, settings)
    _check_python_version(function, settings)
    record = _create_run(runtime, function, settings)
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


# -- checks, before anything starts --------------------------------------------------------

def _check_inputs(runtime: Runtime, project: str, inputs: dict[str, Any]) -> dict[str, str]:
    checked = {}
    for name, value in _mapping("inputs", inputs).items():
        key = value.key if isinstance(value, Entity) else value
        if not isinstance(key, str):
            raise ConfigurationError(f"input {name!r}: an entity key (store://...) or an "
                                     f"entity, not {type(value).__name__}")
        parts = parse_key(key)
        if parts.project != project:
            raise ConfigurationError(f"input {name!r}: {key} is of project {parts.project!r}, "
                                     f"not {project!r}")
        if parts.entity_type not in ("artifact", "dataitem", "model"):
            raise ConfigurationError(f"input {name!r}: {key} is a {parts.entity_type}; inputs "
                                     "are artifacts, dataitems or models")
        record = (runtime.get(parts.entity_type, parts.id) if parts.id
                  else runtime.latest(parts.entity_type, project, parts.name))
        checked[name] = str(record.document["key"])
    return checked


def _check_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    for name, value in _mapping("parameters", parameters).items():
        try:
            to_json(value)
        except Exception as exc:
            raise ConfigurationError(f"parameter {name!r}: {exc}") from None
    return dict(parameters)


def _check_outputs(outputs: dict[str, str], info: HandlerInfo) -> dict[str, str]:
    declared = info.outputs or (("result",) if info.params is not None else None)
    for name, entity_name in _mapping("outputs", outputs).items():
        if declared is not None and name not in declared:
            raise ConfigurationError(f"outputs: the handler has no output {name!r} (its "
                                     f"outputs are {', '.join(declared)})")
        check_name(f"output {name!r} ->", entity_name)
    return dict(outputs)


def _check_signature(info: HandlerInfo, settings: JobSettings) -> None:
    if info.params is None:
        return  # not a plain def: the container checks the call
    names = {param.name for param in info.params}
    for param in info.params:
        if param.name in _SERVE_ONLY:
            raise ConfigurationError(f"argument {param.name!r}: a job gives its handler "
                                     "project, run, inputs and parameters; context and "
                                     "event(s) are for serve handlers")
        given = (param.name in settings.inputs or param.name in settings.parameters
                 or param.name in RESERVED)
        if param.required and not given:
            raise ConfigurationError(f"argument {param.name!r} of {info.function}() has no "
                                     "value: give it in inputs or parameters")
    for where in ("inputs", "parameters"):
        extra = sorted(set(getattr(settings, where)) - names)
        if extra and not info.takes_kwargs:
            raise ConfigurationError(f"{where}: {info.function}() takes no argument "
                                     f"{', '.join(map(repr, extra))} (it takes "
                                     f"{', '.join(sorted(names)) or 'none'})")
    both = sorted(set(settings.inputs) & set(settings.parameters))
    if both:
        raise ConfigurationError(f"{', '.join(both)}: given both as input and as parameter")


def _check_python_version(function: Function, settings: JobSettings) -> None:
    """Refuse a python_version the run's Python is not, where that is known before a start
    (this interpreter for a local run; the launcher's answer otherwise). A container whose
    Python the launcher could not tell is checked when it starts (:func:`_run_in_session`)."""
    wanted = PYTHON_VERSIONS[function.spec["python_version"]]
    if settings.local_execution:
        have: str | None = f"{sys.version_info.major}.{sys.version_info.minor}"
        where = "this process runs"
    else:
        have = get_launcher(settings.launcher).python_version(function.spec.get("image"))
        where = f"the session image {function.spec.get('image') or '(default)'} has"
    if have is not None and have != wanted:
        raise ConfigurationError(
            f"python_version={function.spec['python_version']!r}: {where} Python {have}; "
            f"pass image= of an image with Python {wanted} and the hxpy server, or use "
            f"PYTHON{have.replace('.', '_')}")


def _check_envs(envs: list[dict[str, str]]) -> dict[str, str]:
    checked = {}
    for entry in envs if isinstance(envs, list) else [envs]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("value"), str)):
            raise ConfigurationError(f"envs: each entry is {{'name': str, 'value': str}}, not "
                                     f"{entry!r}")
        checked[entry["name"]] = entry["value"]
    return checked


def _resolve_secrets(names: list[str]) -> dict[str, str]:
    """The values of ``names``: from ``$PYHOST_SECRETS_DIR/<name>`` (a file per secret, as
    Docker and Kubernetes mount them) when that directory is set and holds it, else from
    this process's environment.

    Raises:
        ConfigurationError: a secret is found in neither (its value is never in a message).
    """
    directory = os.environ.get("PYHOST_SECRETS_DIR")
    values = {}
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigurationError(f"secret {name!r}: a secret is named like an "
                                     "environment variable")
        path = os.path.join(directory, name) if directory else ""
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                values[name] = handle.read().rstrip("\n")
        elif name in os.environ:
            values[name] = os.environ[name]
        else:
            where = f"{directory} nor " if directory else ""
            raise ConfigurationError(f"secret {name!r} is set in neither {where}this "
                                     "process's environment")
    return values


def parse_resources(resources: dict[str, Any]) -> tuple[float | None, int | None]:
    """``(cpus, memory bytes)`` from ``{"cpu": "500m" | 1.5, "memory": "512Mi"}``.

    Raises:
        ConfigurationError: an unknown resource or a malformed quantity.
    """
    unknown = sorted(set(_mapping("resources", resources)) - {"cpu", "memory"})
    if unknown:
        raise ConfigurationError(f"resources: unknown {', '.join(unknown)}; give cpu and "
                                 "memory")
    cpus = memory = None
    cpu = resources.get("cpu")
    if cpu is not None:
        try:
            cpus = float(cpu[:-1]) / 1000 if isinstance(cpu, str) and cpu.endswith("m") \
                else float(cpu)
        except ValueError:
            cpus = -1.0
        if isinstance(cpu, bool) or not cpus or cpus <= 0:
            raise ConfigurationError(f"resources.cpu={cpu!r}: a positive number of CPUs, or "
                                     "millicpus like '500m'")
    quantity = resources.get("memory")
    if quantity is not None:
        match = _MEMORY.match(str(quantity)) if not isinstance(quantity, bool) else None
        if match is None or float(match[1]) <= 0:
            raise ConfigurationError(f"resources.memory={quantity!r}: a size like '512Mi', "
                                     "'1Gi' or a number of bytes")
        memory = int(float(match[1]) * _MEMORY_FACTORS[match[2]])
        if memory < 6 * 1024**2:
            raise ConfigurationError(f"resources.memory={quantity!r}: at least 6Mi")
    return cpus, memory


VOLUME_TYPES = ("persistent_volume_claim", "empty_dir")


def parse_volumes(volumes: list[dict[str, Any]]) -> tuple[Volume, ...]:
    """Engine mounts for DigitalHub volume specs (see :func:`start_job`).

    Raises:
        ConfigurationError: a malformed spec or an unknown ``volume_type``.
    """
    parsed = []
    for entry in volumes if isinstance(volumes, list) else [volumes]:
        if not isinstance(entry, dict) or not isinstance(entry.get("mount_path"), str):
            raise ConfigurationError(f"volumes: each is a dict with volume_type, name and "
                                     f"mount_path, not {entry!r}")
        kind, target = entry.get("volume_type"), entry["mount_path"]
        if kind == "persistent_volume_claim":
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"volume at {target!r}: name the volume")
            parsed.append(Volume("volume", target, name, bool(entry.get("read_only", True))))
        elif kind == "empty_dir":
            size = (entry.get("spec") or {}).get("size_limit")
            _, size_bytes = parse_resources({"memory": size}) if size is not None else (0, 0)
            parsed.append(Volume("tmpfs", target, read_only=False,
                                 size=str(size_bytes) if size_bytes else None))
        else:
            raise ConfigurationError(f"volume at {target!r}: volume_type={kind!r}; the types "
                                     f"are {', '.join(VOLUME_TYPES)}")
    return tuple(parsed)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")
    return value


def _mapping(what: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ConfigurationError(f"{what} must be a dict with str keys, not {value!r}")
    return value


# -- recording and executing ---------------------------------------------------------------

def _create_run(runtime: Runtime, function: Function, settings: JobSettings) -> Record:
    run_id = new_id()
    now = time.time()
    document = {
        "entity_type": "run", "project": function.project, "name": run_id,
        "kind": "python+job", "id": run_id,
        "key": str(EntityKey(function.project, "run", "python+job", run_id, None)),
        "metadata": {"created": now, "updated": now,
                     "owner": Owner.current().labels(run_id)},
        "spec": {"function": function.key, "function_id": function.id, "action": "job",
                 **settings.record()},
        "status": {"state": CREATED, "timings": {CREATED: now}, "attempts": []},
    }
    record = runtime.add(Record("run", function.project, run_id, run_id, "python+job", now,
                                now, CREATED, document))
    return transition(runtime, record, READY, CREATED)


def _execute(runtime: Runtime, record: Record, function: Function, info: HandlerInfo,
             settings: JobSettings, execution: Any) -> Any:
    """Run the attempts and record the end; the session still to close (None if none)."""
    session = None
    try:
        attempts: list[dict[str, Any]] = []
        for attempt in range(1, settings.backoff_limit + 2):
            record = transition(runtime, record, RUNNING, (READY, RUNNING),
                                message=f"attempt {attempt}")
            calls = HostCalls(runtime, function.project, record.id, record.document["key"])
            started = time.time()
            outcome = _attempt(runtime, record, function, info, settings, calls, execution)
            session = outcome.session
            attempts.append({"attempt": attempt, "started": started, "ended": time.time(),
                             "state": outcome.state, "error": outcome.error})
            if outcome.state != ERROR or execution.stop_requested:
                break
        _finish(runtime, record, settings, calls, outcome, attempts, execution)
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
    image = function.spec.get("image")
    session = py(launcher=settings.launcher, io=None, timeout=settings.timeout,
                 env={**settings.envs, **settings.secrets}, image=image,
                 mem_limit=settings.mem_limit or "1g", cpus=settings.cpus,
                 volumes=settings.volumes)
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
        job = {**job, "python": PYTHON_VERSIONS[function.spec["python_version"]]}
        answer = (session.define("__job__", job)
                  .exec("from hxpy.runtime.job import run_job").eval("run_job(__job__)"))
    except BaseException:
        session.close()
        raise
    return _Outcome(COMPLETED, answer, logs=session.last_output,
                    container=session.container_id, session=session)


def _finish(runtime: Runtime, record: Record, settings: JobSettings, calls: HostCalls,
            outcome: _Outcome, attempts: list[dict[str, Any]], execution: Any) -> None:
    mask = _masker(settings.secrets)
    state = STOPPED if execution.stop_requested else outcome.state
    changes: dict[str, Any] = {"attempts": attempts, "metrics": calls.metrics,
                               "produced": calls.produced, "consumed": calls.consumed,
                               "logs": _save_logs(runtime, record, mask(outcome.logs))}
    if state == COMPLETED:
        results, outputs = _record_outputs(calls, outcome.answer, settings.outputs)
        changes.update(results=results, outputs=outputs, message="completed")
    elif state == ERROR and outcome.error:
        error = {key: mask(value) for key, value in outcome.error.items()}
        changes.update(error=error, message=f"{error['type']}: {error['message']}")
    else:
        changes.update(message="stopped")
    for attempt in attempts:
        if attempt["error"]:
            attempt["error"] = {key: mask(value) for key, value in attempt["error"].items()}
    transition(runtime, runtime.get("run", record.id), state, (RUNNING,), **changes)


def _record_outputs(calls: HostCalls, answer: dict[str, Any],
                    mapping: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    results = {name: to_json(value) for name, value in (answer.get("results") or {}).items()}
    outputs: dict[str, str] = {}
    for name, table in (answer.get("tables") or {}).items():
        document = calls.log_table(mapping.get(name, name), table)
        outputs[mapping.get(name, name)] = results[name] = document["key"]
    for name, key in (answer.get("entities") or {}).items():
        outputs[mapping.get(name, name)] = results[name] = key
    return results, outputs


def _save_logs(runtime: Runtime, record: Record, text: str) -> str | None:
    if not text:
        return None
    directory = runtime.store.path(record.project, "run", record.id, "logs")
    path = directory / "logs.txt"
    path.write_text(text)
    return str(os.path.relpath(path, runtime.store.root))


def _masker(secrets: dict[str, str]) -> Any:
    """Replace each secret value in a text by ``***``."""
    values = sorted((value for value in secrets.values() if value), key=len, reverse=True)

    def mask(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for value in values:
            text = text.replace(value, "***")
        return text

    return mask


