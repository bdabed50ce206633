"""The conversation with a session server, engine-neutral: options, transports, the
handshake, the blocking and asyncio sessions over one I/O-free core, warm pools, and the
registry of this process's sessions. Nothing here imports docker."""

from .aio import AsyncSession
from .blocking import Session
from .conversation import SessionStats
from .options import SessionOptions

__all__ = ["AsyncSession", "Session", "SessionOptions", "SessionStats"]
