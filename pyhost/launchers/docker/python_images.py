"""A session image per Python version: ``hxpy:py3.9``, ``hxpy:py3.11``, ``hxpy:py3.13``.

They share the default image's repository: with ``PYHOST_IMAGE=hxpy-pins:latest`` they are
``hxpy-pins:py3.9``, ..., so a checkout that names its own default image keeps these apart
too (with ``PYHOST_BASE_REPOSITORY`` for its Debian bases, :mod:`.debian_base`).

Each version has a :class:`PythonRoute`, the ways its base can be had, tried in order:

1. ``python:3.X-slim`` when the engine has it;
2. ``pyhost-base:<suite>`` when present and made with today's recipe, for the Debian suite
   whose python3 is that version (:data:`~.debian_base.SUITE_PYTHON`);
3. a pull of ``python:3.X-slim``, where a registry answers;
4. ``pyhost-base:<suite>`` made with debootstrap (:func:`~.debian_base.build_debian_base`).

Present images come first so an unchanged build asks no registry and is a no-op. A version
with neither a registry image nor a Debian suite (3.10 and 3.12 offline) has no route:
:func:`python_route` and :func:`image_for_python` say what to pass instead.

Each image is labelled with its Python and glibc (``org.pyhost.python``,
``org.pyhost.glibc``) and the id of the base it was built on, so a base made again (a new
package list) rebuilds the image, while an unchanged one is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import docker
from docker.utils import parse_repository_tag

from ...errors import ConfigurationError, ImageBuildError, ImageNotFound
from .client import inspect_image
from .debian_base import (
    GLIBC_LABEL,
    PACKAGES_LABEL,
    PYTHON_LABEL,
    SUITE_PYTHON,
    base_packages,
    base_tag,
    build_debian_base,
)
from .dockerd import ensure_engine
from .image import (
    BASE_ID_LABEL,
    DEFAULT_TAG,
    build_image,
    find_image,
    image_labels,
    image_python,
    try_pull,
)
from .probe import probe_python
from .system import Progress, say

__all__ = ["DEBIAN_VERSIONS", "SUPPORTED_VERSIONS", "PythonRoute",
           "build_python_image", "image_for_python", "python_images", "python_route"]

# The versions a runtime function may name (pyhost.runtime.sources.PYTHON_VERSIONS).
SUPPORTED_VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
# The versions a Debian suite provides, so `--python all` can build them with no registry.
DEBIAN_VERSIONS = tuple(sorted(SUITE_PYTHON.values(), key=lambda v: tuple(map(int,
                                                                               v.split(".")))))


@dataclass(frozen=True)
class PythonRoute:
    """Where the image of one Python version comes from.

    Attributes:
        version: "major.minor".
        suite: the Debian suite whose python3 it is; None when no suite has it.
    """

    version: str
    suite: str | None

    @property
    def tag(self) -> str:
        """The session image of this version, ``hxpy:py3.9`` (in the default image's
        repository)."""
        return f"{parse_repository_tag(DEFAULT_TAG)[0]}:py{self.version}"

    @property
    def registry_base(self) -> str:
        """The official slim image of this version."""
        return f"python:{self.version}-slim"

    @property
    def debian_base(self) -> str | None:
        """``pyhost-base:<suite>``, or None when no suite has this version."""
        return base_tag(self.suite) if self.suite else None

    def no_route(self) -> str:
        """Why no image of this version can be made here, and what to pass instead."""
        return (f"no image for Python {self.version} can be made on this machine: no Debian "
                f"suite ships it (only {', '.join(DEBIAN_VERSIONS)}) and {self.registry_base} "
                "is neither present nor pullable; pass image= (a session image with Python "
                f"{self.version}) or base_image= (an image with Python {self.version} to build "
                f"on), or build one with `pyhost image build --python {self.version} --base "
                "<image with that Python>`")


def python_route(version: str) -> PythonRoute:
    """The route of ``version`` ("3.9").

    Raises:
        ConfigurationError: not one of :data:`SUPPORTED_VERSIONS`.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ConfigurationError(f"Python {version!r}: the versions are "
                                 f"{', '.join(SUPPORTED_VERSIONS)}")
    suite = next((name for name, python in SUITE_PYTHON.items() if python == version), None)
    return PythonRoute(version, suite)


