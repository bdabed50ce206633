"""The libraries an image gives user code, and which of them an image has (``pyhost doctor``).

hxPy's image installs numpy, pandas, scipy, scikit-learn, python-dateutil, pytz, tzdata and
numexpr for the code sessions run; so does every session image pyhost builds (the Dockerfile's
pip route, the Debian bases' recipes in :mod:`.debian_base`). The server imports none but
numpy and pandas; the rest load only when user code imports them.

What an image has is asked of its own ``python3`` once, sandboxed
(:func:`~.probe.probe_python`), and kept on the host by image id: an image id is the hash of
its content, so the answer never goes stale, and ``pyhost doctor`` pays a container start
only for an image it has not seen.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import docker

from .client import inspect_image
from .probe import probe_python
from .wheels import cache_dir

__all__ = ["USER_LIBRARIES", "ImageLibraries", "image_libraries"]

# Distribution names, as their metadata spells them (Debian's python3-sklearn is
# "scikit-learn" too), in the order hxPy lists them.
USER_LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "python-dateutil", "pytz",
                  "tzdata", "numexpr")


class ImageLibraries:
    """Which of :data:`USER_LIBRARIES` one image has.

    Attributes:
        image: the image as named.
        image_id: its id.
        versions: library -> version, for those it has.
        missing: those it lacks.
    """

    def __init__(self, image: str, image_id: str, installed: dict[str, str]) -> None:
        have = {_normal(name): version for name, version in installed.items()}
        self.image = image
        self.image_id = image_id
        self.versions = {name: have[_normal(name)] for name in USER_LIBRARIES
                         if _normal(name) in have}
        self.missing = tuple(name for name in USER_LIBRARIES if name not in self.versions)

    def __str__(self) -> str:
        listed = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        lacks = f"; lacks {', '.join(self.missing)}" if self.missing else ""
        return f"{self.image}: {listed or 'none of them'}{lacks}"


def image_libraries(client: docker.DockerClient, image: str) -> ImageLibraries | None:
    """What ``image`` has of :data:`USER_LIBRARIES`; None when it is not present.

    Raises:
        ImageBuildError: its python3 could not be run or said something unexpected.
        EngineUnavailable: the engine refused.
    """
    attrs = inspect_image(client, image)
    if attrs is None:
        return None
    image_id = str(attrs["Id"])
    cached = _cache_file(image_id)
    installed = _read_cache(cached)
    if installed is None:
        installed = probe_python(client, image_id).installed
        _write_cache(cached, installed)
    return ImageLibraries(image, image_id, installed)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _cache_file(image_id: str) -> Path:
    digest = image_id.partition(":")[2] or image_id
    return cache_dir() / "image-probes" / f"{re.sub(r'[^0-9a-f]', '', digest.lower())}.json"


def _read_cache(path: Path) -> dict[str, str] | None:
    """The distributions recorded for an image; None when absent or not what we write (the
    probe is then run again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(key, str) and isinstance(value, str)
                                             for key, value in data.items()):
        return None
    return data


def _write_cache(path: Path, installed: dict[str, str]) -> None:
    """Best effort: a cache that cannot be written costs a probe next time, nothing more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(installed, sort_keys=True), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass
