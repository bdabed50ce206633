"""The session image's Python packages, pinned in one file: ``container/constraints.txt``.

The file names one exact version of every distribution a session image installs, for each
Python version an image can have: a line is ``name==version``, optionally followed by a
``python_version`` marker (``numpy==2.0.2; python_version == "3.9"``), so one file serves
the 3.9, 3.11 and 3.13 images alike. It is both a pip constraints file and a requirements
file, and both build routes honour it:

* on ``python:3.X-slim`` the Dockerfile's pip installs it as its requirements, judging each
  marker by the image's own interpreter;
* a Debian base (:mod:`.debian_base`) takes only Debian's ``python3``; the host resolves the
  pins for that python3 (:func:`pins_for`: markers judged here, because pip would judge them
  by the host's interpreter) and unpacks them as wheels. Debian's own python3-numpy and
  friends would give whatever version the suite has on the day, which no file can pin.

After a build, the image's ``python3`` is asked what it has; an image whose versions differ
from the pins is refused, and the versions it has are its :data:`VERSIONS_LABEL` (read back
from the image, not copied from the file), which ``pyhost doctor`` shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.utils import canonicalize_name

from ...errors import ImageBuildError

__all__ = ["CONSTRAINTS", "TOOLING", "VERSIONS_LABEL", "Pin", "format_versions",
           "parse_constraints", "parse_versions", "pin_problems", "pins_for", "read_constraints",
           "unpinned"]

CONSTRAINTS = "constraints.txt"  # in container/, so it is in the build context and its hash
VERSIONS_LABEL = "org.pyhost.versions"  # "click==8.1.8,h11==0.16.0,...": what an image holds
# What an interpreter carries to install packages, not a package of the image.
TOOLING = frozenset({"pip", "setuptools", "wheel"})

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(?P<version>[A-Za-z0-9.+!-]+)"
                   r"\s*(?:;\s*(?P<marker>.+))?$")
_MARKER_WORDS = {"python_version", "and", "or", "in", "not"}


@dataclass(frozen=True)
class Pin:
    """One line of the constraints file.

    Attributes:
        name: the distribution's name, normalized (``scikit-learn``, ``typing-extensions``).
        version: the exact version.
        marker: the Python versions it is for (None: all).
        line: its line number, for messages.
    """

    name: str
    version: str
    marker: Marker | None
    line: int

    def applies(self, python: str) -> bool:
        """Whether this pin is for Python ``python`` ("3.11")."""
        return self.marker is None or self.marker.evaluate({"python_version": python})


def parse_constraints(text: str, where: str = CONSTRAINTS) -> list[Pin]:
    """The pins in a constraints file's text.

    Raises:
        ImageBuildError: a line is not ``name==version`` with at most a ``python_version``
            marker (the message names ``where`` and the line).
    """
    pins = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ImageBuildError(f"{where}, line {number}: {line!r} is not name==version "
                                  "(a session image's packages are pinned to one version)")
        pins.append(Pin(canonicalize_name(match["name"]), match["version"],
                        _marker(match["marker"], where, number), number))
    return pins


def _marker(text: str | None, where: str, number: int) -> Marker | None:
    """A line's marker, which may speak of python_version only: an image is built on any
    host, so a marker on the host's platform or implementation would pin by accident."""
    if text is None:
        return None
    words = set(re.findall(r"[A-Za-z_]+", re.sub(r"(['\"]).*?\1", "", text)))
    others = sorted(words - _MARKER_WORDS)
    if others:
        raise ImageBuildError(f"{where}, line {number}: the marker {text!r} may test "
                              f"python_version only, not {', '.join(others)}")
    try:
        return Marker(text)
    except InvalidMarker as exc:
        raise ImageBuildError(f"{where}, line {number}: {exc}") from exc


def read_constraints(path: Path) -> list[Pin]:
    """The pins in the constraints file at ``path``.

    Raises:
        ImageBuildError: it cannot be read or a line is malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageBuildError(f"cannot read the image's constraints {path}: {exc}") from exc
    return parse_constraints(text, str(path))


def pins_for(pins: list[Pin], python: str) -> dict[str, str]:
    """``{name: version}`` of the pins for Python ``python`` ("3.9"), in name order.

    Raises:
        ImageBuildError: a name is pinned twice for that Python.
    """
    chosen: dict[str, Pin] = {}
    for pin in pins:
        if not pin.applies(python):
            continue
        if pin.name in chosen:
            raise ImageBuildError(f"{CONSTRAINTS} pins {pin.name} twice for Python {python} "
                                  f"(lines {chosen[pin.name].line} and {pin.line})")
        chosen[pin.name] = pin
    return {name: chosen[name].version for name in sorted(chosen)}


def pin_problems(installed: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """What differs between an image's distributions (name -> version, as its python3 says)
    and the pins: one phrase per pinned distribution that is missing or at another version."""
    have = _normalized(installed)
    problems = []
    for name, version in wanted.items():
        if name not in have:
            problems.append(f"{name} is missing (pinned {version})")
        elif have[name] != version:
            problems.append(f"{name} is {have[name]}, pinned {version}")
    return problems


def unpinned(installed: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The distributions an image has that no pin names, its :data:`TOOLING` aside. Not a
    build failure (a ``--base`` may carry its own), but the images pyhost makes have none."""
    have = _normalized(installed)
    return {name: have[name] for name in sorted(have)
            if name not in wanted and name not in TOOLING}


def _normalized(installed: Mapping[str, str]) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in installed.items()}


def format_versions(versions: Mapping[str, str]) -> str:
    """The value of :data:`VERSIONS_LABEL`: ``name==version`` joined by commas, by name."""
    return ",".join(f"{name}=={versions[name]}" for name in sorted(versions))


def parse_versions(label: str) -> dict[str, str]:
    """:data:`VERSIONS_LABEL`'s value back as ``{name: version}`` (empty for ``""``)."""
    return dict(item.split("==", 1) for item in label.split(",") if "==" in item)
