"""A Debian base image made with debootstrap, for machines that no registry reaches.

:func:`build_debian_base` makes ``pyhost-base:<suite>``: a ``minbase`` root filesystem with
Debian's python3 from this machine's own apt mirror (:func:`apt_mirror`) and, unpacked in
:data:`~.wheels.SITE_DIR`, the Python packages ``container/constraints.txt`` pins for that
python3 (:mod:`.pins`), as wheels the host downloads; slimmed and imported through the
engine's import API. ``PYHOST_BASE_REPOSITORY`` names another repository than
``pyhost-base``, so a checkout with other pins keeps its bases apart.
"""

from __future__ import annotations

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

from ...errors import EngineUnavailable, ImageBuildError, short
from .client import engine_errors, inspect_image
from .image_context import SourceTree, find_sources
from .pins import pins_for, read_constraints
from .probe import PYTHON_PROBE, parse_facts
from .system import SYSTEM_PATH, Progress, apt_install, say
from .wheels import SITE_DIR, install_wheels

__all__ = ["BASE_LABEL", "BASE_REPOSITORY", "DEFAULT_MIRROR", "DEFAULT_SUITE", "GLIBC_LABEL",
           "PACKAGES_LABEL", "PYTHON_LABEL", "SUITE_PYTHON", "BaseRecipe", "apt_mirror",
           "base_packages", "base_recipe", "base_tag", "build_debian_base", "import_rootfs"]

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_REPOSITORY = os.environ.get("PYHOST_BASE_REPOSITORY") or "pyhost-base"
BASE_LABEL = "org.pyhost.base"  # what an image was built on ("debootstrap" for this base)
# The python3 of each Debian suite a base can be made from.
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
PACKAGES_LABEL = "org.pyhost.packages"  # the Debian packages and wheels a base was made with
PYTHON_LABEL = "org.pyhost.python"  # "3.9": the python3 of an image or base
GLIBC_LABEL = "org.pyhost.glibc"  # "2.31": its C library, which bounds the wheels it can use
_DEBOOTSTRAP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class BaseRecipe:
    """What the base of one suite carries.

    Attributes:
        suite: the Debian suite.
        packages: Debian packages debootstrap installs.
        wheels: pip requirements the host resolves as wheels for the suite's python3 and
            glibc and unpacks into :data:`~.wheels.SITE_DIR` (pinned, so the label says
            exactly what a base holds and a new pin makes a new base).
    """

    suite: str
    packages: tuple[str, ...] = ("python3",)
    wheels: tuple[str, ...] = ()

    def label(self) -> str:
        """The value of :data:`PACKAGES_LABEL`: the Debian packages, then ``wheel:`` and
        each pin."""
        # "site:" names the layout too: a base of wheels has SITE_DIR on its PYTHONPATH, so
        # one made before that is made again.
        site = [f"site:{SITE_DIR}"] if self.wheels else []
        return ",".join([*self.packages, *(f"wheel:{wheel}" for wheel in self.wheels), *site])


def base_recipe(suite: str = DEFAULT_SUITE, sources: SourceTree | None = None) -> BaseRecipe:
    """The recipe of ``suite``: Debian's python3 alone, and as wheels every package the
    constraints pin for that python3. Debian's python3-numpy, python3-pandas, ... are not
    used: an apt mirror has only the suite's current version of each, so no file could pin
    them, and bullseye's are older than hxpy supports.

    Raises:
        ImageBuildError: a suite whose python3 is unknown, or the constraints cannot be read.
    """
    python = SUITE_PYTHON.get(suite)
    if python is None:
        raise ImageBuildError(f"no Debian base for suite {suite!r}: the suites are "
                              f"{', '.join(SUITE_PYTHON)}")
    pins = pins_for(read_constraints((sources or find_sources()).constraints), python)
    return BaseRecipe(suite, wheels=tuple(f"{name}=={version}"
                                          for name, version in pins.items()))


