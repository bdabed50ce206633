"""What the server does once as it starts, before it serves: read the session key (never
from the environment) and the secret files of a Swarm task, listen (:mod:`hxpy.listening`),
and read a new connection's hello within its deadline. Re-exported by :mod:`hxpy.server`."""

from __future__ import annotations

# _socket, not socket: socket.py turns its constants into enums at import (IntEnum._convert_,
# about 3 ms of CPU on a cold start) for names the server never shows. Of what its socket
# class adds to _socket's, the server would use accept() only: accept() below does the same.
import _socket
import os
import threading

from . import wire
from .listening import listen
from .pipes import FdCatcher

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see hxpy.server)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_KEY_BYTES", "accept", "listen", "listener_path", "load_secrets",
           "max_frame_for_hello", "read_hello", "read_key"]

MAX_KEY_BYTES = 4096  # a key line or file is a few dozen bytes: never read more


def load_secrets(directory: str) -> None:
    """Put each file of ``directory`` into the environment under its name: user code sees a
    secret the same way on every launcher."""
    if not directory:
        return
    for entry in sorted(os.scandir(directory), key=lambda found: found.name):
        if entry.name.isidentifier() and entry.is_file():
            with open(entry.path, "rb") as secret:
                os.environ[entry.name] = secret.read().decode("utf-8", "surrogateescape")


def read_key(source: str) -> str:
    """The session key from ``source`` (``HXPY_KEY_FROM``): ``stdin`` reads one line from
    standard input and leaves ``/dev/null`` there, ``file:PATH`` reads a file; "" when there
    is none."""
    if source == "stdin":
        data = b""
        while b"\n" not in data and len(data) < MAX_KEY_BYTES:
            chunk = os.read(0, MAX_KEY_BYTES - len(data))
            if not chunk:
                break
            data += chunk
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # user code reading stdin gets EOF, never the launcher's pipe
        os.close(null)
        return data.partition(b"\n")[0].decode("ascii", "replace").strip()
    if source.startswith("file:"):
        with open(source[len("file:"):], "rb") as key_file:
            return key_file.read(MAX_KEY_BYTES).decode("ascii", "replace").strip()
    return ""


def accept(listener: _socket.socket) -> _socket.socket:
    """The next connection to ``listener``, blocking."""
    fd, _ = listener._accept()  # type: ignore[attr-defined]  # what _socket.socket.accept calls
    return _socket.socket(fileno=fd)


def listener_path(listener: _socket.socket) -> str | None:
    try:
        name = listener.getsockname()
    except OSError:
        return None
    return name if isinstance(name, str) and name else None


def read_hello(conn: _socket.socket, max_frame: int, timeout: float,
               fds: FdCatcher | None = None) -> dict[str, Any]:
    """The first message of a new connection, which must come whole within ``timeout``
    seconds: a client that sends nothing, or a byte now and then, must not keep the real host
    from its server (a per-read timeout would not bound the latter). With ``fds``, the file
    descriptors sent with the hello are kept there (see :mod:`hxpy.pipes`).

    Raises:
        TimeoutError: the deadline passed.
        OSError, ValueError, codec.MarshalError: the connection or the frame is bad.
    """
    lock = threading.Lock()
    reading = [True]

    def expire() -> None:
        with lock:
            if reading[0]:
                reading[0] = False
                conn.shutdown(_socket.SHUT_RD)  # the blocked read returns: "closed"

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        return wire.recv_message(fds or conn, max_frame_for_hello(max_frame))  # type: ignore[arg-type]
    except wire.PeerClosed:
        with lock:
            if not reading[0]:
                raise TimeoutError(f"no hello within {timeout} s") from None
        raise
    finally:
        with lock:
            reading[0] = False
        timer.cancel()


def max_frame_for_hello(max_frame: int) -> int:
    """A hello is tiny: refuse large frames from clients that have not proven the key."""
    return min(max_frame, 64 * 1024)
