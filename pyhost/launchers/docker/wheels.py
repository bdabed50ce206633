"""Python packages for an image, resolved on the host: nothing is installed from inside a build.

An image's interpreter may differ from the host's (a Python 3.9 image built from a 3.11 host),
and a build has no network. So the host's own pip does the work, in two steps:

1. ``pip download`` the requirements as wheels built for the image's interpreter and platform
   (``--python-version``, ``--platform manylinux_2_X_<arch>``, ``--only-binary=:all:``) into a
   wheelhouse kept on the host, one directory per interpreter and platform. A later build of
   the same requirements finds them there, with no index at all (``offline=True``).
2. ``pip install --no-index --find-links <wheelhouse> --target <dir>`` unpacks them into a
   directory that the image build copies to :data:`SITE_DIR` (on the image's ``PYTHONPATH``).

What the image already has (``provided``: its installed distributions, as its own python3
reports them) constrains the resolution to the same versions and is then left out of the
directory: a requirement's dependency never shadows the base's numpy with another one that
the base's pandas was not built against; a requirement that needs another version fails to
resolve, naming the conflict. The image itself needs no pip.

Requirements may be anything pip takes: names with versions, a local wheel file, or a name
found through ``find_links`` (a local directory of wheels) or ``index_url``. Only wheels are
accepted: an sdist would have to be built for the image's interpreter, which the host cannot
do. pip judges a dependency's environment markers (``; python_version < "3.11"``) by the
host's interpreter, not ``--python-version``: a dependency only an older interpreter needs
must be listed among the requirements.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import ImageBuildError
from .system import Progress, say

__all__ = ["SITE_DIR", "cache_dir", "install_wheels", "platform_tags", "wheelhouse_dir"]

SITE_DIR = "/opt/pyhost/site"  # where an image keeps the packages installed here
_VERSION = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")  # a pin pip reads
_PIP_TIMEOUT = 1800.0
_OLDEST_GLIBC = (2, 17)  # manylinux2014, the oldest tag wheels are still commonly built for


def cache_dir() -> Path:
    """pyhost's cache on the host: ``$PYHOST_CACHE``, by default ``$XDG_CACHE_HOME/pyhost``,
    i.e. ``~/.cache/pyhost`` (wheelhouses, what image probes found)."""
    root = os.environ.get("PYHOST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyhost")
    return Path(root)


def wheelhouse_dir(python: str, glibc: tuple[int, int] = (2, 31)) -> Path:
    """The host's wheelhouse for an interpreter and platform:
    ``<cache_dir()>/wheelhouse/cp39-glibc2.31-x86_64``."""
    tag = f"cp{python.replace('.', '')}-glibc{glibc[0]}.{glibc[1]}-{_machine()}"
    return cache_dir() / "wheelhouse" / tag


def platform_tags(glibc: tuple[int, int]) -> list[str]:
    """The manylinux platform tags an image with this glibc can run, newest first."""
    machine = _machine()
    if glibc[0] != 2 or glibc < _OLDEST_GLIBC:
        raise ImageBuildError(f"glibc {glibc[0]}.{glibc[1]} is older than any manylinux tag")
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc[1], 16, -1)]
    return tags + [f"manylinux2014_{machine}"]


def install_wheels(requirements: Sequence[str], python: str, target: Path, *,
                   glibc: tuple[int, int] = (2, 31), find_links: Sequence[str] = (),
                   index_url: str | None = None, offline: bool = False,
                   provided: Mapping[str, str] | None = None,
                   progress: Progress = None) -> list[str]:
    """Install ``requirements`` for Python ``python`` ("3.9") into the directory ``target``.

    Args:
        requirements: pip requirement strings (``"pandas>=2"``, a wheel file's path).
        python: the image interpreter's "major.minor".
        target: an empty or missing directory; it receives the packages (scripts left out:
            their first line would name the host's interpreter).
        glibc: the image's C library version; it bounds the manylinux wheels accepted.
        find_links: local wheel directories (or URLs) to look in besides the index.
        index_url: the package index (pip's default, or its configuration, when None).
        offline: use no index at all: only ``find_links`` and the wheelhouse.
        provided: distribution -> version the image already has (see the module docstring).
        progress: called with each line pip prints.

    Returns:
        The installed distributions, as ``name==version``.

    Raises:
        ImageBuildError: pip is missing, a requirement has no wheel for this interpreter and
            platform, or the index cannot be reached (the message ends with pip's last lines).
    """
    if not requirements:
        return []
    house = wheelhouse_dir(python, glibc)
    house.mkdir(parents=True, exist_ok=True)
    links = [*find_links, str(house)]
    target_args = ["--python-version", python, "--implementation", "cp",
                   "--only-binary=:all:"]
    for tag in platform_tags(glibc):
        target_args += ["--platform", tag]
    pins = _constraints(provided or {}, house)
    target_args += pins
    download = ["download", "--dest", str(house), *target_args, *_links(links)]
    if offline:
        download.append("--no-index")
    elif index_url:
        download += ["--index-url", index_url]
    _pip([*download, *requirements], progress,
         f"resolving wheels for Python {python} ({', '.join(requirements)})")
    if target.exists():
        shutil.rmtree(target)
    install = ["install", "--no-index", *_links(links), "--target", str(target), *target_args,
               "--no-compile", "--no-warn-script-location"]
    _pip([*install, *requirements], progress, f"unpacking wheels for Python {python}")
    shutil.rmtree(target / "bin", ignore_errors=True)
    for name in provided or {}:
        _uninstall(target, name)
    return sorted(_installed(target))


def _constraints(provided: Mapping[str, str], house: Path) -> list[str]:
    """pip arguments pinning what the image has (its local version labels, such as Debian's
    ``+dfsg``, dropped: ``==1.2`` accepts them; a version pip cannot read is left out)."""
    pins = [f"{name}=={version.split('+')[0]}" for name, version in sorted(provided.items())
            if _VERSION.fullmatch(version.split("+")[0])]
    if not pins:
        return []
    path = house / f"constraints-{os.getpid()}-{threading.get_ident()}.txt"
    path.write_text("\n".join(pins) + "\n", encoding="utf-8")
    return ["--constraint", str(path)]


def _uninstall(target: Path, name: str) -> None:
    """Remove distribution ``name`` from a ``--target`` directory: the files its RECORD lists,
    then its metadata directory."""
    wanted = re.sub(r"[-_.]+", "_", name).lower()
    for info in target.glob("*.dist-info"):
        dist = info.name[:-len(".dist-info")].rpartition("-")[0]
        if re.sub(r"[-_.]+", "_", dist).lower() != wanted:
            continue
        record = info / "RECORD"
        lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
        for line in lines:
            path = (target / line.split(",")[0]).resolve()
            if path.is_relative_to(target.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for directory in sorted(target.rglob("*"), reverse=True):  # the emptied ones
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _links(links: Sequence[str]) -> list[str]:
    return [arg for link in links for arg in ("--find-links", link)]


def _pip(args: list[str], progress: Progress, what: str) -> None:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    say(progress, what)
    try:
        done = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PIP_NO_INPUT": "1"})
    except OSError as exc:
        raise ImageBuildError(f"{what}: cannot run pip: {exc}") from exc
    lines: list[str] = []
    # Reading its output blocks until pip ends: a timer kills a pip that hangs, and a
    # progress callback that raises leaves no pip behind.
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        done.kill()

    deadline = threading.Timer(_PIP_TIMEOUT, stop)
    deadline.start()
    try:
        assert done.stdout is not None
        for line in done.stdout:
            lines = (lines + [line.rstrip()])[-30:]
            if line.strip():
                say(progress, line.rstrip())
        code = done.wait()
    finally:
        deadline.cancel()
        if done.poll() is None:
            done.kill()
            done.wait()
    if expired.is_set():
        raise ImageBuildError(f"{what}: pip ran past {_PIP_TIMEOUT:.0f} s and was stopped")
    if code != 0:
        tail = "\n".join(line for line in lines if line.strip())
        raise ImageBuildError(f"{what} failed (pip exited with {code}); only wheels built for "
                              f"this interpreter and platform can be used:\n{tail}")


def _installed(target: Path) -> list[str]:
    found = []
    for info in target.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        found.append(f"{name}=={version}")
    return found


def _machine() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