def base_tag(suite: str = DEFAULT_SUITE) -> str:
    """The tag of the Debian base of ``suite``: ``pyhost-base:bookworm``."""
    return f"{BASE_REPOSITORY}:{suite}"


def build_debian_base(client: docker.DockerClient, suite: str = DEFAULT_SUITE,
                      mirror: str | None = None, progress: Progress = None) -> str:
    """Make ``pyhost-base:<suite>`` (:func:`base_tag`) with debootstrap and import it.

    The root filesystem is a ``minbase`` with what the suite's :func:`base_recipe` lists
    (Debian's python3, then wheels in
    :data:`~.wheels.SITE_DIR`, compiled there since the sessions' root is read-only), without
    apt caches, docs, man pages, locales and the test suites of numpy, pandas, scipy,
    scikit-learn and numexpr. It is imported through the engine's import API with
    ``CMD ["python3"]`` and labelled with its recipe, Python and glibc.

    Args:
        client: the engine.
        suite: the Debian suite, e.g. ``bookworm``.
        mirror: the apt mirror; by default the one this machine's apt uses (:func:`apt_mirror`).
        progress: called with a summary of debootstrap's output and each later step.

    Returns:
        The imported image's id.

    Raises:
        ImageBuildError: not root, debootstrap missing and not installable, a step failed,
            or the constraints cannot be read.
        EngineUnavailable: the engine refused the import.
    """
    recipe = base_recipe(suite)
    if os.geteuid() != 0:
        raise ImageBuildError("no base image is present and none can be pulled; making one with "
                          "debootstrap needs root: run `pyhost image build` as root once")
    if shutil.which("debootstrap", path=SYSTEM_PATH) is None:
        apt_install(["debootstrap"], progress=progress)
    mirror = mirror or apt_mirror(suite)
    repository, tag = BASE_REPOSITORY, suite
    try:
        workdir = Path(tempfile.mkdtemp(prefix="pyhost-base-", dir="/var/tmp"))
    except OSError as exc:
        raise ImageBuildError(f"cannot make a scratch directory for the base image: {exc}") from exc
    rootfs = workdir / "rootfs"
    replaced = inspect_image(client, f"{repository}:{tag}")
    try:
        started = time.monotonic()
        _debootstrap(recipe, rootfs, mirror, progress)
        say(progress, f"debootstrap finished in {time.monotonic() - started:.0f} s")
        _unmount_inside(rootfs)
        python, glibc = _probe_rootfs(rootfs)
        if recipe.wheels:
            _add_wheels(recipe, rootfs, python, glibc, progress)
        _slim_rootfs(rootfs)
        started = time.monotonic()
        archive = workdir / "rootfs.tar"
        _tar_rootfs(rootfs, archive)
        say(progress, f"importing {archive.stat().st_size / 1e6:.0f} MB as {repository}:{tag}")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            # The pinned packages are importable in the base itself, and in any image a user
            # builds FROM it (the session image's Dockerfile extends this PYTHONPATH).
            *([f"ENV PYTHONPATH={SITE_DIR}"] if recipe.wheels else []),
            'CMD ["python3"]',
            f"LABEL {BASE_LABEL}=debootstrap org.pyhost.suite={suite} "
            f'{PACKAGES_LABEL}="{recipe.label()}" {PYTHON_LABEL}={python} {GLIBC_LABEL}={glibc}',
        ]
        attrs = import_rootfs(client, archive, repository, tag, changes)
        say(progress, f"imported in {time.monotonic() - started:.0f} s")
    except OSError as exc:  # disk full, unreadable file in the rootfs, ...
        raise ImageBuildError(f"making the base image in {workdir} failed: {exc}") from exc
    finally:
        _remove_workdir(workdir, rootfs)
    if replaced is not None and replaced.get("Id") != attrs.get("Id"):
        _drop_untagged(client, str(replaced["Id"]))
    return str(attrs["Id"])


