"""Containers the benchmarks make for their baselines, and the labels on every one of them.

Everything here talks to the engine through the docker SDK only. Every container made by a
benchmark run - the baselines made here and the session containers pyhost makes for the
runner (see :class:`LabellingClient`) - carries ``org.pyhost.bench=1`` and the run's id, and
:meth:`Fleet.remove_all` force-removes exactly those at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import time
from typing import Any

import docker
import docker.errors
import msgpack

from hxpy import wire
from hxpy.pipes import Pipes, host_pipes

__all__ = ["BENCH_LABEL", "EchoServer", "Fleet", "LabellingClient", "MinimalEval",
           "PollingEcho", "echo_once"]

BENCH_LABEL = "org.pyhost.bench"
RUN_LABEL = "org.pyhost.bench.run"
SANDBOX_UID = 1000

# The echo server for the raw-socket floors. Each connection, served by its own thread, starts
# with a mode byte and a number:
# - b"B" + a block size: the blocking echo. Each block the client sends comes back whole,
#   read with plain blocking recv calls (the simplest server). Reading the whole block before
#   answering is what the session server does with a frame, and it cannot deadlock on a block
#   larger than the socket buffers.
# - b"P" + a spin in nanoseconds: the polling echo. Both ends frame with hxpy.wire and read with
#   its FrameReader polling for up to that spin, exactly as a session's two ends do; only the
#   work between reading and answering is missing.
# - b"Q" + a spin, with two pipe ends attached (SCM_RIGHTS): the polling echo over the pipes
#   a blocking session talks through (hxpy.pipes).
# - b"E" + a spin, with two pipe ends attached: the least a Python session server can do for
#   define("x", i).eval("x"), in a process of its own as a session's server is: poll for a
#   frame, unpack [name, value, expression] with msgpack, bind, evaluate a cached code object,
#   send the packed value back. No ids, errors, output capture or timeouts.
# Deliberately minimal: these are the floors pyhost is held to.
ECHO_SERVER = r"""
import os, signal, socket, struct, sys, threading

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps mode E's servers

def blocking(conn, size):
    block = bytearray(size)
    view = memoryview(block)
    while True:
        got = 0
        while got < size:
            n = conn.recv_into(view[got:], size - got)
            if not n:
                return
            got += n
        conn.sendall(block)

def polling(conn, spin):
    from hxpy import wire
    reader = wire.FrameReader(conn, spin=spin)
    while True:
        try:
            body, _ = reader.read()
        except wire.PeerClosed:
            return
        wire.send(conn, body)

def serve(conn):
    with conn:
        head, fds, _, _ = socket.recv_fds(conn, 5, 2, socket.MSG_WAITALL)
        if len(head) == 5:
            mode, value = struct.unpack(">cI", head)
            if mode == b"E" and len(fds) == 2:  # a process of its own, as a session's is
                import subprocess
                subprocess.Popen([sys.executable, os.path.join(os.path.dirname(path),
                                                               "minimal_eval.py"),
                                  *map(str, fds), str(value)], pass_fds=fds)
                for fd in fds:
                    os.close(fd)
            elif mode == b"B":
                blocking(conn, value)
            elif mode == b"P":
                polling(conn, value / 1e9)
            elif mode == b"Q" and len(fds) == 2:
                from hxpy.pipes import Pipes
                pipes = Pipes(*fds)
                try:
                    polling(pipes, value / 1e9)
                finally:
                    pipes.close()

path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".tmp")
listener.listen(4)
os.rename(path + ".tmp", path)  # the path appears only once connecting works
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
# Mode E's server, started per connection with the two pipe fds and the spin (ns) as arguments.
MINIMAL_EVAL_SERVER = r"""
import sys
import msgpack
from hxpy import wire
from hxpy.pipes import Pipes

pipes = Pipes(int(sys.argv[1]), int(sys.argv[2]))
reader = wire.FrameReader(pipes, spin=int(sys.argv[3]) / 1e9)
namespace, compiled = {}, {}
while True:
    try:
        body, _ = reader.read()
    except wire.PeerClosed:
        break
    name, value, expression = msgpack.unpackb(body)
    namespace[name] = value
    code = compiled.get(expression)
    if code is None:
        code = compiled[expression] = compile(expression, "<eval>", "eval")
    wire.send(pipes, msgpack.packb(eval(code, namespace)))
"""
_HEAD = struct.Struct(">cI")

