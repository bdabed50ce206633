"""The ``build`` task: an image for a function, FROM its base, with its requirements, the
run's instructions and its source; later jobs (and serve replicas) of that version run on it.

The task writes the recipe (:class:`~pyhost.launchers.images.ImageRecipe`) and records the
run; the launcher builds (``Launcher.build_image``). The run is of kind ``python+build`` and
moves CREATED -> READY -> RUNNING -> COMPLETED | ERROR. Its status carries the image
(``image``, ``image_id``, ``built``: False when an unchanged image was reused), the
installed ``packages`` and the build log (``run.logs()``). The image is recorded on the
function version's status, which makes no new version.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, PyHostError, short
from ...launchers import get_launcher
from ...launchers.base import Launcher
from ...launchers.images import ImageRecipe
from ..catalog import Record
from ..executions import Execution
from ..runs import (
    COMPLETED,
    ERROR,
    READY,
    RUNNING,
    STOPPED,
    log_key,
    run_log,
    transition,
)
from ..sources import python_wanted
from .base import Cleanup, OneShotTask
from .progress import build_progress, check_progress
from .spec import TaskSpec, check_python, common_settings

if TYPE_CHECKING:
    from ..context import Runtime
    from ..function import Function

__all__ = ["BuildSpec", "BuildTask", "image_tag"]

_DOCKER_NAME = re.compile(r"[^a-z0-9._-]+")
# Shared settings a build has no use for: its steps run in the engine's builder, not in a
# session of this function.
_NOT_FOR_BUILDS = ("envs", "secrets", "resources", "volumes", "node_selector", "affinity",
                   "tolerations", "store_quota", "open_uploads")


@dataclass
class BuildSpec(TaskSpec):
    """A build's settings, checked; ``image`` is the tag it makes."""

    recipe: ImageRecipe | None = None
    force: bool = False
    progress: Any = field(default=None, repr=False)  # how to show it; not recorded

    def own_record(self) -> dict[str, Any]:
        recipe = self.recipe
        assert recipe is not None  # set by BuildTask.check
        return {"base_image": recipe.base_image, "requirements": list(recipe.requirements),
                "instructions": list(recipe.instructions),
                "find_links": [_redacted(link) for link in recipe.find_links],
                "index_url": _redacted(recipe.index_url), "offline": recipe.offline,
                "allow_network": recipe.allow_network, "force": self.force}


class _Stopped(Exception):
    """Raised in the build's progress once a stop is asked: the build is abandoned at its
    next line of output."""


class BuildTask(OneShotTask[BuildSpec]):
    """``fn.run(action="build", ...)``.

    Settings:
        instructions: shell commands run as root, each its own build step, after the
            requirements are installed. Build steps have NO network unless
            ``allow_network`` (``apt-get install`` needs it).
        wait: return once the build ended (else at once, the build going on in a
            supervisor process of its own, as a job's does: :mod:`.detached`).
        launcher: the launcher that builds (``"docker"``, or a Launcher).
        allow_network: let build steps reach the network.
        find_links: local wheel directories (or URLs) the requirements may come from.
        index_url: the package index (pip's own configuration when None).
        offline: resolve requirements from ``find_links`` and the host's wheelhouse only.
        force: build even when an image of the same content is there.
        progress: ``None``/``"auto"`` (a bar in a terminal, log lines otherwise),
            ``"bar"``, ``"lines"``, ``"log"``, False, or a callable given each line.
        log_cap: bytes of the build's log kept (default ``"1Mi"``).

    Raises (from ``fn.run``):
        ConfigurationError: an unknown or malformed setting (a session's setting such as
            envs or volumes among them), a launcher that cannot build, or a base whose
            Python is not the function's; nothing has started.
        ImageNotFound: the base image is not present.
    """

    action = "build"

    def check(self, function: Function, runtime: Runtime, *, instructions: Any = None,
              allow_network: Any = False, find_links: Any = None, index_url: Any = None,
              offline: Any = False, force: Any = False, progress: Any = None,
              **settings: Any) -> BuildSpec:
        given = sorted(name for name in _NOT_FOR_BUILDS if settings.get(name))
        if given:
            raise ConfigurationError(
                f"fn.run(action='build'): {', '.join(given)}: a build runs its steps in the "
                "engine's builder, not in a session, so it takes none of these; give them to "
                "the job or serve runs of the image")
        check_progress(progress)
        spec = BuildSpec(**common_settings("build", **settings), force=force,
                         progress=progress)
        chosen = get_launcher(spec.launcher)
        spec.recipe = _recipe(function, chosen, instructions, allow_network, find_links,
                              index_url, offline, force)
        spec.image = spec.recipe.tag
        chosen.check_recipe(spec.recipe)
        check_python(function, chosen, spec.recipe.base_image, base=True)
        return spec

    def detached_settings(self, spec: BuildSpec,
                          settings: dict[str, Any]) -> dict[str, Any] | None:
        """A build nobody waits for goes to a supervisor process (its progress to the run's
        log alone: nobody watches a terminal); one on a launcher object stays in its
        caller."""
        if not isinstance(spec.launcher, str):
            return None
        return {**settings, "progress": False}

    def execute(self, function: Function, runtime: Runtime, record: Record,
                spec: BuildSpec, execution: Execution) -> Cleanup:
        recipe = spec.recipe
        assert recipe is not None
        report, close = build_progress(spec.progress, recipe.tag)
        log = run_log(runtime, record, spec.limits.log_cap)

        def progress(line: str) -> None:
            if execution.stop_requested:  # abandoned: the engine cancels the step
                raise _Stopped
            log.write(line + "\n")  # the build's log, followed live like a job's
            report(line)

        ok = False
        try:
            record = transition(runtime, record, RUNNING, READY, message="building",
                                logs=log_key(runtime, log))
            try:
                built = get_launcher(spec.launcher).build_image(recipe, progress)
            except _Stopped:
                log.write("[pyhost] stopped: the build was abandoned\n")
                log.flush()
                transition(runtime, record, STOPPED, RUNNING, message="stopped")
                return None
            except PyHostError as exc:
                log.write(f"ERROR: {exc}\n")
                log.flush()
                transition(runtime, record, ERROR, RUNNING,
                           error={"type": type(exc).__name__, "message": str(exc),
                                  "traceback": ""},
                           message=f"{type(exc).__name__}: {short(exc, first_line=True)}")
                return None
            function.record_image({"tag": built.tag, "id": built.image_id, "run": record.id,
                                   "hash": built.content_hash, "python": built.python,
                                   "base": built.base, "recorded": time.time()})
            what = "built" if built.built else "unchanged, not rebuilt"
            log.flush()
            transition(runtime, record, COMPLETED, RUNNING, image=built.tag,
                       image_id=built.image_id, built=built.built,
                       base=built.base, base_id=built.base_id, python=built.python,
                       packages=list(built.packages), content_hash=built.content_hash,
                       seconds=round(built.seconds, 3),
                       message=f"{built.tag} {what} ({built.image_id[:19]}, "
                               f"{built.seconds:.2f} s)")
            ok = True
        finally:
            close(ok)
        return None


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


def _redacted(url: str | None) -> str | None:
    """A URL without the password it may carry (never recorded)."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", url) if url else url