_IMAGE_ID = re.compile(r"\b(?:sha256:)?([0-9a-f]{64})\b")


def import_rootfs(client: docker.DockerClient, archive: Path, repository: str, tag: str,
                  changes: list[str]) -> dict[str, Any]:
    """Import a root filesystem tarball as ``repository:tag``; the engine's inspect of it.

    The image is tagged from the id the import answers rather than trusted to carry the tag
    asked for: Podman's Docker-compatible import ignores the tag (4.3 stores
    ``docker.io/library/REPOSITORY:latest``). A ``latest`` tag the engine gave instead is
    taken off again.

    Raises:
        EngineUnavailable: the engine refused the import or the tag.
        ImageBuildError: the engine said it imported but has no such image.
    """
    reference = f"{repository}:{tag}"
    with engine_errors(f"the engine refused to import {reference}"):
        answer = client.api.import_image(src=str(archive), repository=repository, tag=tag,
                                         changes=changes)
    found = _IMAGE_ID.findall(str(answer))
    imported = inspect_image(client, f"sha256:{found[-1]}") if found else None
    if imported is None:
        # An engine that names no id: what it stored under the name is all there is.
        imported = inspect_image(client, reference)
        if imported is None:
            raise ImageBuildError(f"importing {reference} reported success but it is not "
                                  f"present (the engine answered {short(str(answer))!r})")
        return imported
    image_id = str(imported["Id"])
    present = inspect_image(client, reference)
    if present is None or present.get("Id") != image_id:
        with engine_errors(f"the engine refused to tag the imported {image_id[:19]} as "
                           f"{reference}"):
            client.api.tag(image_id, repository, tag, force=True)
    if tag != "latest":
        stray = inspect_image(client, f"{repository}:latest")
        if stray is not None and stray.get("Id") == image_id:
            try:
                with engine_errors(f"cannot untag {repository}:latest"):
                    client.api.remove_image(f"{repository}:latest")  # an untag: tagged twice
            except EngineUnavailable:
                pass  # a stray name only; the base is tagged as asked
    attrs = inspect_image(client, reference)
    if attrs is None:
        raise ImageBuildError(f"{image_id[:19]} was imported and tagged {reference}, but the "
                              "engine does not find it under that name")
    return attrs


def _drop_untagged(client: docker.DockerClient, image_id: str) -> None:
    """Remove a base that a new one replaced, unless images built on it still use it (the
    engine refuses then; those go when they are rebuilt)."""
    old = inspect_image(client, image_id)
    if old is None or old.get("RepoTags"):
        return
    try:
        with engine_errors(f"cannot remove the replaced base {image_id[:19]}"):
            client.api.remove_image(image_id)
    except EngineUnavailable:
        pass


def base_packages(suite: str = DEFAULT_SUITE) -> str:
    """What a base of ``suite`` made now carries, as its label records it; a base labelled
    otherwise is out of date and made again.

    Raises:
        ImageBuildError: as :func:`base_recipe`.
    """
    return base_recipe(suite).label()


def _probe_rootfs(rootfs: Path) -> tuple[str, str]:
    """The rootfs's python3 "major.minor" and glibc version, asked of that python3 itself."""
    output = _in_rootfs(rootfs, ["python3", "-c", PYTHON_PROBE],
                        "telling its python3's version", 60)
    facts = parse_facts(output, f"the new rootfs {rootfs}")
    return facts.python, facts.glibc_text


def _in_rootfs(rootfs: Path, argv: list[str], what: str, timeout: float) -> str:
    """Run ``argv`` chrooted into ``rootfs`` (as root, like debootstrap); its output.

    Raises:
        ImageBuildError: it could not run or failed (its last output attached).
    """
    try:
        done = subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True,
                              timeout=timeout, env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageBuildError(f"{what} in {rootfs} failed: {exc}") from exc
    if done.returncode != 0:
        raise ImageBuildError(f"{what} in {rootfs} failed (exit {done.returncode}):\n"
                              f"{(done.stdout + done.stderr).strip()[-2000:]}")
    return done.stdout


