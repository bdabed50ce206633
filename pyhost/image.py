"""The session image: building it, checking it is current, and choosing one to run.

:func:`build_image` builds ``Dockerfile.hxpy`` with only that file and ``container/`` as the
context, and labels the image with a hash of exactly those sources, so an unchanged tree is a
no-op. Its base is ``python:3.12-slim`` when the engine has it or can pull it; with no
registry in reach (air-gapped machines, CI) a Debian base is made with ``debootstrap`` from the
machine's own apt mirror and imported as ``pyhost-base:<suite>`` (:func:`build_debian_base`).
:func:`resolve_image` picks the image a session runs; :func:`image_status` serves ``pyhost
doctor``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.utils import parse_repository_tag

from .engine import Progress, apt_install, ensure_engine
from .errors import EngineUnavailable, ImageNotFound, PyHostError

__all__ = [
    "BASE_LABEL",
    "DEFAULT_BASE",
    "DEFAULT_SUITE",
    "DEFAULT_TAG",
    "HASH_LABEL",
    "IMAGE_CANDIDATES",
    "ImageStatus",
    "SourceTree",
    "apt_mirror",
    "build_debian_base",
    "build_image",
    "find_sources",
    "image_status",
    "resolve_base",
    "resolve_image",
    "source_hash",
]

# PYHOST_IMAGE names the session image to build and run, e.g. to keep two checkouts apart.
DEFAULT_TAG = os.environ.get("PYHOST_IMAGE") or "hxpy:latest"
DEFAULT_BASE = "python:3.12-slim"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HASH_LABEL = "org.pyhost.hash"
BASE_LABEL = "org.pyhost.base"
# Looked for, in order, when no image is asked for by name.
IMAGE_CANDIDATES = ((DEFAULT_TAG,) if os.environ.get("PYHOST_IMAGE")
                    else ("hxpy:latest", "hxpy:3.12", "hxpy:3.11"))
DOCKERFILE = "Dockerfile.hxpy"

_DEBIAN_PACKAGES = ("python3", "python3-numpy", "python3-pandas", "python3-msgpack")
# Bumped when the way the context is laid out changes, so old images stop matching.
_CONTEXT_FORMAT = b"pyhost-context-1"
# A fixed mtime keeps the context tar, and so the engine's build cache, reproducible.
_CONTEXT_MTIME = 946684800  # 2000-01-01
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_PULL_TIMEOUT = 20
_BUILD_TIMEOUT = 3600
_DEBOOTSTRAP_TIMEOUT = 1800.0
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


# -- sources and their hash ------------------------------------------------------------------

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
    ``hxpy`` package; the Dockerfile is found there only if the wheel ships it as
    ``pyhost/Dockerfile.hxpy``.

    Raises:
        PyHostError: the sources are not installed; the message says where they were sought.
    """
    package_dir = Path(__file__).resolve().parent
    checkout = package_dir.parent
    if (checkout / DOCKERFILE).is_file() and (checkout / "container" / "hxpy").is_dir():
        return SourceTree(checkout / DOCKERFILE, checkout / "container")
    spec = importlib.util.find_spec("hxpy")
    shipped = package_dir / DOCKERFILE
    if shipped.is_file() and spec is not None and spec.origin:
        # Only the hxpy package itself is taken from site-packages, never its neighbours.
        return _WheelSourceTree(shipped, Path(spec.origin).resolve().parent.parent)
    raise PyHostError(
        f"cannot build the session image: {DOCKERFILE} and container/hxpy are not in {checkout} "
        f"(nor is {shipped}); build from a pyhost source checkout, or use an image already "
        "built (`pyhost doctor` shows whether one is present)"
    )


@dataclass(frozen=True)
class _WheelSourceTree(SourceTree):
    """A tree whose ``container`` is site-packages: only its ``hxpy`` package is taken."""

    def files(self) -> list[tuple[str, Path]]:
        package = SourceTree(self.dockerfile, self.container / "hxpy")
        return sorted((_rename_under_hxpy(name), path) for name, path in package.files())


def _rename_under_hxpy(name: str) -> str:
    return name if name == DOCKERFILE else "container/hxpy/" + name[len("container/"):]


