"""The ``build`` task: an image for a function, FROM its base, with its requirements, the
run's instructions and its source; later jobs (and serve replicas) of that version run on it.

The runtime writes the recipe (:class:`~pyhost.launchers.images.ImageRecipe`) and records the
run; the launcher builds (``Launcher.build_image``). The run is of kind ``python+build`` and
moves CREATED -> READY -> RUNNING -> COMPLETED | ERROR. Its status carries the image
(``image``, ``image_id``, ``built``: False when an unchanged image was reused), the
installed ``packages`` and the build log (``run.logs()``). The image is recorded on the
function version's status, which makes no new version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, PyHostError
from ..launchers import get_launcher
from ..launchers.base import Launcher
from ..launchers.images import ImageRecipe
from .catalog import Record, StaleState
from .progress import build_progress
from .runs import (
    ACTIVE,
    COMPLETED,
    ERROR,
    READY,
    RUNNING,
    Run,
    create_run,
    executing,
    finished,
    save_logs,
    transition,
)
from .sources import python_wanted

if TYPE_CHECKING:
    from .context import Runtime
    from .function import Function

__all__ = ["image_tag", "start_build"]

log = logging.getLogger("pyhost.runtime")

_DOCKER_NAME = re.compile(r"[^a-z0-9._-]+")


def start_build(function: Function, runtime: Runtime, *,
                instructions: list[str] | None = None, wait: bool = False,
                launcher: Any = "docker", allow_network: bool = False,
                find_links: list[str] | None = None, index_url: str | None = None,
                offline: bool = False, force: bool = False, progress: Any = None,
                **unknown: Any) -> Run:
    """Check everything, record the run, and build (in the background unless ``wait``).

    Args:
        instructions: shell commands run as root, each its own build step, after the
            requirements are installed. Build steps have NO network unless
            ``allow_network`` (``apt-get install`` needs it).
        wait: return once the build ended (else at once, the build going on in this
            process).
        launcher: the launcher that builds (``"docker"``, or a Launcher).
        allow_network: let build steps reach the network.
        find_links: local wheel directories (or URLs) the requirements may come from.
        index_url: the package index (pip's own configuration when None).
        offline: resolve requirements from ``find_links`` and the host's wheelhouse only.
        force: build even when an image of the same content is there.
        progress: ``None``/``"auto"`` (a bar in a terminal, log lines otherwise),
            ``"bar"``, ``"lines"``, ``"log"``, False, or a callable given each line.

    Raises:
        ConfigurationError: an unknown or malformed setting, a launcher that cannot
            build, or a base whose Python is not the function's; nothing has started.
        ImageNotFound: the base image is not present.
    """
    if unknown:
        raise ConfigurationError(f"fn.run(action='build'): unknown setting(s) "
                                 f"{', '.join(sorted(unknown))}")
    chosen = get_launcher(launcher)
    recipe = _recipe(function, chosen, instructions, allow_network, find_links, index_url,
                     offline, force)
    chosen.check_recipe(recipe)
    _check_python(function, chosen, recipe)
    report, close = build_progress(progress, recipe.tag)
    record = create_run(runtime, function, "build", {
        "image": recipe.tag, "base_image": recipe.base_image,
        "requirements": list(recipe.requirements), "instructions": list(recipe.instructions),
        "find_links": [_redacted(link) for link in recipe.find_links],
        "index_url": _redacted(recipe.index_url),
        "offline": recipe.offline, "allow_network": recipe.allow_network, "force": force,
        "launcher": launcher if isinstance(launcher, str) else type(launcher).__name__})
    executing(record.id)
    work = (runtime, record, function, chosen, recipe, report, close)
    if wait:
        _execute(*work)
        return Run(record, runtime).refresh()
    threading.Thread(target=_execute, args=work, name=f"pyhost-build-{record.id[:8]}",
                     daemon=True).start()
    return Run(record, runtime)


def image_tag(function: Function) -> str:
    """``pyhost/<project>/<function>:<first 12 of the version id>``, lower-cased as the
    engine wants repository names."""
    parts = [_docker_component(name) for name in (function.project, function.name)]
    return f"pyhost/{parts[0]}/{parts[1]}:{function.id[:12]}"


def _docker_component(name: str) -> str:
    """``name`` as one path component of a repository: lower case, separators ``.``,
    ``_``, ``__`` or dashes, between letters or digits."""
    text = _DOCKER_NAME.sub("-", name.lower())
    text = re.sub(r"[._-]{2,}", lambda run: run[0] if re.fullmatch(r"-+|__", run[0])
                  else "-", text)
    return text.strip("._-") or "x"


def _base_image(function: Function, launcher: Launcher) -> str | None:
    """What a build of ``function`` starts FROM: its ``base_image``, else its ``image``,
    else the launcher's runtime image for its ``python_version`` (None: the default session
    image, chosen as a session's is)."""
    spec = function.spec
    if spec.get("base_image") or spec.get("image"):
        return str(spec.get("base_image") or spec.get("image"))
    wanted = python_wanted(spec)
    return launcher.image_for_python(wanted) if wanted else None


def _recipe(function: Function, launcher: Launcher, instructions: Any, allow_network: Any,
            find_links: Any, index_url: Any, offline: Any, force: Any) -> ImageRecipe:
    requirements = function.spec.get("requirements") or []
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in
                                                     requirements):
        raise ConfigurationError(f"function {function.name!r}: requirements is a list of "
                                 f"pip requirement strings, not {requirements!r}")
    for name, value in (("instructions", instructions), ("find_links", find_links)):
        if value is not None and not (isinstance(value, list) and
                                      all(isinstance(item, str) for item in value)):
            raise ConfigurationError(f"{name} is a list of strings, not {value!r}")
    for name, value in (("allow_network", allow_network), ("offline", offline),
                        ("force", force)):
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name} is True or False, not {value!r}")
    if index_url is not None and not isinstance(index_url, str):
        raise ConfigurationError(f"index_url is a URL, not {index_url!r}")
    # Made absolute now: the build may run in a thread after the caller changed directory.
    links = tuple(link if "://" in link else os.path.abspath(link)
                  for link in find_links or ())
    local = tuple(os.path.abspath(r) if os.path.isfile(r) else r for r in requirements)
    return ImageRecipe(
        tag=image_tag(function), base_image=_base_image(function, launcher),
        requirements=local, find_links=links, index_url=index_url, offline=offline,
        instructions=tuple(instructions or ()), files=function.source().files,
        labels={"org.pyhost.function": function.key}, allow_network=allow_network,
        python=python_wanted(function.spec), force=force)


