"""Templates and the small formatting the pages share. Jinja2 escapes every value it puts in
a page (autoescape on for every template): a name, a parameter or a log line is text, never
markup."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from ..errors import ConfigurationError
from ..runtime.entities import parse_key
from .state import console_of

__all__ = ["bad_request", "entity_url", "not_found", "page", "short_json", "size", "took", "when"]

_templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True))

def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template ``name`` with ``context`` and the CSRF value of its forms."""
    context.update(csrf=console_of(request).csrf)
    return _templates.TemplateResponse(request, name, context, status_code=status_code)


async def not_found(request: Request, exc: Exception) -> HTMLResponse:
    """404: what the catalog does not hold (the message names it)."""
    return page(request, "missing.html", status_code=404, message=str(exc))


async def bad_request(request: Request, exc: Exception) -> HTMLResponse:
    """400: a filter or cursor that cannot be (the message says which)."""
    return page(request, "missing.html", status_code=400, message=str(exc))


def when(seconds: Any) -> str:
    """Seconds since the epoch as a UTC time to the second; '' for none."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def took(start: Any, end: Any) -> str:
    """The time from ``start`` to ``end`` (seconds since the epoch), readably."""
    if not all(isinstance(value, (int, float)) for value in (start, end)) or end < start:
        return ""
    seconds = end - start
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def size(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return ""


def short_json(value: Any, limit: int = 2000) -> str:
    """A value as indented JSON text (cut at ``limit`` characters)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, allow_nan=True)
    return text if len(text) <= limit else text[:limit] + "\n..."


def entity_url(request: Request, key: Any) -> str | None:
    """The console's page of the entity a key names; None when it names none."""
    if not isinstance(key, str) or not key.startswith("store://"):
        return None
    try:
        parsed = parse_key(key)
    except ConfigurationError:
        return None
    if parsed.entity_type == "function":
        return str(request.url_for("function", project=parsed.project, name=parsed.name))
    if parsed.entity_type == "run":
        return str(request.url_for("run", run_id=parsed.name))
    if parsed.id is None:
        return None
    return str(request.url_for("entity", entity_type=parsed.entity_type, entity_id=parsed.id))


_templates.env.filters.update(when=when, size=size, short_json=short_json)
_templates.env.globals.update(took=took, entity_url=entity_url)