def source_hash(sources: SourceTree | None = None) -> str:
    """SHA-256 (hex) of the Dockerfile and every file under ``container/``.

    Each file contributes its context name, its length and its bytes, in sorted name order;
    ``__pycache__`` directories and ``.pyc``/``.pyo`` files are ignored.

    Raises:
        PyHostError: the sources cannot be found or read.
    """
    return _hash(_snapshot(sources or find_sources()))


# (context name, bytes, executable): read once, so the hash labels exactly what was sent.
_Snapshot = list[tuple[str, bytes, bool]]


def _snapshot(sources: SourceTree) -> _Snapshot:
    taken = []
    for name, path in sources.files():
        try:
            taken.append((name, path.read_bytes(), os.access(path, os.X_OK)))
        except OSError as exc:
            raise PyHostError(f"cannot read {path} for the image build: {exc}") from exc
    return taken


def _hash(snapshot: _Snapshot) -> str:
    digest = hashlib.sha256(_CONTEXT_FORMAT)
    for name, data, _ in snapshot:
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _context_tar(snapshot: _Snapshot) -> io.BytesIO:
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
    except PyHostError:
        current = None
    attrs = _inspect(client, tag)
    if attrs is None:
        return ImageStatus(tag=tag, present=False, current_hash=current)
    labels = _labels(attrs)
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
                sources: SourceTree | None = None) -> str:
    """Build the session image unless one built from the same sources is already there.

    Args:
        tag: the tag to give the image.
        base: the base image; by default :func:`resolve_base` picks (or makes) one. When given,
            an existing image built on another base is rebuilt.
        progress: called with one line of text per build step and per phase of a base build.
        force: rebuild even when the image is up to date (the base is reused, not remade).
        client: the engine; :func:`~pyhost.engine.ensure_engine` is called when omitted.
        sources: the Dockerfile and container/ to build from; :func:`find_sources` by default.

    Returns:
        The image id (``sha256:...``).

    Raises:
        EngineUnavailable: no engine answers, or it refused a request.
        PyHostError: the sources are missing, no base could be had, or the build failed (the
            message ends with the build's last lines).
    """
    client = client or ensure_engine(progress=progress)
    snapshot = _snapshot(sources or find_sources())
    digest = _hash(snapshot)
    existing = _inspect(client, tag)
    if existing is not None and not force:
        labels = _labels(existing)
        if labels.get(HASH_LABEL) == digest and base in (None, labels.get(BASE_LABEL)):
            _say(progress, f"{tag} is up to date ({digest[:12]})")
            return str(existing["Id"])
    base = base or resolve_base(client, progress=progress)
    if _inspect(client, base) is None and not _try_pull(client, base, progress):
        raise PyHostError(f"base image {base!r} is not present and cannot be pulled")
    _say(progress, f"building {tag} on {base} (sources {digest[:12]})")
    image_id = _run_build(client, snapshot, tag, base, digest, progress)
    if existing is not None and existing.get("Id") != image_id:
        _drop_replaced(client, str(existing["Id"]))
    return image_id


def _run_build(client: docker.DockerClient, snapshot: _Snapshot, tag: str, base: str,
               digest: str, progress: Progress) -> str:
    recent: list[str] = []
    pending = ""  # the engine splits output lines across chunks
    image_id: str | None = None
    try:
        stream = client.api.build(
            fileobj=_context_tar(snapshot), custom_context=True, dockerfile=DOCKERFILE,
            tag=tag, buildargs={"BASE": base}, labels={HASH_LABEL: digest, BASE_LABEL: base},
            rm=True, forcerm=True, pull=False, decode=True, timeout=_BUILD_TIMEOUT,
        )
        for chunk in stream:
            if "error" in chunk:
                tail = "\n".join(recent + [pending])
                raise PyHostError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
            *lines, pending = (pending + str(chunk.get("stream", ""))).split("\n")
            for line in lines:
                if line.strip():
                    recent = (recent + [line.rstrip()])[-20:]
                    _say(progress, line.rstrip())
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except _ENGINE_ERRORS as exc:
        raise EngineUnavailable(f"the engine failed while building {tag}: {exc}") from exc
    if pending.strip():
        _say(progress, pending.rstrip())
    if image_id is None:
        attrs = _inspect(client, tag)
        if attrs is None:
            raise PyHostError(f"the build of {tag} ended without an image")
        image_id = str(attrs["Id"])
    return image_id


