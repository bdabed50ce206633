"""A function's image: built FROM a base, with its requirements, instructions and source.

The runtime writes an :class:`~pyhost.launchers.images.ImageRecipe`; this module makes it an
image on the engine, in three steps:

1. Everything that decides the image is hashed (the base image's *id*, the generated
   Dockerfile with the instructions, the requirements with the bytes of local wheel files and
   the listing of local wheel directories, the function's files, the hxpy sources when they
   are added). An image under the tag with that hash in its ``org.pyhost.build`` label is
   current: nothing else is done (a few engine inspections, well under a second).
2. Otherwise the requirements are resolved ON THE HOST as wheels for the image's
   interpreter and platform (:func:`.wheels.install_wheels`; the Python from the base's
   ``org.pyhost.python`` label or the session image's base, the glibc from
   ``org.pyhost.glibc`` or the Debian suite, else 2.36 (bookworm)) into a directory that
   the build copies to :data:`.wheels.SITE_DIR`. A requirement with no wheel fails here,
   before any engine build.
3. The engine builds the generated Dockerfile with network mode ``none`` (unless the
   recipe allows network): instructions run as root, then the base's user (the sandbox uid
   when the base runs as root) is restored, with its entrypoint, working directory and
   environment, ``PYTHONPATH`` extended by the site directory.

A base that is not a pyhost session image (no ``org.pyhost.hash`` or ``org.pyhost.build``
label) gets the hxpy server copied in, its entrypoint set to the session image's
(:data:`.image.SERVER_ENTRYPOINT`, the server's ``python3 -m hxpy`` without runpy); it must
provide ``python3`` with numpy, pandas and msgpack, which a short probe container (no
network, read-only, no capabilities) checks before the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ...errors import ConfigurationError, ImageBuildError
from ..images import FUNCTION_DIR, BuildProgress, BuiltImage, ImageRecipe, parse_step
from .client import engine_errors, inspect_image
from .debian_base import BASE_LABEL, SUITE_PYTHON
from .image import (
    BUILD_LABEL,
    GLIBC_LABEL,
    HASH_LABEL,
    PYTHON_LABEL,
    SERVER_ENTRYPOINT,
    drop_replaced,
    follow_build,
    image_labels,
    image_python,
    resolve_image,
)
from .image_context import Snapshot, context_tar, find_sources, snapshot_sources
from .iodir import SANDBOX_UID, sandbox_uid
from .probe import probe_python
from .system import say
from .wheels import SITE_DIR, install_wheels

__all__ = ["BUILD_MEMORY", "BUILD_TIMEOUT", "DEFAULT_GLIBC", "FUNCTION_BASE_LABEL",
           "PACKAGES_LABEL", "SUITE_GLIBC", "DockerfilePlan", "build_function_image",
           "build_limits", "check_recipe", "content_hash", "plan_dockerfile",
           "requirement_fingerprint"]

HXPY_DIR = "/opt/hxpy"
FUNCTION_BASE_LABEL = "org.pyhost.function.base"  # the base as it was named
PACKAGES_LABEL = "org.pyhost.wheels"  # what the requirements installed, name==version
SUITE_GLIBC = {"bullseye": (2, 31), "bookworm": (2, 36), "trixie": (2, 41)}
DEFAULT_GLIBC = SUITE_GLIBC["bookworm"]
_FORMAT = b"pyhost-function-image-1"  # bumped when the layout of an image changes
#: Each build step's container gets this much memory, swap included (``PYHOST_BUILD_MEMORY``,
#: a Docker size such as ``2g``): a step that allocates past it is OOM-killed and the build
#: fails naming it. Twice a session's default: compilers and pip need more than user code.
BUILD_MEMORY = "2g"
#: Seconds a build may take (``PYHOST_BUILD_TIMEOUT``); past it, or when the engine says
#: nothing for that long, the build is abandoned: the connection drops and the engine
#: cancels the step (the classic builder does on a client's hang-up).
BUILD_TIMEOUT = 1800.0
# A Docker reference's repository path (lower case) and tag.
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# -- checks that need no engine ----------------------------------------------------------------

def check_recipe(recipe: ImageRecipe) -> None:
    """Refuse a malformed recipe, naming what is wrong.

    Raises:
        ConfigurationError: a bad tag, instruction, requirement or wheel directory.
    """
    repository, _, tag = recipe.tag.rpartition(":")
    if not (_REPOSITORY.match(repository) and _TAG.match(tag)):
        raise ConfigurationError(f"image tag {recipe.tag!r}: a lower-case repository path "
                                 "and a tag, e.g. pyhost/project/function:1a2b3c")
    for index, instruction in enumerate(recipe.instructions, 1):
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigurationError(f"instruction {index}: a non-empty shell command, not "
                                     f"{instruction!r}")
        if any(char in instruction for char in "\n\r\0"):
            raise ConfigurationError(f"instruction {index} {instruction!r}: one line (join "
                                     "commands with && or give several instructions)")
        if instruction.rstrip().endswith("\\"):
            # A continuation would swallow the next line of the generated Dockerfile.
            raise ConfigurationError(f"instruction {index} {instruction!r} ends with a line "
                                     "continuation (\\); end it with the command itself")
    for requirement in recipe.requirements:
        if not isinstance(requirement, str) or not requirement.strip() or \
                any(char in requirement for char in "\n\r\0"):
            raise ConfigurationError(f"requirement {requirement!r}: a pip requirement "
                                     "string (e.g. 'pandas>=2' or a wheel file's path)")
    for link in recipe.find_links:
        if "://" not in link and not os.path.isdir(link):
            raise ConfigurationError(f"find_links {link!r}: no such directory (on this "
                                     f"host, relative to {os.getcwd()})")
    for name in recipe.files:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise ConfigurationError(f"function file {name!r}: a relative path inside the "
                                     "function's source")


def build_limits() -> tuple[int, float]:
    """``(memory bytes, timeout seconds)`` for a build's steps: :data:`BUILD_MEMORY` and
    :data:`BUILD_TIMEOUT`, or ``PYHOST_BUILD_MEMORY`` / ``PYHOST_BUILD_TIMEOUT`` when set.

    Raises:
        ConfigurationError: a variable is not a size (at least 64 MiB) or a positive number.
    """
    memory_text = os.environ.get("PYHOST_BUILD_MEMORY", "").strip() or BUILD_MEMORY
    try:
        memory = int(docker.utils.parse_bytes(memory_text))
    except docker.errors.DockerException:
        memory = -1
    if memory < 64 << 20:
        raise ConfigurationError(f"PYHOST_BUILD_MEMORY={memory_text!r}: a Docker size of at "
                                 "least 64m (e.g. 2g)")
    timeout_text = os.environ.get("PYHOST_BUILD_TIMEOUT", "").strip() or str(BUILD_TIMEOUT)
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise ConfigurationError(f"PYHOST_BUILD_TIMEOUT={timeout_text!r}: seconds, a positive "
                                 "number")
    return memory, timeout


# -- the Dockerfile ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DockerfilePlan:
    """What the generated Dockerfile does, decided from the recipe and the base alone.

    Attributes:
        base_id: the base image's id (FROM it, so a moved base tag means a new image).
        user: the user to drop back to after the root steps.
        pythonpath: the image's ``PYTHONPATH`` entries ((): the base's is kept as it is).
        add_hxpy: the base is not a session image: copy the server in and make it the
            entrypoint.
        has_site: requirements are installed (the context holds ``site/``).
        has_files: the function has files (the context holds ``function/``).
        instructions: the user's commands, each one ``RUN`` step.
        workdir: the working directory to set (None: the base's is kept).
        sandbox_uid: the uid that owns ``/io`` when the server is added.
    """

    base_id: str
    user: str
    pythonpath: tuple[str, ...]
    add_hxpy: bool
    has_site: bool
    has_files: bool
    instructions: tuple[str, ...]
    workdir: str | None = None
    sandbox_uid: int = SANDBOX_UID

    def render(self) -> str:
        """The Dockerfile's text."""
        lines = ["# A pyhost function image; generated (pyhost.launchers.docker.function_image)",
                 f"FROM {self.base_id}", "USER root"]
        if self.add_hxpy:
            lines += ["ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 "
                      "LANG=C.UTF-8",
                      f"COPY hxpy {HXPY_DIR}/hxpy"]
        if self.pythonpath:
            lines.append(f"ENV PYTHONPATH={json.dumps(':'.join(self.pythonpath))}")
        if self.has_site:
            lines.append(f"COPY site {SITE_DIR}")
        lines += [f"RUN {instruction}" for instruction in self.instructions]
        if self.has_files:
            lines.append(f"COPY function {FUNCTION_DIR}")
        # The root filesystem is read-only at run time: bytecode is compiled now or never.
        compiled = [path for path, wanted in ((HXPY_DIR, self.add_hxpy),
                                              (SITE_DIR, self.has_site)) if wanted]
        if compiled:
            lines.append(f"RUN python3 -m compileall -q {' '.join(compiled)}")
        if self.add_hxpy:
            lines.append(f"RUN mkdir -p /io && chown {self.sandbox_uid}:{self.sandbox_uid} /io")
        lines.append(f"USER {self.user}")
        if self.workdir:
            lines.append(f"WORKDIR {self.workdir}")
        if self.add_hxpy:
            lines += [f"ENTRYPOINT {json.dumps(list(SERVER_ENTRYPOINT))}", "CMD []"]
        return "\n".join(lines) + "\n"

    def instruction_of(self, step_title: str) -> int | None:
        """The 1-based index of the user's instruction a build step runs, if it is one."""
        for index, instruction in enumerate(self.instructions, 1):
            if step_title.strip() == f"RUN {instruction}".strip():
                return index
        return None


def plan_dockerfile(recipe: ImageRecipe, base: Mapping[str, Any]) -> DockerfilePlan:
    """The plan for ``recipe`` on the base the engine describes as ``base`` (inspect data)."""
    config = base.get("Config") or {}
    labels = image_labels(dict(base))
    add_hxpy = HASH_LABEL not in labels and BUILD_LABEL not in labels
    env = dict(entry.partition("=")[::2] for entry in config.get("Env") or ())
    entries = [entry for entry in env.get("PYTHONPATH", "").split(":") if entry]
    if add_hxpy and HXPY_DIR not in entries:
        entries.insert(0, HXPY_DIR)
    if recipe.requirements and SITE_DIR not in entries:
        entries.append(SITE_DIR)
    changed = entries != [entry for entry in env.get("PYTHONPATH", "").split(":") if entry]
    user = str(config.get("User") or "")
    if user.partition(":")[0] in ("", "root", "0"):
        user = str(sandbox_uid())  # never leave a function's image running as root
    return DockerfilePlan(
        base_id=str(base["Id"]), user=user, pythonpath=tuple(entries) if changed else (),
        add_hxpy=add_hxpy, has_site=bool(recipe.requirements), has_files=bool(recipe.files),
        instructions=tuple(recipe.instructions),
        workdir="/io" if add_hxpy and not config.get("WorkingDir") else None,
        sandbox_uid=sandbox_uid())


# -- what decides the image --------------------------------------------------------------------

def requirement_fingerprint(requirements: Sequence[str],
                            find_links: Sequence[str]) -> list[str]:
    """What the requirements resolve from, cheaply: each requirement's text, with the
    SHA-256 of a local file it names, and each local wheel directory's listing (names,
    sizes, modification times). A requirement resolved from an index is known by its text
    alone: pin versions, or build with ``force=True``, to take a newer release."""
    found = []
    for requirement in requirements:
        line = f"requirement {requirement}"
        if os.path.isfile(requirement):
            line += " sha256=" + hashlib.sha256(Path(requirement).read_bytes()).hexdigest()
        found.append(line)
    for link in find_links:
        found.append(f"find-links {link}")
        if os.path.isdir(link):
            for entry in sorted(os.scandir(link), key=lambda item: item.name):
                if entry.is_file():
                    stat = entry.stat()
                    found.append(f"  {entry.name} {stat.st_size} {stat.st_mtime_ns}")
    return found


def content_hash(recipe: ImageRecipe, plan: DockerfilePlan, hxpy: Snapshot) -> str:
    """The hash of everything that goes into the image (see the module docstring)."""
    digest = hashlib.sha256(_FORMAT)

    def add(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big") + data)

    add(plan.render().encode())
    for line in requirement_fingerprint(recipe.requirements, recipe.find_links):
        add(line.encode())
    add(json.dumps([recipe.index_url, recipe.offline, recipe.allow_network,
                    sorted(recipe.labels.items())]).encode())
    for name in sorted(recipe.files):
        add(name.encode())
        add(bytes(recipe.files[name]))
    for name, data, executable in hxpy:
        add(f"{name} {executable}".encode())
        add(data)
    return digest.hexdigest()


# -- the build ---------------------------------------------------------------------------------

def build_function_image(client: docker.DockerClient, recipe: ImageRecipe,
                         progress: BuildProgress = None) -> BuiltImage:
    """Build ``recipe`` unless the image under its tag was built from the same content.

    Raises:
        ConfigurationError: the recipe is malformed, or the base's Python is not the one
            the function wants.
        ImageNotFound: the base image is not present.
        ImageBuildError: the base lacks python3 (or numpy, pandas, msgpack), a requirement
            has no wheel for the image, or a build step failed (named, with its output).
        EngineUnavailable: the engine failed.
    """
    started = time.perf_counter()
    check_recipe(recipe)
    base_ref = resolve_image(client, recipe.base_image)
    base = inspect_image(client, base_ref)
    if base is None:
        raise ImageBuildError(f"base image {base_ref!r} vanished while the build began")
    plan = plan_dockerfile(recipe, base)
    hxpy = _hxpy_files() if plan.add_hxpy else []
    digest = content_hash(recipe, plan, hxpy)
    existing = inspect_image(client, recipe.tag)
    labels = image_labels(existing) if existing is not None else {}
    if existing is not None and labels.get(BUILD_LABEL) == digest and not recipe.force:
        say(progress, f"{recipe.tag} is up to date (content {digest[:12]}): nothing to build")
        return BuiltImage(str(existing["Id"]), recipe.tag, base_ref, plan.base_id,
                          image_python(existing), digest, False,
                          tuple(labels.get(PACKAGES_LABEL, "").split()),
                          time.perf_counter() - started)
    python, glibc, provided = _interpreter(client, base_ref, base, plan, recipe)
    say(progress, f"building {recipe.tag} from {base_ref} (Python {python or '?'}, glibc "
                  f"{glibc[0]}.{glibc[1]}; content {digest[:12]})")
    with tempfile.TemporaryDirectory(prefix="pyhost-build-") as work:
        packages: tuple[str, ...] = ()
        site: Snapshot = []
        if recipe.requirements:
            if python is None:
                raise ImageBuildError(f"cannot tell the Python of base image {base_ref!r}; "
                                      f"label it {PYTHON_LABEL}=3.X")
            target = Path(work) / "site"
            packages = tuple(install_wheels(
                recipe.requirements, python, target, glibc=glibc,
                find_links=recipe.find_links, index_url=recipe.index_url,
                offline=recipe.offline, provided=provided, progress=progress))
            site = _directory_files(target, "site")
        context = [("Dockerfile", plan.render().encode(), False), *hxpy, *site,
                   *((f"function/{name}", bytes(data), False)
                     for name, data in sorted(recipe.files.items()))]
        labels = {**recipe.labels, BUILD_LABEL: digest, FUNCTION_BASE_LABEL: base_ref,
                         GLIBC_LABEL: f"{glibc[0]}.{glibc[1]}",
                         PACKAGES_LABEL: " ".join(packages)}
        if python:
            labels[PYTHON_LABEL] = python
        image_id = _engine_build(client, recipe, plan, context, labels, progress)
    if existing is not None and existing.get("Id") != image_id:
        drop_replaced(client, str(existing["Id"]), BUILD_LABEL)
    return BuiltImage(image_id, recipe.tag, base_ref, plan.base_id, python, digest, True,
                      packages, time.perf_counter() - started)


def _engine_build(client: docker.DockerClient, recipe: ImageRecipe, plan: DockerfilePlan,
                  context: Snapshot, labels: dict[str, str], progress: BuildProgress) -> str:
    """Run the engine's build; a failed step becomes an error naming it, with its output."""
    step: tuple[int, int, str] | None = None
    output: list[str] = []  # the current step's lines

    memory, timeout = build_limits()
    deadline = time.monotonic() + timeout

    def line(text: str) -> None:
        nonlocal step
        if time.monotonic() > deadline:
            raise ImageBuildError(f"the build of {recipe.tag} ran past its {timeout:.0f} s "
                                  f"(PYHOST_BUILD_TIMEOUT){_in_step(step)}; abandoned")
        found = parse_step(text)
        if found is not None:
            step = found
            output.clear()
        elif not text.startswith((" ---> ", "Removing intermediate container")):
            output[:] = (output + [text])[-40:]
        say(progress, text)

    with engine_errors(f"the engine failed while building {recipe.tag}"):
        stream = client.api.build(
            fileobj=context_tar(context), custom_context=True, dockerfile="Dockerfile",
            tag=recipe.tag, labels=labels, rm=True, forcerm=True, pull=False, decode=True,
            network_mode=None if recipe.allow_network else "none", timeout=timeout,
            container_limits={"memory": memory, "memswap": memory})  # no swap beyond it
        try:
            image_id, error = follow_build(stream, line)
        finally:
            stream.close()  # abandoned: drop the connection, so the engine cancels it
    if error is not None:
        raise ImageBuildError(_failure(recipe, plan, step, error, output))
    if image_id is None:
        built = inspect_image(client, recipe.tag)
        if built is None:
            raise ImageBuildError(f"the build of {recipe.tag} ended without an image")
        image_id = str(built["Id"])
    return image_id


def _in_step(step: tuple[int, int, str] | None) -> str:
    return f" in step {step[0]}/{step[1]} ({step[2]})" if step else ""


def _failure(recipe: ImageRecipe, plan: DockerfilePlan, step: tuple[int, int, str] | None,
             error: str, output: list[str]) -> str:
    code = re.search(r"non-zero code: (\d+)", error)
    ended = f"exited with code {code[1]}" if code else f"failed: {error}"
    if code and code[1] == "137":  # SIGKILL: the memory limit, most likely
        ended += (f" (killed: a build step has {build_limits()[0] >> 20} MiB of memory, "
                  "PYHOST_BUILD_MEMORY)")
    shown = "\n".join(output).rstrip() or "(no output)"
    if step is None:
        return f"building {recipe.tag} failed: {error}\n{shown}"
    index = plan.instruction_of(step[2])
    if index is not None:
        network = "" if recipe.allow_network else (
            " (build steps have no network unless allow_network=True)")
        return (f"building {recipe.tag}: instruction {index} of {len(plan.instructions)}, "
                f"{plan.instructions[index - 1]!r}, {ended}{network}; its output:\n{shown}")
    return (f"building {recipe.tag}: step {step[0]}/{step[1]} ({step[2]}) {ended}; its "
            f"output:\n{shown}")


# -- the base's interpreter --------------------------------------------------------------------

def _interpreter(client: docker.DockerClient, base_ref: str, base: dict[str, Any],
                 plan: DockerfilePlan, recipe: ImageRecipe
                 ) -> tuple[str | None, tuple[int, int], dict[str, str]]:
    """The base's Python ("3.11"), glibc and installed distributions. Its labels tell the
    first two where they can; a base is probed when it is not a session image (which also
    checks it has what the server needs) or when requirements are to be installed on it
    (their resolution must keep what it has)."""
    labels = image_labels(base)
    python = image_python(base)
    glibc = _parse_glibc(labels.get(GLIBC_LABEL, ""))
    if glibc is None:
        suite = labels.get("org.pyhost.suite") or labels.get(BASE_LABEL, "").rpartition(":")[2]
        glibc = SUITE_GLIBC.get(suite)
    provided: dict[str, str] = {}
    if plan.add_hxpy or recipe.requirements:
        facts = probe_python(client, str(base["Id"]), _NEEDS)
        provided = facts.installed
        if plan.add_hxpy and facts.missing:
            raise ImageBuildError(f"base image {base_ref!r} lacks {', '.join(facts.missing)} "
                                  f"for Python {facts.python}; {_NEEDS}")
        python = python or facts.python
        glibc = glibc or facts.glibc
    if python is None:  # a session image whose base does not tell: bookworm's
        python = SUITE_PYTHON["bookworm"] if HASH_LABEL in labels else None
    if recipe.python and python and python != recipe.python:
        raise ConfigurationError(
            f"base image {base_ref!r} has Python {python}, the function wants "
            f"{recipe.python}; pass base_image= of an image with Python {recipe.python}, or "
            f"python_version='PYTHON{python.replace('.', '_')}'")
    return python, glibc or DEFAULT_GLIBC, provided


_NEEDS = ("a base image that is not a pyhost session image must provide python3 with "
          "numpy, pandas and msgpack (the hxpy server is added to it)")


def _parse_glibc(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    return (int(match[1]), int(match[2])) if match else None


# -- context files -----------------------------------------------------------------------------

def _hxpy_files() -> Snapshot:
    """The hxpy package's files, named ``hxpy/...`` in the context."""
    return [(name[len("container/"):], data, executable)
            for name, data, executable in snapshot_sources(find_sources())
            if name.startswith("container/hxpy/")]


def _directory_files(root: Path, prefix: str) -> Snapshot:
    taken = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [name for name in dirnames if name != "__pycache__"]
        for filename in filenames:
            path = Path(dirpath, filename)
            try:
                taken.append((f"{prefix}/{path.relative_to(root).as_posix()}",
                              path.read_bytes(), os.access(path, os.X_OK)))
            except OSError as exc:
                raise ImageBuildError(f"cannot read {path} for the build: {exc}") from exc
    return sorted(taken)
