"""``pyhost console``: the catalog and store of a home in the browser (projects, functions,
runs with their live logs, metrics and results, dataitems' first rows, files), served by
uvicorn from server-rendered pages. Read-only but for one action: stopping a run.

See :mod:`.app` for who may use it, and ``docs/console.md``.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from pathlib import Path

from ..runtime import Runtime
from .app import create_app, is_loopback
from .state import Console

__all__ = ["BackgroundConsole", "Console", "create_app", "serve"]


def serve(host: str = "127.0.0.1", port: int = 8765, home: str | Path | None = None,
          token: str | None = None, log_level: str = "warning") -> None:
    """Serve the console of ``home`` (default ``$PYHOST_HOME``) until interrupted.

    Bound to a non-loopback ``host`` without a ``token``, one is made; the URL to open,
    with it, is printed either way.

    Raises:
        CatalogUnavailable: the home's catalog cannot be opened.
    """
    import uvicorn

    runtime = Runtime.open(home)
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    app = create_app(Console(runtime, token), host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"pyhost console of {runtime.home}: {url}", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    server_header=False)
    finally:
        runtime.close()


class BackgroundConsole:
    """A console served by uvicorn in a daemon thread of this process (a notebook's, a
    test's): ``url`` is where it answers; :meth:`stop` ends it.

    Raises:
        TimeoutError: it did not start within ``timeout`` seconds.
    """

    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 10.0) -> None:
        import uvicorn

        if not port:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(
            create_app(console, host), host=host, port=port, log_level="warning",
            access_log=False, server_header=False))
        self._thread = threading.Thread(target=self._server.run, name="pyhost-console",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise TimeoutError(f"the console on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