def _drop_replaced(client: docker.DockerClient, old_id: str) -> None:
    """Remove the image a rebuild replaced, if we built it and nothing else uses it."""
    old = _inspect(client, old_id)
    if old is None or HASH_LABEL not in _labels(old) or old.get("RepoTags"):
        return
    try:
        client.api.remove_image(old_id)
    except _ENGINE_ERRORS:
        pass  # still used by a container or another tag: leave it to its owner


# -- the base image --------------------------------------------------------------------------

def resolve_base(client: docker.DockerClient, progress: Progress = None,
                 suite: str = DEFAULT_SUITE) -> str:
    """Name a base image that is present, making one if need be.

    In order: :data:`DEFAULT_BASE` if present; ``pyhost-base:<suite>`` if present; a pull of
    :data:`DEFAULT_BASE`; a Debian base built with :func:`build_debian_base`.

    Raises:
        EngineUnavailable: the engine refused a request.
        PyHostError: no base could be had.
    """
    debian = f"pyhost-base:{suite}"
    for candidate in (DEFAULT_BASE, debian):
        if _inspect(client, candidate) is not None:
            return candidate
    if _try_pull(client, DEFAULT_BASE, progress):
        return DEFAULT_BASE
    build_debian_base(client, suite=suite, progress=progress)
    return debian


def _try_pull(client: docker.DockerClient, reference: str, progress: Progress) -> bool:
    _say(progress, f"pulling {reference}")
    repository, tag = parse_repository_tag(reference)
    saved = client.api.timeout
    # A short read timeout ends a dead registry connection quickly; a live pull keeps
    # streaming, so it is not cut short.
    client.api.timeout = _PULL_TIMEOUT
    try:
        for chunk in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in chunk:
                raise PyHostError(str(chunk["error"]))
    except (PyHostError, *_ENGINE_ERRORS) as exc:
        _say(progress, f"cannot pull {reference}: {_first_line(exc)}")
        return False
    finally:
        client.api.timeout = saved
    return _inspect(client, reference) is not None


def build_debian_base(client: docker.DockerClient, suite: str = DEFAULT_SUITE,
                      mirror: str | None = None, progress: Progress = None) -> str:
    """Make ``pyhost-base:<suite>`` from Debian packages with debootstrap and import it.

    The root filesystem is a ``minbase`` with python3, numpy, pandas and msgpack from Debian,
    without apt caches, docs, man pages, locales and the numpy/pandas test suites. It is
    imported through the engine's import API with ``CMD ["python3"]``.

    Args:
        client: the engine.
        suite: the Debian suite, e.g. ``bookworm``.
        mirror: the apt mirror; by default the one this machine's apt uses (:func:`apt_mirror`).
        progress: called with a summary of debootstrap's output and each later step.

    Returns:
        The imported image's id.

    Raises:
        PyHostError: not root, debootstrap missing and not installable, or a step failed.
        EngineUnavailable: the engine refused the import.
    """
    if os.geteuid() != 0:
        raise PyHostError("no base image is present and none can be pulled; making one with "
                          "debootstrap needs root: run `pyhost image build` as root once")
    if shutil.which("debootstrap", path=_SYSTEM_PATH) is None:
        apt_install(["debootstrap"], progress=progress)
    mirror = mirror or apt_mirror(suite)
    repository, tag = "pyhost-base", suite
    try:
        workdir = Path(tempfile.mkdtemp(prefix="pyhost-base-", dir="/var/tmp"))
    except OSError as exc:
        raise PyHostError(f"cannot make a scratch directory for the base image: {exc}") from exc
    rootfs = workdir / "rootfs"
    try:
        started = time.monotonic()
        _debootstrap(suite, rootfs, mirror, progress)
        _say(progress, f"debootstrap finished in {time.monotonic() - started:.0f} s")
        _unmount_inside(rootfs)
        _slim_rootfs(rootfs)
        started = time.monotonic()
        archive = workdir / "rootfs.tar"
        _tar_rootfs(rootfs, archive)
        _say(progress, f"importing {archive.stat().st_size / 1e6:.0f} MB as {repository}:{tag}")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f"LABEL {BASE_LABEL}=debootstrap org.pyhost.suite={suite}",
        ]
        try:
            client.api.import_image(src=str(archive), repository=repository, tag=tag,
                                    changes=changes)
        except _ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"the engine refused to import the base image: {exc}") from exc
        _say(progress, f"imported in {time.monotonic() - started:.0f} s")
    except OSError as exc:  # disk full, unreadable file in the rootfs, ...
        raise PyHostError(f"making the base image in {workdir} failed: {exc}") from exc
    finally:
        _remove_workdir(workdir, rootfs)
    attrs = _inspect(client, f"{repository}:{tag}")
    if attrs is None:
        raise PyHostError(f"importing {repository}:{tag} reported success but it is not present")
    return str(attrs["Id"])


