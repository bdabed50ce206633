"""What the server reads once as it starts, before it serves: the session key (never from
the environment) and the secret files of a Swarm task. Re-exported by :mod:`hxpy.server`."""

from __future__ import annotations

import os

__all__ = ["MAX_KEY_BYTES", "load_secrets", "read_key"]

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
