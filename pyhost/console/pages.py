"""The pages of projects, their runs and their functions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..errors import ConfigurationError, NotInCatalog
from ..runtime.catalog import Record
from ..runtime.entities import parse_key
from ..runtime.function import Function
from ..runtime.runs import ACTIVE, FINAL, RUNNING
from .render import page
from .state import console_of

__all__ = ["function", "project", "projects", "run_row", "runs"]

PAGE_SIZE = 50
STATES = (*ACTIVE, *FINAL)
ENTITY_TYPES = ("dataitem", "artifact", "model")
_HIGHLIGHT_MAX = 256 * 1024  # characters of a source file shown highlighted; more is plain


def projects(request: Request) -> HTMLResponse:
    """Every project: its functions, its runs by state, its entities."""
    runtime = console_of(request).runtime
    found: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"functions": 0, "runs": {}, "entities": dict.fromkeys(ENTITY_TYPES, 0)})
    for record in runtime.find("project"):
        found[record.name]  # noqa: B018 - listed even when empty
    for tally in runtime.catalog.summary():
        if tally.entity_type == "project":
            continue
        row = found[tally.project]
        if tally.entity_type == "function":
            row["functions"] += tally.names
        elif tally.entity_type == "run":
            row["runs"][tally.state] = row["runs"].get(tally.state, 0) + tally.versions
        elif tally.entity_type in ENTITY_TYPES:
            row["entities"][tally.entity_type] += tally.names
    return page(request, "projects.html", projects=sorted(found.items()), states=STATES)


def project(request: Request) -> HTMLResponse:
    """A project: its functions (newest version of each), its latest runs, its entities."""
    runtime = console_of(request).runtime
    name = request.path_params["project"]
    runtime.latest("project", name, name)  # NotInCatalog: 404
    functions: dict[str, list[Record]] = defaultdict(list)
    for record in runtime.find("function", project=name):
        functions[record.name].append(record)
    latest = runtime.catalog.page("run", project=name, size=10).records
    counts = {tally.entity_type: tally.names for tally in runtime.catalog.summary()
              if tally.project == name and tally.entity_type in ENTITY_TYPES}
    return page(request, "project.html", project=name,
                functions=[(fn, versions[-1], len(versions))
                           for fn, versions in sorted(functions.items())],
                runs=[run_row(record) for record in latest], counts=counts,
                entity_types=ENTITY_TYPES)


def runs(request: Request) -> HTMLResponse:
    """A project's runs, newest first, a page at a time: by state, function and text."""
    runtime = console_of(request).runtime
    name = request.path_params["project"]
    runtime.latest("project", name, name)
    query = request.query_params
    state = query.get("state") or None
    function_name = query.get("function") or None
    text = (query.get("q") or "").strip() or None
    if state is not None and state not in STATES:
        raise ConfigurationError(f"there is no run state {state!r} (the states: "
                                 f"{', '.join(STATES)})")
    every_version = runtime.find("function", project=name)
    functions = None if function_name is None else [
        str(record.document.get("key")) for record in every_version
        if record.name == function_name]
    found = runtime.catalog.page("run", project=name, state=state, functions=functions,
                                 text=text, after=_cursor(query.get("after")),
                                 size=PAGE_SIZE)
    names = sorted({record.name for record in every_version})
    following = (f"{found.next[0]!r}:{found.next[1]}" if found.next else None)
    return page(request, "runs.html", project=name, runs=[run_row(r) for r in found.records],
                states=STATES, function_names=names, state=state or "",
                function=function_name or "", q=text or "", after=following)


def function(request: Request) -> HTMLResponse:
    """A function: its versions, and one version's handler, settings and source."""
    runtime = console_of(request).runtime
    name, fn_name = request.path_params["project"], request.path_params["name"]
    versions = runtime.find("function", project=name, name=fn_name)
    if not versions:
        raise NotInCatalog(f"project {name!r} has no function {fn_name!r}")
    wanted = request.query_params.get("version")
    chosen = next((record for record in versions if record.id == wanted), versions[-1])
    fn = Function(chosen, runtime)
    files = fn.source().files
    module = _module_file(fn, files)
    text = files.get(module, b"").decode("utf-8", "replace") if module else ""
    shown = (highlight(text, PythonLexer(), HtmlFormatter(cssclass="highlight"))
             if text and len(text) <= _HIGHLIGHT_MAX else None)
    return page(request, "function.html", project=name, fn=fn, versions=list(reversed(versions)),
                chosen=chosen, module=module, source_html=shown, source_text=text,
                files=sorted((path, len(data)) for path, data in files.items()))


def run_row(record: Record) -> dict[str, Any]:
    """What a table of runs shows of one."""
    spec = record.document.get("spec") or {}
    status = record.document.get("status") or {}
    timings = status.get("timings") or {}
    ended = next((timings[state] for state in FINAL if state in timings), None)
    return {"id": record.id, "state": record.state, "created": record.created,
            "function": _function_name(spec.get("function")),
            "action": spec.get("action") or record.kind.partition("+")[2],
            "started": timings.get(RUNNING), "ended": ended,
            "message": str(status.get("message") or "")[:200]}


def _function_name(key: Any) -> str:
    try:
        return parse_key(key).name
    except ConfigurationError:
        return str(key or "")


def _module_file(fn: Function, files: dict[str, bytes]) -> str | None:
    try:
        module = fn.handler_info().module
    except Exception:  # a source the runtime cannot resolve still shows its files
        return next(iter(sorted(files)), None)
    for candidate in (module.replace(".", "/") + ".py", module.replace(".", "/") +
                      "/__init__.py"):
        if candidate in files:
            return candidate
    return next(iter(sorted(files)), None)


def _cursor(text: str | None) -> tuple[float, str] | None:
    """``created:id`` of the last run of the page before (as the pager writes it)."""
    if not text:
        return None
    created, _, run_id = text.partition(":")
    try:
        return float(created), run_id
    except ValueError:
        raise ConfigurationError(f"{text!r} is not a page cursor (created:id)") from None