def apt_mirror(suite: str = DEFAULT_SUITE, apt_dir: str | os.PathLike[str] = "/etc/apt",
               ) -> str:
    """The mirror this machine's apt uses for ``suite`` (one-line and deb822 sources alike).

    Returns :data:`DEFAULT_MIRROR` when no configured ``deb`` source carries ``suite``.
    """
    for uri, suites in _apt_sources(Path(apt_dir)):
        if suite in suites:
            return uri
    return DEFAULT_MIRROR


def _apt_sources(apt_dir: Path) -> Iterator[tuple[str, list[str]]]:
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        for line in _text(path).splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            if len(words) > 1 and words[1].startswith("["):  # skip "[arch=... signed-by=...]"
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = ["deb", *words[1:]]
            if len(words) >= 3:
                yield words[1], [words[2]]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", _text(path)):
            fields = _deb822(stanza)
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").strip().lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key is not None:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _debootstrap(suite: str, rootfs: Path, mirror: str, progress: Progress) -> None:
    argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(_DEBIAN_PACKAGES),
            suite, str(rootfs), mirror]
    _say(progress, "running " + " ".join(argv))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": _SYSTEM_PATH}
    summary = _DebootstrapSummary(progress)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
    except OSError as exc:
        raise PyHostError(f"cannot run debootstrap: {exc}") from exc
    assert proc.stdout is not None
    deadline = time.monotonic() + _DEBOOTSTRAP_TIMEOUT
    for raw in proc.stdout:
        summary.feed(raw.decode(errors="replace").rstrip())
        if time.monotonic() > deadline:
            proc.kill()
    code = proc.wait()
    summary.close()
    if code != 0:
        log = _text(rootfs / "debootstrap" / "debootstrap.log").splitlines()[-15:]
        raise PyHostError(f"debootstrap exited with {code} (mirror {mirror}):\n"
                          + "\n".join(summary.recent + ["-- debootstrap.log --"] + log))


class _DebootstrapSummary:
    """Turns debootstrap's line per package per step into one line per step."""

    _PER_PACKAGE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) "
                              r"(?!required packages|the base system|Release|Packages|InRelease)"
                              r"[a-z0-9][a-z0-9+.-]*(\.\.\.| \S+)$")
    _STEP = {"Retrieving": "downloaded", "Validating": "downloaded", "Extracting": "extracted",
             "Unpacking": "unpacked", "Configuring": "configured"}

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.step: str | None = None
        self.count = 0
        self.recent: list[str] = []

    def feed(self, line: str) -> None:
        if not line:
            return
        self.recent = (self.recent + [line])[-20:]
        match = self._PER_PACKAGE.match(line)
        if match is None:
            self.close()
            _say(self.progress, "debootstrap: " + line)
            return
        step = self._STEP[match.group(1)]
        if step != self.step:
            self.close()
            self.step = step
        if match.group(1) != "Validating":
            self.count += 1

    def close(self) -> None:
        if self.step is not None:
            _say(self.progress, f"debootstrap: {self.step} {self.count} packages")
        self.step, self.count = None, 0


