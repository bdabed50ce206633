"""A launcher whose "server" is a thread speaking the protocol over a MemoryTransport: the
session, its conversation and the handshake run with no socket and no process at all.

The stub serves define/exec/eval against a dict, as the real server does, but without
timeouts or output capture: it is a test double, not a second server.
"""

from __future__ import annotations

import itertools
import threading
import traceback
from typing import Any

from hxpy import codec, protocol
from pyhost.launchers.base import ExitStatus, Instance, Launcher, LaunchSpec
from pyhost.session.transport import MemoryListener, MemoryTransport

_names = itertools.count()


class MemoryInstance(Instance):
    def __init__(self, spec: LaunchSpec) -> None:
        self.listener = MemoryListener(f"stub-{next(_names)}", spec.max_frame)
        self.id = self.listener.name
        self.endpoint = self.listener.endpoint
        self.key = spec.key
        self.batches = 0
        self._ended: ExitStatus | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def poll(self) -> ExitStatus | None:
        return self._ended

    def wait(self, timeout: float) -> ExitStatus | None:
        self._thread.join(timeout)
        return self._ended

    def kill(self) -> None:
        self.listener.close()
        if self._ended is None:
            self._ended = ExitStatus(137)

    def cleanup(self) -> None:
        self.kill()

    def _serve(self) -> None:
        conn = self.listener.accept(30)
        reason = protocol.check_hello(self._read(conn), self.key)
        if reason is not None:
            conn.send(codec.encode({"type": protocol.REFUSED, "reason": reason}))
            return
        conn.send(codec.encode({"type": protocol.WELCOME, "version": protocol.PROTOCOL_VERSION,
                                "stub": True}))
        namespace: dict[str, Any] = {}
        while self._ended is None:
            try:
                batch = self._read(conn)
            except Exception:  # the host closed: end as a server does
                self._ended = ExitStatus(0)
                return
            self.batches += 1
            conn.send(*self._run(namespace, batch))

    @staticmethod
    def _read(conn: MemoryTransport) -> Any:
        body, buffers = conn.recv(None)
        return codec.decode(body, buffers)

    @staticmethod
    def _run(namespace: dict[str, Any], batch: dict[str, Any]) -> tuple[bytes, list[Any]]:
        value = None
        try:
            for op in batch["ops"]:
                if op[0] == "define":
                    namespace[op[1]] = op[2]
                elif op[0] == "exec":
                    exec(op[1], namespace)
                else:
                    value = eval(op[1], namespace)
        except Exception as exc:
            return codec.encode({"type": protocol.ERROR, "id": batch["id"],
                                 "kind": protocol.KIND_PYTHON, "output": "",
                                 "error": protocol.error_info(exc, traceback.format_exc())}), []
        return codec.encode_parts({"type": protocol.RESULT, "id": batch["id"], "output": "",
                                   "truncated": False, "value": value}, where="result")


class MemoryLauncher(Launcher):
    name = "memory"

    def __init__(self) -> None:
        self.started: list[MemoryInstance] = []

    def start(self, spec: LaunchSpec) -> MemoryInstance:
        instance = MemoryInstance(spec)
        self.started.append(instance)
        return instance
