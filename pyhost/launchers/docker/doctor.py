"""``pyhost doctor``: engine, image, permissions, deployment, the images' libraries and
pinned versions, and io directory, each OK or what is wrong."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

from ...errors import PyHostError
from .client import docker_client, inspect_image
from .engine import engine_status
from .image import DEFAULT_TAG, image_labels, image_python, image_status
from .image_context import CONSTRAINTS_NAME, find_sources
from .iodir import SANDBOX_UID_ENV, plan_io_access, sandbox_uid
from .libraries import image_libraries
from .paths import EngineView
from .pins import VERSIONS_LABEL, Pin, parse_versions, pin_problems, pins_for, read_constraints
from .python_images import DEBIAN_VERSIONS, python_images

__all__ = ["Check", "diagnose"]


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name:<12} {self.detail}"


def diagnose(io_dir: str = "io", tag: str = DEFAULT_TAG) -> list[Check]:
    """Check what a session needs; never raises for a failed check."""
    checks: list[Check] = []
    engine = engine_status()
    if engine.reachable:
        kind = engine.kind or f"Docker {engine.server_version}"
        checks.append(Check("engine", True, f"{kind} (API {engine.api_version}) at "
                                            f"{engine.host}; storage {engine.storage_driver}, "
                                            f"cgroup v{engine.cgroup_version}"))
        if engine.kind is not None and engine.kind.changes():
            checks.append(Check("engine kind", True, f"{engine.kind.product}: "
                                                     + "; ".join(engine.kind.changes())))
    else:
        checks.append(Check("engine", False, engine.problem or "no engine answers"))
    sock = engine.socket
    if sock is None:
        checks.append(Check("permissions", engine.reachable, f"remote engine {engine.host}"))
    elif sock.accessible:
        checks.append(Check("permissions", True, f"{engine.user} may use {sock.path} "
                                                 f"({sock.mode} {sock.owner}:{sock.group})"))
    else:
        checks.append(Check("permissions", False,
                            f"{engine.user} may not use {sock.path}"
                            + (f" ({sock.mode} {sock.owner}:{sock.group})" if sock.exists else
                               " (it does not exist)")
                            + "; run as root or join the socket's group"))
    if engine.reachable:
        checks.append(_check_deployment())
        try:
            image = image_status(tag)
        except PyHostError as exc:
            checks.append(Check("image", False, str(exc)))
        else:
            if not image.present:
                checks.append(Check("image", False, f"{tag} is not built; run `pyhost image "
                                                    "build`"))
            elif image.up_to_date is False:
                checks.append(Check("image", False, f"{tag} is older than the sources; run "
                                                    "`pyhost image build`"))
            else:
                size = f"{image.size / 1e6:.0f} MB" if image.size else "size unknown"
                checks.append(Check("image", True, f"{tag} ({size}, base {image.base})"))
        checks.append(_check_pythons())
        checks.extend(_check_libraries(tag))
    else:
        checks.append(Check("image", False, "cannot be checked without an engine"))
    checks.append(_check_sandbox_uid(local=sock is not None))
    checks.append(_check_io(os.path.abspath(io_dir)))
    return checks


def _check_sandbox_uid(local: bool) -> Check:
    """Whether the uid sessions run as is an account of the engine's host: that account
    could then signal the sessions' processes and read what they write."""
    try:
        uid = sandbox_uid()
    except PyHostError as exc:
        return Check("sandbox uid", False, str(exc))
    if local and os.getuid() != 0:
        return Check("sandbox uid", True, f"pyhost is not root: sessions run as this user "
                                          f"(uid {os.getuid()}), not uid {uid}")
    if not local:
        return Check("sandbox uid", True, f"uid {uid}; the engine is remote: make sure no "
                                          "account of its host has that uid")
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return Check("sandbox uid", True, f"uid {uid} is no account on this host")
    return Check("sandbox uid", False, f"uid {uid} is the host account {account.pw_name!r}, "
                                       "which could signal sessions and read their files; "
                                       f"set {SANDBOX_UID_ENV} to a uid no account has")


