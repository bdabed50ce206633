"""Speaking to a server with a bare socket, to test its side of the contract."""

from __future__ import annotations

import socket

from pyhost.launchers.base import Instance, Launcher, LaunchSpec
from pyhost.session.transport import SocketTransport, connect


def start_raw(launcher: Launcher, key: str, **spec: object) -> tuple[Instance, socket.socket]:
    """Start a server with ``key`` and return it with a connected, not yet greeted socket."""
    import time

    instance = launcher.start(LaunchSpec(session_id="rawtest", key=key, max_frame=1 << 20,
                                         **spec))  # type: ignore[arg-type]
    transport: SocketTransport = connect(instance.endpoint, time.monotonic() + 30,
                                         lambda: instance.poll() is None)
    return instance, transport.sock
