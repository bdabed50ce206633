"""What every page of the console reads: the runtime it shows, the token (None when bound to
loopback) and the CSRF value of its forms."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from starlette.requests import Request

from ..runtime import Runtime

__all__ = ["Console", "console_of"]


@dataclass
class Console:
    runtime: Runtime
    token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]
