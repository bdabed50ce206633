"""Where the runtime keeps what outlives a process: the catalog file and the store of files.

The runtime home is, first match wins:

1. ``$PYHOST_HOME``, when set and not empty;
2. ``$XDG_DATA_HOME/pyhost``, when ``XDG_DATA_HOME`` is set to an absolute path (the XDG
   base directory specification says to ignore a relative one);
3. ``~/.local/share/pyhost``.

Inside it, ``catalog.db`` is the SQLite catalog and ``store/`` the entities' files, side by
side so that one directory holds (and one copy moves) a whole runtime. Nothing is made
here; the catalog and the store make what they need when first used.

This is not ``PYHOST_RUNTIME_DIR``: that one holds the sessions' sockets, which die with
them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_catalog_path", "default_store_root", "runtime_home"]


def runtime_home() -> Path:
    """The directory of the runtime's lasting data (see the module's docstring)."""
    home = os.environ.get("PYHOST_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    if data and os.path.isabs(data):
        return Path(data) / "pyhost"
    return Path.home() / ".local" / "share" / "pyhost"


def default_catalog_path() -> Path:
    """The catalog file: ``runtime_home() / "catalog.db"``."""
    return runtime_home() / "catalog.db"


def default_store_root() -> Path:
    """The root of the store of files: ``runtime_home() / "store"``."""
    return runtime_home() / "store"