SOCKET_DIR_IN_CONTAINER = "/bench"
SOCKET_NAME = "echo.sock"


def sandbox_user() -> tuple[int, int]:
    """uid 1000 when we are root (we chown what it must write), else ourselves."""
    if os.getuid() == 0:
        return SANDBOX_UID, SANDBOX_UID
    return os.getuid(), os.getgid()


class Fleet:
    """Creates labelled containers and removes them, and only them, at the end."""

    def __init__(self, client: docker.DockerClient, run_id: str) -> None:
        self.client = client
        self.labels = {BENCH_LABEL: "1", RUN_LABEL: run_id}
        self._made: list[str] = []

    def create(self, image: str, **kwargs: Any) -> str:
        """``client.api.create_container`` with our labels; returns the id."""
        labels = {**(kwargs.pop("labels", None) or {}), **self.labels}
        container_id = str(self.client.api.create_container(image, labels=labels,
                                                            **kwargs)["Id"])
        self._made.append(container_id)
        return container_id

    def remove(self, container_id: str) -> None:
        """Force-remove one container this fleet made."""
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        if container_id in self._made:
            self._made.remove(container_id)

    def remove_all(self) -> int:
        """Force-remove what this run made and is still there; returns how many.

        Also finds session containers pyhost made for us (labelled by
        :class:`LabellingClient`) that a failed close left behind: they carry this run's id.
        """
        found = {str(info["Id"]) for info in self.client.api.containers(
            all=True, filters={"label": f"{RUN_LABEL}={self.labels[RUN_LABEL]}"})}
        leftovers = found | set(self._made)
        for container_id in leftovers:
            try:
                self.remove(container_id)
            except docker.errors.APIError:
                pass  # removal already in progress (a session closing at the same time)
        return len(found)

    def time_bare_start(self, image: str) -> float:
        """Seconds to create and start a bare container of ``image``; removal is not timed.

        ``sleep infinity`` as uid 1000 with network ``none``, like a session container, so
        the difference to a session start is pyhost's own work plus the server's start-up.
        """
        api = self.client.api
        host_config = api.create_host_config(network_mode="none")
        uid, gid = sandbox_user()
        started = time.perf_counter()
        container_id = self.create(image, entrypoint=["sleep", "infinity"], user=f"{uid}:{gid}",
                                   host_config=host_config)
        try:
            api.start(container_id)
            elapsed = time.perf_counter() - started
        finally:
            self.remove(container_id)
        return elapsed


