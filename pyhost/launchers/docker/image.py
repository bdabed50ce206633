"""The session image: building it, checking it is current, and choosing one to run.

:func:`build_image` builds ``Dockerfile.hxpy`` with only that file and ``container/`` as the
context, and labels the image with a hash of exactly those sources (:mod:`.image_context`), so
an unchanged tree is a no-op. The packages it installs are those ``container/constraints.txt``
pins; the built image's python3 is asked for their versions, an image that differs is
refused, and the versions it holds become its ``org.pyhost.versions`` label (:mod:`.pins`).
Its base is ``python:3.12-slim`` when the engine has it or can pull it; with no registry in
reach (air-gapped machines, CI) a Debian base is made with ``debootstrap`` from the
machine's own apt mirror and imported as ``pyhost-base:<suite>`` (:mod:`.debian_base`).
:func:`resolve_image` picks the image a session runs; :func:`image_status` serves ``pyhost
doctor``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

import docker
from docker.utils import parse_repository_tag
from packaging.utils import canonicalize_name

from ...errors import EngineUnavailable, ImageBuildError, ImageNotFound, short
from .client import engine_errors, inspect_image
from .debian_base import (
    BASE_LABEL,
    BASE_REPOSITORY,
    DEFAULT_SUITE,
    GLIBC_LABEL,
    PACKAGES_LABEL,
    PYTHON_LABEL,
    SUITE_PYTHON,
    base_packages,
    base_tag,
    build_debian_base,
)
from .dockerd import ensure_engine
from .image_context import (
    CONSTRAINTS_NAME,
    DOCKERFILE,
    SourceTree,
    context_tar,
    find_sources,
    snapshot_constraints,
    snapshot_hash,
    snapshot_sources,
    source_hash,
)
from .pins import VERSIONS_LABEL, Pin, format_versions, pin_problems, pins_for
from .probe import probe_python
from .system import Progress, say

__all__ = [
    "BASE_ID_LABEL",
    "BASE_LABEL",
    "BUILD_LABEL",
    "DEFAULT_BASE",
    "DEFAULT_SUITE",
    "DEFAULT_TAG",
    "GLIBC_LABEL",
    "HASH_LABEL",
    "IMAGE_CANDIDATES",
    "PYTHON_LABEL",
    "SERVER_ENTRYPOINT",
    "VERSIONS_LABEL",
    "ImageStatus",
    "build_image",
    "drop_replaced",
    "follow_build",
    "image_labels",
    "image_python",
    "find_image",
    "image_status",
    "resolve_base",
    "resolve_image",
    "try_pull",
]

# PYHOST_IMAGE names the session image to build and run, e.g. to keep two checkouts apart.
DEFAULT_TAG = os.environ.get("PYHOST_IMAGE") or "hxpy:latest"
DEFAULT_BASE = "python:3.12-slim"
HASH_LABEL = "org.pyhost.hash"
BASE_ID_LABEL = "org.pyhost.base-id"  # the id of the base an image was built on
# The content hash of a function's image (:mod:`.function_image`), never a session default.
BUILD_LABEL = "org.pyhost.build"
# Looked for, in order, when no image is asked for by name.
IMAGE_CANDIDATES = ((DEFAULT_TAG,) if os.environ.get("PYHOST_IMAGE")
                    else ("hxpy:latest", "hxpy:3.12", "hxpy:3.11"))

#: How a session image starts its server (Dockerfile.hxpy says the same; a test checks it):
#: ``python3 -m hxpy`` without runpy, whose imports (importlib.util, contextlib) cost about
#: 3 ms of CPU in every cold start. ``hxpy.__main__`` makes itself ``__main__`` and puts its
#: path in ``sys.argv[0]``, so user code sees what ``-m`` would have given it.
SERVER_ENTRYPOINT = ("python3", "-c", "import hxpy.__main__")

_PULL_TIMEOUT = 20
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BUILD_TIMEOUT = 3600


# -- status ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageStatus:
    """What ``pyhost doctor`` reports about the session image.

    Attributes:
        tag: the image reference looked at.
        present: whether the engine has it.
        image_id: its id when present.
        built_hash: the source hash it was built from (its ``org.pyhost.hash`` label).
        current_hash: the hash of the sources now, or ``None`` if they are not installed.
        up_to_date: present and built from the current sources (``None`` if unknowable).
        base: the base it was built on (its ``org.pyhost.base`` label).
        size: its size in bytes.
        created: its creation time as the engine reports it.
    """

    tag: str
    present: bool
    image_id: str | None = None
    built_hash: str | None = None
    current_hash: str | None = None
    up_to_date: bool | None = None
    base: str | None = None
    size: int | None = None
    created: str | None = None


def image_status(tag: str = DEFAULT_TAG,
                 client: docker.DockerClient | None = None) -> ImageStatus:
    """Whether ``tag`` is present and built from the current sources.

    Raises:
        EngineUnavailable: no engine answers (none is installed or started for this).
    """
    client = client or ensure_engine(install=False)
    try:
        current: str | None = source_hash()
    except ImageBuildError:
        current = None
    attrs = inspect_image(client, tag)
    if attrs is None:
        return ImageStatus(tag=tag, present=False, current_hash=current)
    labels = image_labels(attrs)
    built = labels.get(HASH_LABEL)
    return ImageStatus(
        tag=tag,
        present=True,
        image_id=attrs.get("Id"),
        built_hash=built,
        current_hash=current,
        up_to_date=None if current is None else built == current,
        base=labels.get(BASE_LABEL),
        size=attrs.get("Size"),
        created=attrs.get("Created"),
    )


# -- building the session image --------------------------------------------------------------

def build_image(tag: str = DEFAULT_TAG, base: str | None = None, progress: Progress = None,
                force: bool = False, client: docker.DockerClient | None = None,
                sources: SourceTree | None = None,
                labels: Mapping[str, str] | None = None) -> str:
    """Build the session image unless one built from the same sources is already there.

    Args:
        tag: the tag to give the image.
        base: the base image; by default :func:`resolve_base` picks (or makes) one. An
            existing image built on another base, or on an older image of the same name (a
            Debian base made again), is rebuilt.
        progress: called with one line of text per build step and per phase of a base build.
        force: rebuild even when the image is up to date (the base is reused, not remade).
        client: the engine; :func:`~pyhost.launchers.docker.dockerd.ensure_engine` is called
            when omitted.
        sources: the Dockerfile and container/ to build from; :func:`find_sources` by default.
        labels: more labels to put on the image (its Python, glibc, the base's id); an image
            whose labels differ from these is rebuilt, so a remade base rebuilds it too.

    Returns:
        The image id (``sha256:...``).

    Raises:
        EngineUnavailable: no engine answers, or it refused a request.
        ImageBuildError: the sources are missing, no base could be had, the build failed
            (the message ends with the build's last lines), or the image does not hold the
            versions ``container/constraints.txt`` pins (the message names each one).
    """
    client = client or ensure_engine(progress=progress)
    snapshot = snapshot_sources(sources or find_sources())
    digest = snapshot_hash(snapshot)
    # The base first (a no-op when present and current): a Debian base made again because
    # its package list changed has a new id, and the image on it is rebuilt.
    base = base or resolve_base(client, progress=progress)
    base_attrs = inspect_image(client, base)
    if base_attrs is None and try_pull(client, base, progress):
        base_attrs = inspect_image(client, base)
    if base_attrs is None:
        raise ImageBuildError(f"base image {base!r} is not present and cannot be pulled")
    wanted = {BASE_ID_LABEL: str(base_attrs["Id"]), **(labels or {})}
    existing = inspect_image(client, tag)
    if existing is not None and not force:
        labels = image_labels(existing)
        if (labels.get(HASH_LABEL) == digest and labels.get(BASE_LABEL) == base
                and VERSIONS_LABEL in labels
                and all(labels.get(key) == value for key, value in wanted.items())):
            say(progress, f"{tag} is up to date ({digest[:12]})")
            return str(existing["Id"])
    say(progress, f"building {tag} on {base} (sources {digest[:12]})")
    pins = snapshot_constraints(snapshot)
    # A Debian base of ours carries the pinned packages: its build needs no network, and
    # gets none (pip, on a registry base, needs the index).
    offline = image_labels(base_attrs).get(BASE_LABEL) == "debootstrap"
    # Built untagged: the tag is given only to an image whose versions are the pinned ones.
    built = _run_build(client, context_tar(snapshot), tag, None,
                       {HASH_LABEL: digest, BASE_LABEL: base, **wanted}, progress,
                       buildargs={"BASE": base}, network="none" if offline else None)
    versions = _pinned_versions(client, built, tag, base, pins)
    say(progress, f"{tag} holds the pinned versions: "
                  + ", ".join(f"{name} {version}" for name, version in versions.items()))
    image_id = _run_build(client, context_tar([(DOCKERFILE, f"FROM {built}\n".encode(), False)]),
                          tag, tag, {VERSIONS_LABEL: format_versions(versions)}, progress)
    if existing is not None and existing.get("Id") != image_id:
        drop_replaced(client, str(existing["Id"]))
    return image_id


def _run_build(client: docker.DockerClient, context: io.BytesIO, what: str, tag: str | None,
               labels: dict[str, str], progress: Progress,
               buildargs: dict[str, str] | None = None, network: str | None = None) -> str:
    """Build ``DOCKERFILE`` from ``context`` (tagged ``tag`` unless None; its steps on the
    network ``network``, the engine's default when None); the image id."""
    recent: list[str] = []

    def line(text: str) -> None:
        recent[:] = (recent + [text])[-20:]
        say(progress, text)

    with engine_errors(f"the engine failed while building {what}"):
        stream = client.api.build(
            fileobj=context, custom_context=True, dockerfile=DOCKERFILE, tag=tag,
            buildargs=buildargs or {}, labels=labels, network_mode=network,
            rm=True, forcerm=True, pull=False, decode=True, timeout=_BUILD_TIMEOUT,
        )
        image_id, error = follow_build(stream, line)
    if error is not None:
        tail = "\n".join(recent)
        raise ImageBuildError(f"building {what} failed: {error}\n{tail}")
    if image_id is None:
        attrs = inspect_image(client, tag) if tag else None
        if attrs is None:
            raise ImageBuildError(f"the build of {what} ended without an image")
        image_id = str(attrs["Id"])
    return image_id


def _pinned_versions(client: docker.DockerClient, image_id: str, tag: str, base: str,
                     pins: list[Pin]) -> dict[str, str]:
    """The pinned packages' versions, as the built image's own python3 reports them.

    Raises:
        ImageBuildError: one is missing or at another version than pinned (the image is
            removed); the image's python3 could not be asked.
    """
    facts = probe_python(client, image_id, needs="its package versions are checked")
    wanted = pins_for(pins, facts.python)
    problems = pin_problems(facts.installed, wanted)
    if problems:
        with contextlib.suppress(EngineUnavailable):
            drop_replaced(client, image_id)
        raise ImageBuildError(f"{tag} built on {base} does not hold what {CONSTRAINTS_NAME} "
                              f"pins for Python {facts.python}: {'; '.join(problems)}")
    have = {str(canonicalize_name(name)): version for name, version in facts.installed.items()}
    return {name: have[name] for name in wanted}


def follow_build(stream: Iterable[dict[str, Any]],
                 line: Callable[[str], None]) -> tuple[str | None, str | None]:
    """Read an engine build's decoded stream to its end: ``line`` gets each non-blank output
    line (the engine splits lines across chunks); returns ``(image id or None, the engine's
    error or None)``. Call it inside :func:`engine_errors`: the stream raises SDK errors."""
    pending = ""
    image_id: str | None = None
    for chunk in stream:
        if "stream" in chunk:  # a step's stderr comes coloured: keep the text alone
            chunk = {**chunk, "stream": _ANSI.sub("", str(chunk["stream"]))}
        if "error" in chunk:
            if pending.strip():
                line(pending.rstrip())
            return image_id, str(chunk["error"]).strip()
        *lines, pending = (pending + str(chunk.get("stream", ""))).split("\n")
        for text in lines:
            if text.strip():
                line(text.rstrip())
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
    if pending.strip():
        line(pending.rstrip())
    return image_id, None


def drop_replaced(client: docker.DockerClient, old_id: str, label: str = HASH_LABEL) -> None:
    """Remove the image a rebuild replaced, if we built it (it carries ``label``) and nothing
    else uses it."""
    old = inspect_image(client, old_id)
    if old is None or label not in image_labels(old) or old.get("RepoTags"):
        return
    try:
        with engine_errors(f"cannot remove the replaced image {old_id[:19]}"):
            client.api.remove_image(old_id)
    except EngineUnavailable:
        pass  # still used by a container or another tag: leave it to its owner


# -- the base image --------------------------------------------------------------------------

def resolve_base(client: docker.DockerClient, progress: Progress = None,
                 suite: str = DEFAULT_SUITE) -> str:
    """Name a base image that is present, making one if need be.

    In order: :data:`DEFAULT_BASE` if present; ``pyhost-base:<suite>`` if present and made
    with today's package list; a pull of :data:`DEFAULT_BASE`; a Debian base built with
    :func:`build_debian_base`.

    Raises:
        EngineUnavailable: the engine refused a request.
        ImageBuildError: no base could be had.
    """
    debian = base_tag(suite)
    if inspect_image(client, DEFAULT_BASE) is not None:
        return DEFAULT_BASE
    made = inspect_image(client, debian)
    if made is not None and image_labels(made).get(PACKAGES_LABEL) == base_packages(suite):
        return debian
    if try_pull(client, DEFAULT_BASE, progress):
        return DEFAULT_BASE
    build_debian_base(client, suite=suite, progress=progress)
    return debian


def try_pull(client: docker.DockerClient, reference: str, progress: Progress) -> bool:
    """Pull ``reference``; False (said through ``progress``) when no registry gives it."""
    say(progress, f"pulling {reference}")
    repository, tag = parse_repository_tag(reference)
    saved = client.api.timeout
    # A short read timeout ends a dead registry connection quickly; a live pull keeps
    # streaming, so it is not cut short.
    client.api.timeout = _PULL_TIMEOUT
    try:
        with engine_errors(f"cannot pull {reference}"):
            for chunk in client.api.pull(repository, tag=tag or "latest", stream=True,
                                         decode=True):
                if "error" in chunk:
                    raise ImageBuildError(str(chunk["error"]))
    except (ImageBuildError, EngineUnavailable) as exc:
        say(progress, f"cannot pull {reference}: {short(exc, first_line=True)}")
        return False
    finally:
        client.api.timeout = saved
    return inspect_image(client, reference) is not None


# -- choosing the image a session runs -------------------------------------------------------

def resolve_image(client: docker.DockerClient, requested: str | None = None) -> str:
    """Choose the image a session runs (see :func:`find_image`); its reference."""
    return find_image(client, requested)[0]


def find_image(client: docker.DockerClient,
               requested: str | None = None) -> tuple[str, dict[str, Any]]:
    """Choose the image a session runs, and the engine's description of it.

    An image asked for by name must be present: nothing is pulled, and running user code in
    another image than the one asked for would be a surprise. Otherwise the first present of
    :data:`IMAGE_CANDIDATES` is taken, then the newest image carrying the ``org.pyhost.hash``
    label under any tag.

    Returns:
        An image reference the engine knows (a tag, or an id for an untagged image), and
        its inspect answer (so that callers need not ask again).

    Raises:
        ImageNotFound: no such image; the message says to run ``pyhost image build``.
        EngineUnavailable: the engine refused a request.
    """
    if requested:
        attrs = inspect_image(client, requested)
        if attrs is not None:
            return requested, attrs
        raise ImageNotFound(f"image {requested!r} is not present on this engine (images are "
                            "not pulled); build it with `pyhost image build`")
    for candidate in IMAGE_CANDIDATES:
        attrs = inspect_image(client, candidate)
        if attrs is not None:
            return candidate, attrs
    with engine_errors("the engine refused to list images"):
        ours = client.api.images(filters={"label": HASH_LABEL})
    for image in sorted(ours, key=lambda found: found.get("Created", 0), reverse=True):
        if BUILD_LABEL in (image.get("Labels") or {}):
            continue  # a function's image (it inherits the label): not a default for all
        tags = [tag for tag in image.get("RepoTags") or () if tag != "<none>:<none>"]
        reference = tags[0] if tags else str(image["Id"])
        attrs = inspect_image(client, reference)
        if attrs is not None:
            return reference, attrs
    raise ImageNotFound(f"no session image is present (looked for {', '.join(IMAGE_CANDIDATES)} "
                        f"and images labelled {HASH_LABEL}); run `pyhost image build`")


def image_python(attrs: dict[str, Any]) -> str | None:
    """The "major.minor" Python of an image: its ``org.pyhost.python`` label, else (an image
    built by :func:`build_image`) its base's (``python:3.X-slim``, or a Debian suite's
    python3); None when neither tells."""
    labels = image_labels(attrs)
    if re.fullmatch(r"\d+\.\d+", labels.get(PYTHON_LABEL, "")):
        return labels[PYTHON_LABEL]
    base = labels.get(BASE_LABEL, "")
    match = re.match(r"^(?:[^/]*/)?python:(\d+\.\d+)", base)
    if match:
        return match.group(1)
    suite = base.rpartition(":")[2] if base.startswith(f"{BASE_REPOSITORY}:") else ""
    return SUITE_PYTHON.get(suite)


# -- small helpers ---------------------------------------------------------------------------

def image_labels(attrs: Mapping[str, Any]) -> dict[str, str]:
    """An image's labels, from the engine's inspect answer (empty when it has none)."""
    return dict((attrs.get("Config") or {}).get("Labels") or {})
