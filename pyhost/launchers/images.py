"""Images a launcher runs and builds: what the runtime asks of them, kept apart from the
session lifecycle in :mod:`pyhost.launchers.base`.

The runtime writes an :class:`ImageRecipe` for a function; a launcher that builds images
turns it into a :class:`BuiltImage`, reporting the build's lines to a
:data:`BuildProgress` (Docker's ``Step N/M`` lines, read by :func:`parse_step`).
:class:`ImageBuilder` is the image-builder protocol: the questions asked of a launcher about
its images before anything starts, and the build. Every
:class:`~pyhost.launchers.base.Launcher` offers it; its defaults know nothing about images and
refuse to build, which is right for a launcher without images (the process launcher).
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import ConfigurationError

__all__ = ["FUNCTION_DIR", "BuildProgress", "BuiltImage", "ImageBuilder", "ImageRecipe",
           "parse_step"]

#: Called with each line a build prints. Lines of the form ``Step N/M : what`` (Docker's own
#: form, which every launcher's build writes the same way) mark the build's steps, so a
#: progress bar can follow them (:func:`parse_step`).
BuildProgress = Optional[Callable[[str], None]]

#: Where a function's files are in an image built for it: root-owned, read-only to the
#: session user, NOT on ``PYTHONPATH`` (jobs still get the files over the session channel).
FUNCTION_DIR = "/opt/function"

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


@dataclass(frozen=True)
class ImageRecipe:
    """What an image made for a function holds; a launcher that can build images makes it
    (:meth:`ImageBuilder.build_image`). The runtime writes the recipe, the launcher the build.

    Attributes:
        tag: what the image is tagged (e.g. ``pyhost/<project>/<function>:<version>``).
        base_image: the image to build FROM; None: the launcher's default session image,
            chosen as a session's is.
        requirements: pip requirement strings (a name with a version, a local wheel file),
            resolved on the host as wheels for the image's interpreter and platform.
        find_links: local wheel directories (or URLs) to resolve ``requirements`` from.
        index_url: the package index (pip's configuration when None).
        offline: resolve from ``find_links`` and the host's wheelhouse only, no index.
        instructions: shell commands, each run as root in its own ``RUN`` step after the
            requirements are installed.
        files: the function's source (relative path -> bytes), put at :data:`FUNCTION_DIR`.
        labels: extra labels for the image.
        allow_network: whether build steps may reach the network (default: they cannot).
        python: the "major.minor" the function wants; a base with another Python is refused.
        force: build even when an image built from the same content is there.
    """

    tag: str
    base_image: str | None = None
    requirements: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False
    instructions: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    allow_network: bool = False
    python: str | None = None
    force: bool = False


@dataclass(frozen=True)
class BuiltImage:
    """An image a launcher built (or found already built) from an :class:`ImageRecipe`.

    Attributes:
        image_id: the engine's id of the image.
        tag: its tag.
        base: the base image it was built from, as resolved (a reference).
        base_id: the base image's id.
        python: the "major.minor" of its Python, when known.
        content_hash: the hash of everything that went into it; an image with the same hash
            is not built again.
        built: False when an image with the same content hash was there and reused.
        packages: the distributions installed from the requirements, as ``name==version``.
        seconds: how long the build (or the check that found it current) took.
    """

    image_id: str
    tag: str
    base: str
    base_id: str
    python: str | None
    content_hash: str
    built: bool
    packages: tuple[str, ...] = ()
    seconds: float = 0.0


def parse_step(line: str) -> tuple[int, int, str] | None:
    """``(step, of, what)`` from a build line ``Step N/M : what``; None for other lines."""
    match = _STEP.match(line.strip())
    return (int(match[1]), int(match[2]), match[3]) if match else None


class ImageBuilder:
    """What a launcher knows about its images and how it builds one for a function.

    The runtime asks these before a run starts (which Python an image has, what a handler
    can import there, which image runs a Python version) and to build a function's image.
    These defaults know no image and build none; a launcher with images overrides them.
    """

    #: The launcher's name (:attr:`pyhost.launchers.base.Launcher.name`), said in refusals.
    name: str

    def python_version(self, image: str | None) -> str | None:
        """The "major.minor" of the Python that servers of ``image`` (None: the default)
        run, when it can be known before starting one; None when it cannot."""
        return None

    def importable_names(self, image: str | None,
                         fresh: bool = False) -> Container[str] | None:
        """The top-level module names a handler in a server of ``image`` (None: the
        default) can import, when they can be known before starting one; None when they
        cannot (then nothing is checked before the start). Answers may be cached; ``fresh``
        asks again (the image behind a tag may have changed), which a caller does before
        refusing a run on a cached answer.

        Raises:
            EngineUnavailable: the engine refused while finding the image.
        """
        return None

    def describe_image(self, image: str | None) -> str:
        """How a message names the Python that servers of ``image`` run."""
        return f"image {image}" if image else "the default session image"

    def image_for_python(self, version: str) -> str | None:
        """The image servers of Python ``version`` ("3.9") run in; None: the launcher's
        default (which has that Python, or whose Python cannot be known before a start).

        Raises:
            ConfigurationError: this launcher cannot run that Python (the message says what
                to pass instead).
            ImageNotFound: it could, but the image is not built (the message names the
                command that builds it).
        """
        have = self.python_version(None)
        if have is None or have == version:
            return None
        raise ConfigurationError(f"the {self.name or type(self).__name__} launcher runs "
                                 f"Python {have}, not {version}; pass image= of an image "
                                 f"with Python {version}")

    def check_recipe(self, recipe: ImageRecipe) -> None:
        """Refuse a recipe this launcher cannot build, before anything is recorded or made
        (the checks that need no engine).

        Raises:
            ConfigurationError: the launcher builds no images, or the recipe is malformed.
        """
        raise ConfigurationError(f"launcher {self.name or type(self).__name__!r} cannot build "
                                 "images; build with the docker launcher")

    def build_image(self, recipe: ImageRecipe, progress: BuildProgress = None) -> BuiltImage:
        """Build ``recipe`` (or find it built already), reporting each line to ``progress``.

        Raises:
            ConfigurationError: the launcher builds no images, or the recipe cannot work.
            ImageBuildError: a requirement cannot be resolved, or a build step failed (the
                message names the step and ends with its output).
            EngineUnavailable, ImageNotFound: the engine failed, or the base is not there.
        """
        self.check_recipe(recipe)
        raise ConfigurationError(f"launcher {self.name or type(self).__name__!r} cannot build "
                                 "images")
