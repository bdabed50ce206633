"""The ``serve`` task: ``replicas`` long-running sessions serving the handler over HTTP,
supervised by this process (:mod:`.service`).

Everything that can be checked is checked before anything starts (:mod:`.serve_spec`). Then
the run is CREATED and READY, and RUNNING once every replica answers. A serve run outlives
its start, so this task starts its own way: the run is settled when its replicas end
(``run.stop()``, a failed start, or its supervisor's end), not when ``start`` returns. Its
supervisor is the caller when it waits (the default, as DigitalHub's), else a process of
its own (:mod:`.detached`), which serves until the run is stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..catalog import Record
from ..executions import Execution
from ..runs import Run, create_run
from .base import Task
from .detached import detach
from .serve_spec import ServeSpec, check_serve
from .service import Service

if TYPE_CHECKING:
    from ..context import Runtime
    from ..function import Function

__all__ = ["ServeTask"]


class ServeTask(Task[ServeSpec]):
    """``fn.run(action="serve", ...)``.

    Settings (see :func:`~.serve_spec.check_serve`):
        replicas: how many replicas (>= 1).
        service_type: ``"NodePort"`` (a published port per replica on ``address``),
            ``"ClusterIP"`` (on the engine network ``network`` only); ``"LoadBalancer"``
            needs the cluster launcher.
        port: host port of the first replica (replica i gets port + i); 0: any free port.
        address: the host address ports are published on (default 127.0.0.1).
        network: an engine network the replicas join (ClusterIP's, or Docker-in-Docker).
        init_function: ``name`` or ``module:name``, called once per replica as
            ``init_function(context, **init_parameters)`` (default: the function's field).
        init_parameters: its keyword arguments.
        workers: threads per replica the handler runs in.
        wait: return once every replica answers (default True), else at once.
        ready_timeout: seconds the replicas have to start answering (default 120), waited
            for or not; past it the run ends ERROR and every replica is removed.
        launcher, envs, secrets, resources, volumes, node_selector, affinity, tolerations,
            store_quota, log_cap, open_uploads: as for a job.
    """

    action = "serve"

    def check(self, function: Function, runtime: Runtime, **settings: Any) -> ServeSpec:
        return check_serve(function, **settings)

    def start(self, function: Function, runtime: Runtime, *, wait: bool = True,
              **settings: Any) -> Run:
        """Check everything, record the run, start the replicas; with ``wait`` (the default)
        the run once every replica answers (RUNNING), or once the start failed or took
        longer than ``ready_timeout`` (ERROR, ``status.error`` names the replicas that did
        not come up, with their last log lines; every replica removed). Without ``wait``,
        the run at once (READY; RUNNING once every replica answers, see :meth:`Run.wait`).

        Raises:
            ConfigurationError: a bad setting; raised before anything starts.
        """
        self._check_wait(wait)
        spec = self.check(function, runtime, **settings)
        record = create_run(runtime, function, self.action, spec.record())
        handed = None if wait else self.detached_settings(spec, settings)
        if handed is not None and detach(runtime, record, self.action, handed):
            return Run(record, runtime)
        service = Service(runtime, record, function, spec)
        service.start()
        if not wait:
            return Run(runtime.get("run", record.id), runtime)
        return Run(service.wait_ready(), runtime)

    def detached_settings(self, spec: ServeSpec,
                          settings: dict[str, Any]) -> dict[str, Any] | None:
        """A service nobody waits for is supervised by a process of its own, which serves
        until it is stopped (a launcher object stays in its caller)."""
        return settings if isinstance(spec.launcher, str) else None

    def supervise(self, function: Function, runtime: Runtime, record: Record,
                  spec: ServeSpec, execution: Execution) -> None:
        service = Service(runtime, record, function, spec, execution)
        service.start()
        service.wait_ended()
