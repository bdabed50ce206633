"""A loopback TCP port that forwards to a Unix socket, so the local engine looks remote.

``DOCKER_HOST=tcp://127.0.0.1:<port>`` then reaches the engine the way a remote engine is
reached: over TCP, with no shared paths assumed. Threads, no dependencies; tests only.
"""

from __future__ import annotations

import socket
import threading


class UnixForwarder:
    """Listens on 127.0.0.1:<free port>; each connection is piped to ``unix_path``."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="forwarder", daemon=True)

    def __enter__(self) -> UnixForwarder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _shut(sock)
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                engine.connect(self.unix_path)
            except OSError:
                client.close()
                engine.close()
                continue
            with self._lock:
                self._open.update((client, engine))
            ended: list[socket.socket] = []  # directions finished, guarded by self._lock
            for source, target in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(source, target, ended),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket,
              ended: list[socket.socket]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        _shut(target, socket.SHUT_WR)  # pass the half-close on, as a proxy should
        with self._lock:
            ended.append(source)
            last = len(ended) == 2  # the other direction ended first: close both
            if last:
                self._open.difference_update((source, target))
        if last:
            source.close()
            target.close()


def _shut(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
