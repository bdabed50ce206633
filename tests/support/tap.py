"""A relay that counts the frames on the wire between the host and a server.

:class:`TappedLauncher` wraps another launcher: each server it starts is reached through a
Unix socket of the relay's, which passes the bytes on unchanged and counts the length-prefixed
frames going each way as they pass. A test then sees what really crossed the connection, not
what the session says it sent. Threads, no dependencies; tests only.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import threading
import time

from hxpy import wire
from pyhost.launchers.base import Endpoint, ExitStatus, Instance, Launcher, LaunchSpec


class FrameCounter:
    """Counts the frames in a byte stream fed to it in pieces of any size."""

    def __init__(self) -> None:
        self.frames = 0  # every frame, buffer frames included
        self.messages = 0  # frames without the buffer flag: one per message
        self._header = bytearray()
        self._body_left = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._body_left:
                step = min(self._body_left, len(view))
                self._body_left -= step
                view = view[step:]
                continue
            need = wire.HEADER.size - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == wire.HEADER.size:
                (size,) = wire.HEADER.unpack(self._header)
                self._header.clear()
                self.frames += 1
                if not size & wire.BUFFER_FLAG:
                    self.messages += 1
                self._body_left = size & ~wire.BUFFER_FLAG


class Tap:
    """Listens on a Unix socket of its own and relays one connection to ``upstream``."""

    def __init__(self, upstream: Endpoint, connect_timeout: float = 30.0) -> None:
        self.upstream = upstream
        self.connect_timeout = connect_timeout
        self.to_server = FrameCounter()
        self.to_host = FrameCounter()
        self._dir = tempfile.mkdtemp(prefix="hxtap-")
        self.path = os.path.join(self._dir, "tap.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, name="tap", daemon=True)]
        self._threads[0].start()

    def counts(self) -> tuple[int, int]:
        """Frames seen so far: (host to server, server to host)."""
        return self.to_server.frames, self.to_host.frames

    def close(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(5)
        for sock in [self._listener, *self._sockets]:
            sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _serve(self) -> None:
        try:
            host, _ = self._listener.accept()
        except OSError:
            return
        self._sockets.append(host)
        server = self._connect_upstream()
        if server is None:
            host.close()
            return
        self._sockets.append(server)
        for src, dst, counter in ((host, server, self.to_server),
                                  (server, host, self.to_host)):
            thread = threading.Thread(target=_pump, args=(src, dst, counter), name="tap-pump",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _connect_upstream(self) -> socket.socket | None:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.upstream.address))
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED) or self._closed or \
                        time.monotonic() > deadline:
                    return None
            time.sleep(0.005)


def _pump(src: socket.socket, dst: socket.socket, counter: FrameCounter) -> None:
    """Copy ``src`` to ``dst``, counting each frame BEFORE passing its bytes on: whoever
    reads the frame at the other end finds it already counted."""
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            counter.feed(data)
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class TappedInstance(Instance):
    """A server of the wrapped launcher, reached through a :class:`Tap`."""

    def __init__(self, inner: Instance, tap: Tap) -> None:
        self.inner = inner
        self.tap = tap
        self.id = inner.id
        self.endpoint = Endpoint("unix", tap.path)

    def poll(self) -> ExitStatus | None:
        return self.inner.poll()

    def wait(self, timeout: float) -> ExitStatus | None:
        return self.inner.wait(timeout)

    def kill(self) -> None:
        self.inner.kill()

    def cleanup(self) -> None:
        self.inner.cleanup()
        self.tap.close()


class TappedLauncher(Launcher):
    """Starts servers with ``inner`` (which must serve on a Unix socket) behind a Tap each."""

    name = "tapped"

    def __init__(self, inner: Launcher) -> None:
        self.inner = inner
        self.taps: list[Tap] = []

    def check(self, spec: LaunchSpec) -> None:
        self.inner.check(spec)

    def start(self, spec: LaunchSpec) -> TappedInstance:
        instance = self.inner.start(spec)
        assert instance.endpoint.kind == "unix", "the tap relays Unix sockets only"
        tap = Tap(instance.endpoint)
        self.taps.append(tap)
        return TappedInstance(instance, tap)
