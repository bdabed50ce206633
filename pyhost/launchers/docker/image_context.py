"""The session image's sources: finding them, hashing them, and the build context made of
them.

``pyhost image build`` (:mod:`pyhost.launchers.docker.image`) sends a context holding only
``Dockerfile.hxpy`` and ``container/`` (:class:`SourceTree`; from an installed wheel, its
``hxpy`` package and the constraints file it ships), read once (:func:`snapshot_sources`) so
that the hash labelling the image (:func:`source_hash`) is of exactly what was sent, the
constraints included, as a reproducible tar (:func:`context_tar`). A function's image
(:mod:`pyhost.launchers.docker.function_image`) copies the same ``hxpy`` files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import ImageBuildError
from .pins import CONSTRAINTS, Pin, parse_constraints

__all__ = ["CONSTRAINTS_NAME", "DOCKERFILE", "Snapshot", "SourceTree", "context_tar",
           "find_sources", "snapshot_constraints", "snapshot_hash", "snapshot_sources",
           "source_hash"]

DOCKERFILE = "Dockerfile.hxpy"
# The image's pinned packages (:mod:`.pins`), by its name in the context.
CONSTRAINTS_NAME = f"container/{CONSTRAINTS}"

# Bumped when the way the context is laid out changes, so old images stop matching.
_CONTEXT_FORMAT = b"pyhost-context-1"
# A fixed mtime keeps the context tar, and so the engine's build cache, reproducible.
_CONTEXT_MTIME = 946684800  # 2000-01-01
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class SourceTree:
    """Where the image's sources live.

    Attributes:
        dockerfile: the ``Dockerfile.hxpy`` file.
        container: the ``container/`` directory; everything under it goes into the context
            (under the name ``container/...``), caches and bytecode excepted.
    """

    dockerfile: Path
    container: Path

    @property
    def constraints(self) -> Path:
        """The constraints file pinning the image's packages (:mod:`.pins`)."""
        return self.container / CONSTRAINTS

    def files(self) -> list[tuple[str, Path]]:
        """``(name in the context, path on disk)`` pairs, sorted by name."""
        found = [(DOCKERFILE, self.dockerfile)]
        for dirpath, dirnames, filenames in os.walk(self.container):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
            for filename in filenames:
                if filename.endswith(_SKIP_SUFFIXES):
                    continue
                path = Path(dirpath, filename)
                rel = path.relative_to(self.container).as_posix()
                found.append((f"container/{rel}", path))
        return sorted(found)


def find_sources() -> SourceTree:
    """Locate ``Dockerfile.hxpy`` and the hxpy sources.

    In a source checkout they sit beside the ``pyhost`` package. An installed wheel carries the
    ``hxpy`` package; the Dockerfile and the constraints are found there only if the wheel
    ships them as ``pyhost/Dockerfile.hxpy`` and ``pyhost/constraints.txt``.

    Raises:
        ImageBuildError: the sources are not installed; the message says where they were sought.
    """
    package_dir = Path(__file__).resolve().parents[2]  # the pyhost package
    checkout = package_dir.parent
    if (checkout / DOCKERFILE).is_file() and (checkout / "container" / "hxpy").is_dir():
        return SourceTree(checkout / DOCKERFILE, checkout / "container")
    spec = importlib.util.find_spec("hxpy")
    shipped = package_dir / DOCKERFILE
    if (shipped.is_file() and (package_dir / CONSTRAINTS).is_file() and spec is not None
            and spec.origin):
        # Only the hxpy package itself is taken from site-packages, never its neighbours.
        return _WheelSourceTree(shipped, Path(spec.origin).resolve().parent.parent)
    raise ImageBuildError(
        f"cannot build the session image: {DOCKERFILE} and container/hxpy are not in {checkout} "
        f"(nor is {shipped}); build from a pyhost source checkout, or use an image already "
        "built (`pyhost doctor` shows whether one is present)"
    )


@dataclass(frozen=True)
class _WheelSourceTree(SourceTree):
    """A tree whose ``container`` is site-packages: only its ``hxpy`` package is taken, and
    the constraints shipped beside the Dockerfile."""

    @property
    def constraints(self) -> Path:
        return self.dockerfile.parent / CONSTRAINTS

    def files(self) -> list[tuple[str, Path]]:
        package = SourceTree(self.dockerfile, self.container / "hxpy")
        named = [(_rename_under_hxpy(name), path) for name, path in package.files()]
        return sorted([*named, (CONSTRAINTS_NAME, self.constraints)])


def _rename_under_hxpy(name: str) -> str:
    return name if name == DOCKERFILE else "container/hxpy/" + name[len("container/"):]


def source_hash(sources: SourceTree | None = None) -> str:
    """SHA-256 (hex) of the Dockerfile and every file under ``container/``.

    Each file contributes its context name, its length and its bytes, in sorted name order;
    ``__pycache__`` directories and ``.pyc``/``.pyo`` files are ignored.

    Raises:
        ImageBuildError: the sources cannot be found or read.
    """
    return snapshot_hash(snapshot_sources(sources or find_sources()))


# (context name, bytes, executable): read once, so the hash labels exactly what was sent.
Snapshot = list[tuple[str, bytes, bool]]


def snapshot_sources(sources: SourceTree) -> Snapshot:
    """The tree's files, read once: ``(context name, bytes, executable)`` in name order.

    Raises:
        ImageBuildError: a file cannot be read.
    """
    taken = []
    for name, path in sources.files():
        try:
            taken.append((name, path.read_bytes(), os.access(path, os.X_OK)))
        except OSError as exc:
            raise ImageBuildError(f"cannot read {path} for the image build: {exc}") from exc
    return taken


def snapshot_constraints(snapshot: Snapshot) -> list[Pin]:
    """The pins of the constraints file in a snapshot: the very bytes the build is sent.

    Raises:
        ImageBuildError: the snapshot has no constraints file, or a line is malformed.
    """
    for name, data, _ in snapshot:
        if name == CONSTRAINTS_NAME:
            return parse_constraints(data.decode("utf-8", "replace"), CONSTRAINTS_NAME)
    raise ImageBuildError(f"the image's sources have no {CONSTRAINTS_NAME}, which pins its "
                          "packages")


def snapshot_hash(snapshot: Snapshot) -> str:
    """SHA-256 (hex) of a snapshot: what labels an image built from it (:func:`source_hash`)."""
    digest = hashlib.sha256(_CONTEXT_FORMAT)
    for name, data, _ in snapshot:
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def context_tar(snapshot: Snapshot) -> io.BytesIO:
    """An in-memory tar of the snapshot, root-owned and world-readable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, executable in snapshot:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _CONTEXT_MTIME
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