class LabellingClient:
    """A docker client that adds the run's labels to every container created through it.

    Given to a :class:`pyhost.launchers.docker.launcher.DockerLauncher`, so the session containers a
    benchmark opens carry the bench labels too. Everything else is the wrapped client's.
    """

    def __init__(self, client: docker.DockerClient, labels: dict[str, str]) -> None:
        self._client = client
        self.api = _LabellingAPI(client.api, labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _LabellingAPI:
    def __init__(self, api: Any, labels: dict[str, str]) -> None:
        self._api = api
        self._labels = labels

    def create_container(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["labels"] = {**(kwargs.get("labels") or {}), **self._labels}
        return self._api.create_container(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


class EchoServer:
    """A container of the session image running :data:`ECHO_SERVER` on a bind-mounted socket."""

    def __init__(self, fleet: Fleet, image: str, start_timeout: float = 30.0) -> None:
        self.fleet = fleet
        self.socket_dir = tempfile.mkdtemp(prefix="pyhost-bench-")
        self.container_id: str | None = None
        try:
            os.chmod(self.socket_dir, 0o700)
            with open(os.path.join(self.socket_dir, "minimal_eval.py"), "w") as file:
                file.write(MINIMAL_EVAL_SERVER)
            uid, gid = sandbox_user()
            if os.getuid() == 0:
                os.chown(self.socket_dir, uid, gid)
            api = fleet.client.api
            host_config = api.create_host_config(
                network_mode="none",
                mounts=[docker.types.Mount(SOCKET_DIR_IN_CONTAINER, self.socket_dir,
                                           type="bind")],
            )
            self.container_id = fleet.create(
                image, entrypoint=["python3", "-c", ECHO_SERVER,
                                   f"{SOCKET_DIR_IN_CONTAINER}/{SOCKET_NAME}"],
                user=f"{uid}:{gid}", host_config=host_config)
            api.start(self.container_id)
            self._wait_listening(start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        return os.path.join(self.socket_dir, SOCKET_NAME)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the echo server did not listen within {timeout} s")
            state = self.fleet.client.api.inspect_container(self.container_id)["State"]
            if not state.get("Running"):
                logs = self.fleet.client.api.logs(self.container_id, tail=20)
                raise RuntimeError(f"the echo server exited: {logs.decode(errors='replace')}")
            time.sleep(0.01)

    def connect(self, block_size: int) -> socket.socket:
        """A connection that echoes blocks of ``block_size`` bytes, read with blocking calls
        (see :func:`echo_once`)."""
        return self._connect(b"B", block_size)

    def connect_polling(self, spin: float, pipes: bool = False) -> PollingEcho:
        """A connection echoing ``hxpy.wire`` frames, both ends polling for up to ``spin``
        seconds before they sleep, as a session's ends do; with ``pipes``, over two pipes
        as a blocking session's messages go (:mod:`hxpy.pipes`)."""
        if not pipes:
            return PollingEcho(self._connect(b"P", round(spin * 1e9)), spin)
        return PollingEcho(*self._connect_with_pipes(b"Q", spin))

    def connect_minimal_eval(self, spin: float) -> MinimalEval:
        """A connection to the least a session server can be (mode ``E`` above), over
        pipes, polling for up to ``spin`` seconds on both ends."""
        return MinimalEval(*self._connect_with_pipes(b"E", spin))

    def _connect_with_pipes(self, mode: bytes, spin: float) -> tuple[socket.socket, float,
                                                                      Pipes]:
        """A connection in ``mode`` given the server's ends of two pipes; the socket, the
        spin and our ends."""
        made = host_pipes()
        if made is None:
            raise OSError("pipes cannot be read without blocking here (Linux 5.8+)")
        local, theirs = made
        try:
            sock = self._connect(mode, round(spin * 1e9), theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        return sock, spin, local

    def _connect(self, mode: bytes, value: int, fds: list[int] | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        if fds:
            socket.send_fds(sock, [_HEAD.pack(mode, value)], fds)
        else:
            sock.sendall(_HEAD.pack(mode, value))
        return sock

    def close(self) -> None:
        if self.container_id is not None:
            self.fleet.remove(self.container_id)
            self.container_id = None
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def echo_once(sock: socket.socket, block: bytes, into: memoryview) -> None:
    """Send ``block`` and read it back into ``into`` (which has its length)."""
    sock.sendall(block)
    size = len(into)
    got = 0
    while got < size:
        n = sock.recv_into(into[got:], size - got)
        if not n:
            raise ConnectionError("the echo server closed the connection")
        got += n


class PollingEcho:
    """The host end of the polling echo: ``hxpy.wire`` framing and a
    :class:`~hxpy.wire.FrameReader` with the same ``spin`` as the server's end."""

    def __init__(self, sock: socket.socket, spin: float, pipes: Pipes | None = None) -> None:
        self.sock = sock
        self.pipes = pipes
        self.channel: Any = pipes if pipes is not None else sock  # where the frames go
        self.reader = wire.FrameReader(self.channel, spin=spin)  # type: ignore[arg-type]

    def roundtrip(self, body: bytes) -> None:
        """Send ``body`` as one frame and read its echo."""
        wire.send(self.channel, body)
        echoed, _ = self.reader.read()
        if len(echoed) != len(body):
            raise ConnectionError(f"the echo server sent {len(echoed)} bytes, not {len(body)}")

    def close(self) -> None:
        self.sock.close()
        if self.pipes is not None:
            self.pipes.close()


class MinimalEval(PollingEcho):
    """The host end of the least a session can do for ``define("x", i).eval("x")``: one
    msgpack message each way over pipes, read as a session's are."""

    def eval_define(self, value: int) -> Any:
        """Bind ``x`` to ``value`` in the server, evaluate ``x`` there, return the result."""
        wire.send(self.channel, msgpack.packb(["x", value, "x"]))
        body, _ = self.reader.read()
        return msgpack.unpackb(body)