def _slim_rootfs(rootfs: Path) -> None:
    """Drop what a read-only session never uses, and the host details debootstrap copied."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                    "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*",
                    "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*",
                    "var/log/*", "var/cache/debconf/*-old", "dev/*", "run/*", "tmp/*",
                    "usr/lib/python3/dist-packages/numpy/**/tests",
                    "usr/lib/python3/dist-packages/pandas/tests", "debootstrap"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
    # The engine supplies these at run time; the host's must not ride along in the image.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts", "etc/machine-id"):
        path = rootfs / name
        if path.exists() or path.is_symlink():
            path.unlink()
            path.write_text("")
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def _tar_rootfs(rootfs: Path, archive: Path) -> None:
    def numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(rootfs), arcname=".", filter=numeric)


def _remove_workdir(workdir: Path, rootfs: Path) -> None:
    """Delete the scratch tree, never while something is still mounted inside it."""
    _unmount_inside(rootfs)
    shutil.rmtree(workdir, ignore_errors=True)


def _unmount_inside(rootfs: Path) -> None:
    """Unmount what debootstrap may have left mounted (proc, sys, dev/pts) under ``rootfs``.

    Raises:
        PyHostError: something stays mounted; deleting the tree then would reach the host.
    """
    inside = str(rootfs.resolve()) + "/"

    def mounted() -> list[str]:
        points = [line.split()[1] for line in _text(Path("/proc/self/mounts")).splitlines()
                  if len(line.split()) > 1]
        return sorted((point for point in points if point.startswith(inside)), reverse=True)

    for point in mounted():
        subprocess.run(["umount", "--lazy", point], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    still = mounted()
    if still:
        raise PyHostError(f"{', '.join(still)} stay mounted; not touching {rootfs}")


# -- choosing the image a session runs -------------------------------------------------------

def resolve_image(client: docker.DockerClient, requested: str | None = None) -> str:
    """Choose the image a session runs.

    An image asked for by name must be present: nothing is pulled, and running user code in
    another image than the one asked for would be a surprise. Otherwise the first present of
    :data:`IMAGE_CANDIDATES` is taken, then the newest image carrying the ``org.pyhost.hash``
    label under any tag.

    Returns:
        An image reference the engine knows (a tag, or an id for an untagged image).

    Raises:
        ImageNotFound: no such image; the message says to run ``pyhost image build``.
        EngineUnavailable: the engine refused a request.
    """
    if requested:
        if _inspect(client, requested) is not None:
            return requested
        raise ImageNotFound(f"image {requested!r} is not present on this engine (images are "
                            "not pulled); build it with `pyhost image build`")
    for candidate in IMAGE_CANDIDATES:
        if _inspect(client, candidate) is not None:
            return candidate
    try:
        ours = client.api.images(filters={"label": HASH_LABEL})
    except _ENGINE_ERRORS as exc:
        raise EngineUnavailable(f"the engine refused to list images: {exc}") from exc
    for image in sorted(ours, key=lambda found: found.get("Created", 0), reverse=True):
        tags = [tag for tag in image.get("RepoTags") or () if tag != "<none>:<none>"]
        return tags[0] if tags else str(image["Id"])
    raise ImageNotFound(f"no session image is present (looked for {', '.join(IMAGE_CANDIDATES)} "
                        f"and images labelled {HASH_LABEL}); run `pyhost image build`")


# -- small helpers ---------------------------------------------------------------------------

def _inspect(client: docker.DockerClient, reference: str) -> dict[str, Any] | None:
    try:
        return dict(client.api.inspect_image(reference))
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code in (400, 404):  # malformed or unknown reference: not present
            return None
        raise EngineUnavailable(f"the engine refused to inspect {reference}: {exc}") from exc
    except _ENGINE_ERRORS as exc:
        raise EngineUnavailable(f"the engine failed to inspect {reference}: {exc}") from exc


def _labels(attrs: dict[str, Any]) -> dict[str, str]:
    return dict((attrs.get("Config") or {}).get("Labels") or {})


def _say(progress: Progress, line: str) -> None:
    if progress is not None:
        progress(line)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
