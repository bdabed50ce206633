"""open_server behind a port proxy that accepts before the server listens (as docker-proxy
does for a published port): a close before the welcome is retried, a refusal is final.

The real hxpy server runs as a local process on TCP; no Docker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace

import pytest

from pyhost.errors import ProtocolError
from pyhost.launchers.base import Endpoint, Launcher, LaunchSpec
from pyhost.launchers.process import HXPY_PATH, ProcessInstance
from pyhost.session.handshake import open_server


class EarlyClosingProxy:
    """Accepts every connection, then pipes it to ``target``, or closes it when ``target``
    does not listen (yet), as docker-proxy does. The first ``drop`` connections are closed
    at once, so the test does not depend on how fast the server starts."""

    def __init__(self, target: tuple[str, int], drop: int) -> None:
        self.target = target
        self.drop = drop
        self.connections = 0
        self.piped = 0  # connections that reached the server
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drop:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                conn.close()
                continue
            self.piped += 1
            for source, sink in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ProxiedInstance(ProcessInstance):
    """A local server reached through an :class:`EarlyClosingProxy`."""

    def __init__(self, proc: subprocess.Popen[bytes], proxy: EarlyClosingProxy,
                 tmp: str) -> None:
        super().__init__(proc, Endpoint("tcp", ("127.0.0.1", proxy.port)), tmp)
        self.proxy = proxy

    def cleanup(self) -> None:
        super().cleanup()
        self.proxy.close()


class ProxiedLauncher(Launcher):
    """Starts the server on a TCP port behind an :class:`EarlyClosingProxy`; ``server_key``
    overrides the key the server expects (to provoke a refusal)."""

    def __init__(self, drop: int, server_key: str | None = None) -> None:
        self.drop = drop
        self.server_key = server_key
        self.instances: list[ProxiedInstance] = []

    def start(self, spec: LaunchSpec) -> ProxiedInstance:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            port = probe.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": HXPY_PATH,
               "HXPY_KEY_FROM": "stdin", "HXPY_LISTEN": f"tcp:127.0.0.1:{port}"}
        proc = subprocess.Popen([sys.executable, "-m", "hxpy"], env=env,
                                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write((self.server_key or spec.key).encode() + b"\n")
        proc.stdin.close()
        instance = ProxiedInstance(proc, EarlyClosingProxy(("127.0.0.1", port), self.drop),
                                   tempfile.mkdtemp(prefix="hxpy-test-"))
        self.instances.append(instance)
        return instance


SPEC = LaunchSpec(session_id="proxytest", key="")


def test_connections_closed_before_the_welcome_are_retried():
    launcher = ProxiedLauncher(drop=3)
    opened = open_server(launcher, SPEC, 1 << 20, start_timeout=30)
    try:
        assert opened.server_info["type"] == "welcome"
        assert launcher.instances[0].proxy.connections >= 4
    finally:
        opened.transport.close()
        opened.instance.cleanup()


def test_a_refusal_is_final():
    launcher = ProxiedLauncher(drop=0, server_key="not-the-session-key")
    with pytest.raises(ProtocolError, match="wrong session key"):
        open_server(launcher, replace(SPEC), 1 << 20, start_timeout=30)
    instance = launcher.instances[0]
    # The server keeps listening after a refusal, so a retry would have reached it again.
    assert instance.proxy.piped == 1
    assert instance.poll() is not None  # open_server cleaned it up