def _add_wheels(recipe: BaseRecipe, rootfs: Path, python: str, glibc: str,
                progress: Progress) -> None:
    """Unpack the recipe's wheels into the rootfs's SITE_DIR and compile them there.

    The wheelhouse is tried without an index first, so a base is made again offline once
    its wheels were fetched.
    """
    target = rootfs / SITE_DIR.lstrip("/")
    major, _, minor = glibc.partition(".")
    libc = (int(major), int(minor))
    try:
        install_wheels(recipe.wheels, python, target, glibc=libc, offline=True,
                       progress=progress)
    except ImageBuildError:
        say(progress, "not all wheels are in the wheelhouse; asking the package index")
        install_wheels(recipe.wheels, python, target, glibc=libc, progress=progress)
    # One process: a chroot has no /dev/shm for compileall -j's worker pool.
    _in_rootfs(rootfs, ["python3", "-m", "compileall", "-q", SITE_DIR],
               f"compiling the wheels with python{python}", 600)


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


def _debootstrap(recipe: BaseRecipe, rootfs: Path, mirror: str, progress: Progress) -> None:
    argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(recipe.packages),
            recipe.suite, str(rootfs), mirror]
    say(progress, "running " + " ".join(argv))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
    summary = _DebootstrapSummary(progress)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
    except OSError as exc:
        raise ImageBuildError(f"cannot run debootstrap: {exc}") from exc
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
        raise ImageBuildError(f"debootstrap exited with {code} (mirror {mirror}):\n"
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
            say(self.progress, "debootstrap: " + line)
            return
        step = self._STEP[match.group(1)]
        if step != self.step:
            self.close()
            self.step = step
        if match.group(1) != "Validating":
            self.count += 1

    def close(self) -> None:
        if self.step is not None:
            say(self.progress, f"debootstrap: {self.step} {self.count} packages")
        self.step, self.count = None, 0


def _slim_rootfs(rootfs: Path) -> None:
    """Drop what a read-only session never uses, and the host details debootstrap copied."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                    "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*",
                    "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*",
                    "var/log/*", "var/cache/debconf/*-old", "dev/*", "run/*", "tmp/*",
                    "usr/lib/python3/dist-packages/numpy/**/tests",
                    "usr/lib/python3/dist-packages/pandas/tests", "debootstrap",
                    f"{SITE_DIR.lstrip('/')}/numpy/**/tests",
                    f"{SITE_DIR.lstrip('/')}/pandas/tests",
                    *(f"{where}/{package}/**/tests" for where in _PACKAGE_DIRS
                      for package in ("scipy", "sklearn", "numexpr"))):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                _remove_tree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    # The engine supplies these at run time; the host's must not ride along in the image.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts", "etc/machine-id"):
        path = rootfs / name
        if path.exists() or path.is_symlink():
            path.unlink()
            path.write_text("")
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


_PACKAGE_DIRS = ("usr/lib/python3/dist-packages", SITE_DIR.lstrip("/"))
# numpy 2.1+'s numpy.testing imports numpy._core.tests._natype, and `from numpy import *`
# (scipy's array API shim, on sklearn's import path) imports numpy.testing: those stay.
_KEPT_TEST_FILES = {("_core", "tests"): ("__init__.py", "_natype.py")}


def _remove_tree(path: Path) -> None:
    """Remove a test directory, but for the modules of it that code outside tests imports."""
    kept = _KEPT_TEST_FILES.get((path.parent.name, path.name), ())
    if not kept or path.parent.parent.name != "numpy":
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        if child.name in kept:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink()


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
        ImageBuildError: something stays mounted; deleting the tree then would reach the host.
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
        raise ImageBuildError(f"{', '.join(still)} stay mounted; not touching {rootfs}")
