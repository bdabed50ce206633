"""``pyhost console``: the catalog and store of a home in the browser (projects, functions,
runs with their live logs, metrics and results, dataitems' first rows, files), served by
uvicorn from server-rendered pages. Read-only but for one action: stopping a run.

See :mod:`.app` for who may use it, and ``docs/console.md``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ..runtime import Runtime
from .app import create_app, is_loopback
from .state import Console

__all__ = ["Console", "create_app", "serve"]


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
