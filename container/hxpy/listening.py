"""The server's listening socket, made before anything else is imported.

``python -m hxpy`` listens first (see :mod:`hxpy.__main__`): importing the server takes about
half of its start (msgpack, threading, the server's modules), and a host that connects and
sends its hello meanwhile finds the hello waiting in the socket instead of retrying until the
imports are done. So this module imports only ``_socket`` and ``os``, which the interpreter
has loaded already.
"""

from __future__ import annotations

# _socket, not socket: hxpy.startup says why.
import _socket
import os

__all__ = ["DEFAULT_LISTEN", "listen"]

DEFAULT_LISTEN = "unix:/run/hxpy/hxpy.sock"


def listen(address: str) -> _socket.socket:
    """Bind and listen on ``unix:PATH`` or ``tcp:HOST:PORT``."""
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        if os.path.exists(rest):
            os.unlink(rest)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # only our uid (and root) may connect
        try:
            sock.bind(rest)
        finally:
            os.umask(old_umask)
    elif scheme == "tcp":
        host, _, port = rest.rpartition(":")
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", int(port)))
    else:
        raise ValueError(f"HXPY_LISTEN must be unix:PATH or tcp:HOST:PORT, not {address!r}")
    sock.listen(4)
    return sock