def build_python_image(version: str, base: str | None = None, progress: Progress = None,
                       force: bool = False, client: docker.DockerClient | None = None) -> str:
    """Build ``hxpy:py<version>`` unless it is up to date (see the module docstring).

    Args:
        version: "3.9", "3.11", ...
        base: build on this image instead of the route's (it must have that Python).
        progress: called with a line per step.
        force: rebuild even when up to date (the base is reused, not remade).
        client: the engine; :func:`~.dockerd.ensure_engine` is called when omitted.

    Returns:
        The image id.

    Raises:
        ConfigurationError: an unsupported version.
        ImageBuildError: no route gives a base (the message says what to pass instead),
            the base has another Python, or the build failed.
        EngineUnavailable: the engine refused a request.
    """
    route = python_route(version)
    client = client or ensure_engine(progress=progress)
    base = base or _route_base(client, route, progress)
    python, glibc, base_id = _base_facts(client, base, route.tag)
    if python != version:
        raise ImageBuildError(f"{base} has Python {python}, not {version}; pass --base an "
                              f"image with Python {version}")
    labels = {PYTHON_LABEL: python, GLIBC_LABEL: glibc, BASE_ID_LABEL: base_id}
    return build_image(route.tag, base=base, progress=progress, force=force, client=client,
                       labels=labels)


def _route_base(client: docker.DockerClient, route: PythonRoute, progress: Progress) -> str:
    if inspect_image(client, route.registry_base) is not None:
        return route.registry_base
    debian = route.debian_base
    if debian is not None and route.suite is not None:
        made = inspect_image(client, debian)
        if made is not None and image_labels(made).get(PACKAGES_LABEL) == \
                base_packages(route.suite):
            return debian
    if try_pull(client, route.registry_base, progress):
        return route.registry_base
    if debian is None or route.suite is None:
        raise ImageBuildError(route.no_route())
    say(progress, f"making {debian} with debootstrap (Python {route.version})")
    build_debian_base(client, suite=route.suite, progress=progress)
    return debian


def _base_facts(client: docker.DockerClient, base: str, tag: str) -> tuple[str, str, str]:
    """``(python, glibc, image id)`` of ``base``: from its labels when a Debian base of ours
    carries them, or from ``tag`` when it was built on this very base; else asked of its
    python3 in a throwaway container (no network), which costs a start."""
    attrs = inspect_image(client, base)
    if attrs is None:
        raise ImageBuildError(f"base image {base!r} is not present")
    base_id = str(attrs["Id"])
    built = inspect_image(client, tag)
    for labels in (image_labels(attrs), image_labels(built) if built else {}):
        if (labels.get(PYTHON_LABEL) and labels.get(GLIBC_LABEL)
                and labels.get(BASE_ID_LABEL, base_id) == base_id):
            return labels[PYTHON_LABEL], labels[GLIBC_LABEL], base_id
    facts = probe_python(client, base_id)
    return facts.python, facts.glibc_text, base_id


def image_for_python(client: docker.DockerClient, version: str) -> str | None:
    """The image sessions of Python ``version`` run in.

    None (the default image) when the default image has that Python; else
    ``hxpy:py<version>`` when present. The default comes first so that runs of the default
    python_version (3.11) keep running where sessions do (``hxpy:latest``, or the image
    ``PYHOST_IMAGE`` names), as they did before per-version images existed.

    Raises:
        ConfigurationError: an unsupported version, or one no route provides here (the
            message says to pass ``image=`` or ``base_image=``).
        ImageNotFound: a version that can be built but is not: run
            ``pyhost image build --python <version>``.
        EngineUnavailable: the engine refused a request.
    """
    route = python_route(version)
    try:
        default: str | None
        default, attrs = find_image(client)
    except ImageNotFound:
        default, attrs = None, None
    if attrs is not None and image_python(attrs) == version:
        return None
    if inspect_image(client, route.tag) is not None:
        return route.tag
    if route.suite is None and inspect_image(client, route.registry_base) is None:
        raise ConfigurationError(route.no_route())
    have = f" (the default image {default} has Python {image_python(attrs)})" if attrs else ""
    raise ImageNotFound(f"no session image for Python {version}{have}: build it with "
                        f"`pyhost image build --python {version}`")


def python_images(client: docker.DockerClient,
                  versions: Sequence[str] = SUPPORTED_VERSIONS) -> dict[str, str]:
    """``{version: image}`` for each version that has an image now: its ``hxpy:py3.X``, or
    the default image for its own Python (for ``pyhost doctor``)."""
    found = {}
    for version in versions:
        tag = python_route(version).tag
        if inspect_image(client, tag) is not None:
            found[version] = tag
    default = inspect_image(client, DEFAULT_TAG)
    python = image_python(default) if default is not None else None
    if python is not None and python not in found:
        found[python] = DEFAULT_TAG
    return dict(sorted(found.items(), key=lambda item: tuple(map(int, item[0].split(".")))))
