"""The top-level modules an image's Python can import, asked once per image id.

A job whose handler imports something its image lacks is refused before it starts
(:func:`pyhost.runtime.imports.check_imports`). What the image has is asked of its own
``python3`` (:data:`MODULES_PROBE`) in a throwaway container with the session sandbox (no
network, read-only root, no capabilities, the sandbox uid, half a CPU): the image may be
anyone's. The answer is kept by image id, in this process and on disk (``$PYHOST_CACHE``,
default ``$XDG_CACHE_HOME/pyhost``, ``/image-modules/<id>``): an image id names its content,
so the answer never goes stale. In this process the answer is also kept by image reference (a tag),
so a warm job pays one dict lookup; a caller asks ``fresh`` before refusing a run on it (the
tag may name a rebuilt image by now).

A probe that fails (no python3, 60 s, output over :data:`PROBE_CAP`, the engine failing
under it) answers None: nothing is checked before the start, and the container reports a
missing module as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ...errors import EngineUnavailable, ImageBuildError, ImageNotFound, short
from ..ownership import Owner
from .client import engine_errors
from .image import find_image
from .iodir import sandbox_uid
from .paths import engine_view

__all__ = ["MODULES_PROBE", "PROBE_CAP", "cache_dir", "image_modules", "parse_modules",
           "probe_modules"]

log = logging.getLogger("pyhost.launchers.docker")

# One name a line: builtins, the stdlib's names (3.10+), what pkgutil finds on sys.path,
# and directories on sys.path that are identifiers (namespace packages, which pkgutil skips).
MODULES_PROBE = ("import os, pkgutil, sys\n"
                 "names = set(sys.builtin_module_names)\n"
                 "names.update(getattr(sys, 'stdlib_module_names', ()))\n"
                 "names.update(m.name for m in pkgutil.iter_modules())\n"
                 "for entry in sys.path:\n"
                 "    if entry and os.path.isdir(entry):\n"
                 "        names.update(n for n in os.listdir(entry) if n.isidentifier() "
                 "and os.path.isdir(os.path.join(entry, n)))\n"
                 "print('\\n'.join(sorted(n for n in names if n.isidentifier())))\n")

#: Bytes of probe output read at most (``PYHOST_IMPORT_PROBE_CAP``, default 4 MiB; an image
#: with every package of PyPI would list fewer): an image printing more is not believed, and
#: the host never holds more of it.
PROBE_CAP = int(os.environ.get("PYHOST_IMPORT_PROBE_CAP") or 4 << 20)
_TIMEOUT = 60
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")

_lock = threading.Lock()
_by_id: dict[str, frozenset[str] | None] = {}
_by_reference: dict[tuple[str, str], frozenset[str] | None] = {}


def cache_dir() -> Path:
    """Where answers are kept on disk: ``$PYHOST_CACHE/image-modules``."""
    root = os.environ.get("PYHOST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyhost")
    return Path(root) / "image-modules"


def image_modules(client: docker.DockerClient, image: str | None,
                  fresh: bool = False) -> frozenset[str] | None:
    """The top-level modules ``image`` (None: the default session image) can import; None
    when that cannot be told (the image is absent or its probe failed). See the module
    docstring for the caches; ``fresh`` looks the image's id up again.

    Raises:
        EngineUnavailable: the engine refused.
    """
    reference = (str(client.api.base_url), image or "")
    if not fresh and reference in _by_reference:
        return _by_reference[reference]
    try:
        _, attrs = find_image(client, image)
    except ImageNotFound:
        return None  # the start says so, naming the command that builds it
    image_id = str(attrs.get("Id") or "")
    names = _by_id.get(image_id) if image_id in _by_id else _cached_or_probed(
        client, image_id)
    with _lock:
        _by_id[image_id] = names
        _by_reference[reference] = names
    return names


def _cached_or_probed(client: docker.DockerClient, image_id: str) -> frozenset[str] | None:
    if not _ID.fullmatch(image_id):
        return None
    path = cache_dir() / image_id.split(":")[-1]
    try:
        if path.stat().st_size <= PROBE_CAP:
            return parse_modules(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # not cached (or not readable): probe
    try:
        text = probe_modules(client, image_id)
        names = parse_modules(text)
    except (ImageBuildError, EngineUnavailable, ValueError) as exc:
        log.warning("cannot tell what image %s can import (%s); its jobs' imports are not "
                    "checked before they start", image_id[:19], exc)
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                         delete=False) as out:
            out.write(text)
        os.replace(out.name, path)
    except OSError as exc:
        log.info("cannot cache the modules of image %s in %s: %s", image_id[:19],
                 path.parent, exc)
    return names


def parse_modules(text: str) -> frozenset[str]:
    """The names in a probe's output (one a line; a line that is no module name is no
    importable module, and is skipped).

    Raises:
        ValueError: there is no name at all.
    """
    names = frozenset(line for line in text.splitlines() if _NAME.fullmatch(line))
    if not names:
        raise ValueError(f"no module names in {text[:80]!r}")
    return names


def probe_modules(client: docker.DockerClient, image: str) -> str:
    """Run :data:`MODULES_PROBE` once in ``image``, sandboxed; what it printed. Its output is
    read as it comes (attached, the engine keeps no log of it) and the probe killed past
    :data:`PROBE_CAP` bytes or 60 s, so neither the host's memory nor the engine's disk grows
    with what a hostile image prints.

    Raises:
        ImageBuildError: the image cannot run python3, it failed, printed too much or took
            too long.
        EngineUnavailable: the engine refused.
    """
    api = client.api
    with engine_errors(f"cannot probe image {image[:19]}"):
        host_config = api.create_host_config(
            network_mode="none", read_only=True, cap_drop=["ALL"], mem_limit="256m",
            pids_limit=64, nano_cpus=500_000_000, security_opt=["no-new-privileges"],
            log_config={"Type": "none", "Config": {}}, ulimits=engine_view(client).ulimits())
        container = api.create_container(
            image, entrypoint=["python3", "-c", MODULES_PROBE], command=[],
            user=sandbox_uid(), labels=Owner.current().labels(f"probe-{os.urandom(4).hex()}"),
            host_config=host_config, network_disabled=True)["Id"]
        try:
            out = _read_probe(api, container, image)
            code = api.wait(container, timeout=_TIMEOUT).get("StatusCode")
        finally:
            _remove(api, container)
    if code != 0:
        raise ImageBuildError(f"image {image[:19]}: python3 exited with code {code}")
    return out.decode("utf-8", "replace")


def _remove(api: docker.APIClient, container: str) -> None:
    """Remove a probe container; a failure (an engine busy killing a flood) is logged, not
    raised, so it never hides why the probe ended: the container carries this process's
    owner labels, and the next sweep of orphans removes it."""
    try:
        api.remove_container(container, force=True)
    except Exception as exc:  # any engine failure here is only logged
        log.warning("cannot remove probe container %s now (%s); the orphan sweep will",
                    container[:12], short(exc))


def _read_probe(api: docker.APIClient, container: str, image: str) -> bytearray:
    """Start the probe and read its standard output until it ends (see
    :func:`probe_modules`); the container is killed on a refusal."""
    deadline = time.monotonic() + _TIMEOUT
    out = bytearray()
    stream: Any = None
    try:
        # Attached before the start, no log kept: the probe writes only as fast as this
        # reads, and blocks once it stops (an engine logging a flood to disk is slow to
        # kill it on a loaded machine).
        stream = api.attach(container, stdout=True, stderr=False, stream=True, logs=False)
        api.start(container)
        for chunk in stream:
            out += chunk
            if len(out) > PROBE_CAP:
                raise ImageBuildError(f"image {image[:19]}: the probe printed more than "
                                      f"{PROBE_CAP} bytes (PYHOST_IMPORT_PROBE_CAP)")
            if time.monotonic() > deadline:
                raise ImageBuildError(f"image {image[:19]}: the probe did not end in "
                                      f"{_TIMEOUT} s")
    except ImageBuildError:
        if stream is not None:  # stop reading first: the engine need not send the rest
            with contextlib.suppress(Exception):
                stream.close()
        with contextlib.suppress(Exception):  # removed by force in any case
            api.kill(container)
        raise
    except docker.errors.APIError as exc:  # no python3 to execute
        raise ImageBuildError(f"image {image[:19]}: python3 did not run "
                              f"({exc.explanation or exc})") from exc
    except Exception as exc:  # the engine's read timeout: the probe went silent and hung
        raise ImageBuildError(f"image {image[:19]}: the probe did not end ({exc})") from exc
    return out
