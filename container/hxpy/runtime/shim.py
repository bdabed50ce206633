"""Making ``digitalhub_runtime_python`` importable wherever a handler runs (a session image,
a process server, a local run on the host), without ever shadowing the real SDK.

The shim package lives in :data:`SHIM_DIR`, inside hxpy, so every image that carries the
server carries it too. :func:`install` appends that directory at the end of ``sys.path``
when the real package cannot be found; anything installed (site-packages, ``PYTHONPATH``,
an image's ``/opt/pyhost/site``) comes earlier on the path and wins.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["SHIM_DIR", "SHIM_MODULES", "install"]

SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shims")

#: Top-level modules the shim provides wherever a handler runs.
SHIM_MODULES = ("digitalhub_runtime_python",)


def install() -> bool:
    """Append :data:`SHIM_DIR` to ``sys.path`` unless it is there, a shimmed module is
    already imported, or the real one can be found; whether the shim is now on the path.

    Cheap after the first call: one membership test on ``sys.path``.
    """
    if SHIM_DIR in sys.path:
        return True
    if any(name in sys.modules or importlib.util.find_spec(name) is not None
           for name in SHIM_MODULES):
        return False
    sys.path.append(SHIM_DIR)
    return True