def _check_deployment() -> Check:
    """How sessions will be reached: local, from inside a container of the engine, or remote."""
    try:
        return Check("deployment", True, EngineView(docker_client()).describe())
    except PyHostError as exc:
        return Check("deployment", False, str(exc))


def _check_pythons() -> Check:
    """Which python_version values have an image. Informational: a missing one fails only
    the runs that ask for it, with the command that builds it."""
    try:
        found = python_images(docker_client())
    except PyHostError as exc:
        return Check("pythons", False, str(exc))
    have = ", ".join(f"{version} ({image})" for version, image in found.items()) or "none"
    missing = [version for version in DEBIAN_VERSIONS if version not in found]
    hint = (f"; build {', '.join(missing)} with `pyhost image build --python all`"
            if missing else "")
    return Check("pythons", True, f"{have}{hint}")


def _check_libraries(tag: str) -> list[Check]:
    """For the default image and each per-version image, the versions of the libraries it
    gives user code (:data:`~.libraries.USER_LIBRARIES`); one that lacks some fails, naming
    them and the command that rebuilds it."""
    try:
        client = docker_client()
        images: dict[str, str | None] = {tag: None}  # image -> the version it is built for
        for python, image in python_images(client).items():
            images.setdefault(image, python)
    except PyHostError as exc:
        return [Check("libraries", False, str(exc))]
    try:
        pins: list[Pin] | None = read_constraints(find_sources().constraints)
    except PyHostError:
        pins = None  # no sources here: the labels are shown, not compared
    checks = []
    for image, version in images.items():
        rebuild = (f"`pyhost image build --python {version}`" if version
                   else "`pyhost image build`")
        try:
            found = image_libraries(client, image)
            attrs = inspect_image(client, image)
        except PyHostError as exc:
            checks.append(Check("libraries", False, f"{image}: {exc}"))
            continue
        if found is None or attrs is None:
            continue  # the image check or the pythons check already says so
        hint = f"; rebuild it with {rebuild}" if found.missing else ""
        checks.append(Check("libraries", not found.missing, f"{found}{hint}"))
        checks.append(_check_versions(image, attrs, pins, rebuild))
    return checks


def _check_versions(image: str, attrs: dict[str, Any], pins: list[Pin] | None,
                    rebuild: str) -> Check:
    """The versions an image holds (its :data:`~.pins.VERSIONS_LABEL`, read back from it
    when it was built), and whether they are what the constraints pin now."""
    label = image_labels(attrs).get(VERSIONS_LABEL)
    if label is None:
        return Check("versions", False, f"{image} records no pinned versions (built before "
                                        f"{CONSTRAINTS_NAME}); rebuild it with {rebuild}")
    held = parse_versions(label)
    listed = ", ".join(f"{name} {version}" for name, version in held.items())
    python = image_python(attrs)
    if pins is None or python is None:
        return Check("versions", True, f"{image}: {listed}")
    try:
        problems = pin_problems(held, pins_for(pins, python))
    except PyHostError as exc:
        return Check("versions", False, f"{image}: {exc}")
    if problems:
        return Check("versions", False, f"{image} (Python {python}) differs from "
                                        f"{CONSTRAINTS_NAME}: {'; '.join(problems)}; "
                                        f"rebuild it with {rebuild}")
    return Check("versions", True, f"{image} (Python {python}), as {CONSTRAINTS_NAME} pins: "
                                   f"{listed}")


def _check_io(path: str) -> Check:
    if not os.path.exists(path):
        parent = os.path.dirname(path)
        if os.access(parent, os.W_OK):
            return Check("io", True, f"{path} will be created on first use")
        return Check("io", False, f"{path} does not exist and {parent} is not writable")
    if not os.path.isdir(path):
        return Check("io", False, f"{path} exists and is not a directory")
    access = plan_io_access(path)
    user = f"the session runs as {access.uid}:{access.gid}"
    if access.read_only:
        return Check("io", False, f"{path} will be mounted read-only ({user}, who may not "
                                  "write there); make it writable to let sessions write")
    grant = f"; uid {access.uid} will get an ACL entry on it" if access.grant else ""
    return Check("io", True, f"{path} is writable: {user}{grant}")
