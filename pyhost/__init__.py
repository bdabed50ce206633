"""pyhost: run Python code in sandboxed Docker sessions, the hxPy way.

    from pyhost import py
    py().timeout(10).define("a", 100).define("b", 2) \\
        .exec("def mult(x, y): return x * y\\n").eval("mult(a, b)")   # -> 200
"""

from hxpy.haystack import (
    NA,
    Coord,
    Grid,
    GridBuilder,
    Marker,
    Number,
    Ref,
    Remove,
    Symbol,
    Uri,
    XStr,
)

from .api import close_all, py, sessions, warm_pool
from .errors import (
    CatalogUnavailable,
    ConfigurationError,
    EngineUnavailable,
    ImageBuildError,
    ImageNotFound,
    InstallError,
    MarshalError,
    NotInCatalog,
    ProtocolError,
    PyHostError,
    PythonError,
    ServiceUnavailable,
    SessionClosed,
    SessionDied,
    SessionTimeout,
)
from .session import AsyncSession, Session, SessionOptions, SessionStats

__version__ = "0.1.0"


def gc() -> str:
    """Remove containers and socket dirs whose owner process is gone; say what went."""
    from .launchers.docker.orphans import collect

    return str(collect())


__all__ = [
    "NA",
    "Coord",
    "Grid",
    "GridBuilder",
    "Marker",
    "Number",
    "Ref",
    "Remove",
    "Symbol",
    "Uri",
    "XStr",
    "AsyncSession",
    "CatalogUnavailable",
    "ConfigurationError",
    "EngineUnavailable",
    "ImageBuildError",
    "ImageNotFound",
    "InstallError",
    "MarshalError",
    "NotInCatalog",
    "ProtocolError",
    "PyHostError",
    "PythonError",
    "ServiceUnavailable",
    "Session",
    "SessionClosed",
    "SessionDied",
    "SessionOptions",
    "SessionStats",
    "SessionTimeout",
    "close_all",
    "gc",
    "py",
    "sessions",
    "warm_pool",
]