def _check_python(function: Function, launcher: Launcher, recipe: ImageRecipe) -> None:
    """Refuse a base whose Python is known (from its labels) and not the function's."""
    have = launcher.python_version(recipe.base_image)
    if have is not None and recipe.python is not None and have != recipe.python:
        raise ConfigurationError(
            f"python_version={function.spec['python_version']!r}: the base image "
            f"{recipe.base_image or '(default)'} has Python {have}; pass base_image= of an "
            f"image with Python {recipe.python}, or use PYTHON{have.replace('.', '_')}")


def _execute(runtime: Runtime, record: Record, function: Function, launcher: Launcher,
             recipe: ImageRecipe, report: Any, close: Any) -> None:
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        report(line)

    ok = False
    try:
        record = transition(runtime, record, RUNNING, READY, message="building")
        try:
            built = launcher.build_image(recipe, progress)
        except PyHostError as exc:
            text = str(exc)
            lines.append(f"ERROR: {text}")
            transition(runtime, record, ERROR, RUNNING,
                       logs=save_logs(runtime, record, "\n".join(lines) + "\n"),
                       error={"type": type(exc).__name__, "message": text, "traceback": ""},
                       message=f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")
            return
        image = {"tag": built.tag, "id": built.image_id, "run": record.id,
                 "hash": built.content_hash, "python": built.python, "base": built.base,
                 "recorded": time.time()}
        function.record_image(image)
        what = "built" if built.built else "unchanged, not rebuilt"
        transition(runtime, record, COMPLETED, RUNNING,
                   logs=save_logs(runtime, record, "\n".join(lines) + "\n"),
                   image=built.tag, image_id=built.image_id, built=built.built,
                   base=built.base, base_id=built.base_id, python=built.python,
                   packages=list(built.packages), content_hash=built.content_hash,
                   seconds=round(built.seconds, 3),
                   message=f"{built.tag} {what} ({built.image_id[:19]}, "
                           f"{built.seconds:.2f} s)")
        ok = True
    except StaleState:
        log.warning("build run %s was settled by another process while it ran", record.id)
    except Exception:  # the runtime's own failure: the run must not stay RUNNING
        log.exception("build run %s: the runtime failed", record.id)
        with contextlib.suppress(Exception):
            transition(runtime, runtime.get("run", record.id), ERROR, ACTIVE,
                       message="the runtime failed; see the host's log")
    finally:
        close(ok)
        finished(record.id)


def _redacted(url: str | None) -> str | None:
    """A URL without the password it may carry (never recorded)."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url) if url else url
