"""Asking an image's own ``python3`` what it is: its version, its glibc (which bounds the
wheels it can use) and whether the hxpy server's packages are there.

The question is one line of Python (:data:`PYTHON_PROBE`), run in a throwaway container with
the session sandbox (no network, read-only root, no capabilities, ``no-new-privileges``,
uid 1000): the image may be anyone's (``--base``, ``base_image=``). A Debian rootfs being
made is asked the same line in a chroot (:mod:`.debian_base`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import docker
import docker.errors

from ...errors import ImageBuildError
from ..ownership import Owner
from .client import engine_errors
from .iodir import sandbox_uid
from .paths import engine_view

__all__ = ["PYTHON_PROBE", "PythonFacts", "parse_facts", "probe_python"]

# Prints "3.11 2.36 - numpy==1.24.2,pandas==1.5.3,...": the version, the glibc ("-": none,
# e.g. musl), the missing packages of the server ("-": none; else comma-separated) and every
# distribution installed, with its version ("-": none).
PYTHON_PROBE = ("import importlib.util, importlib.metadata as m, platform, sys\n"
                "missing = [n for n in ('numpy', 'pandas', 'msgpack') "
                "if importlib.util.find_spec(n) is None]\n"
                "have = sorted({'%s==%s' % (d.metadata['Name'], d.version) "
                "for d in m.distributions() if d.metadata['Name'] and ' ' not in d.version})\n"
                "print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1] or '-', "
                "','.join(missing) or '-', ','.join(have) or '-')\n")
_TIMEOUT = 60


@dataclass(frozen=True)
class PythonFacts:
    """What an image's ``python3`` said about itself."""

    python: str  # "3.11"
    glibc: tuple[int, int] | None  # None: not glibc
    missing: tuple[str, ...]  # of numpy, pandas, msgpack
    installed: dict[str, str] = field(default_factory=dict)  # distribution -> version

    @property
    def glibc_text(self) -> str:
        return f"{self.glibc[0]}.{self.glibc[1]}" if self.glibc else ""


def parse_facts(output: str, where: str) -> PythonFacts:
    """The facts in :data:`PYTHON_PROBE`'s output.

    Raises:
        ImageBuildError: the output is not what the probe prints (naming ``where``).
    """
    words = output.split()
    if len(words) != 4 or not re.fullmatch(r"\d+\.\d+", words[0]):
        raise ImageBuildError(f"python3 in {where} did not tell its version and glibc: "
                              f"{output.strip()[-500:]!r}")
    glibc = re.fullmatch(r"(\d+)\.(\d+)", words[1])
    installed = dict(item.split("==", 1) for item in words[3].split(",") if "==" in item)
    return PythonFacts(words[0], (int(glibc[1]), int(glibc[2])) if glibc else None,
                       tuple(name for name in words[2].split(",") if name != "-"), installed)


def probe_python(client: docker.DockerClient, image: str, needs: str = "") -> PythonFacts:
    """Run :data:`PYTHON_PROBE` once in ``image``, sandboxed; what it said.

    Raises:
        ImageBuildError: the image cannot run python3, or it said something else (the
            message names the image and ends with ``needs``, what the caller needs of it).
        EngineUnavailable: the engine refused.
    """
    api = client.api
    tail = f"; {needs}" if needs else ""
    with engine_errors(f"cannot probe image {image}"):
        host_config = api.create_host_config(network_mode="none", read_only=True,
                                             cap_drop=["ALL"],
                                             security_opt=["no-new-privileges"],
                                             ulimits=engine_view(client).ulimits())
        container = api.create_container(
            image, entrypoint=["python3", "-c", PYTHON_PROBE], command=[], user=sandbox_uid(),
            labels=Owner.current().labels(f"probe-{os.urandom(4).hex()}"),
            host_config=host_config, network_disabled=True)["Id"]
        try:
            try:
                api.start(container)
            except docker.errors.APIError as exc:  # no python3 to execute
                raise ImageBuildError(f"image {image!r} cannot run python3 "
                                      f"({exc.explanation or exc}){tail}") from exc
            code = api.wait(container, timeout=_TIMEOUT).get("StatusCode")
            out = api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            api.remove_container(container, force=True)
    if code != 0:
        raise ImageBuildError(f"image {image!r}: python3 did not run (exit code {code}): "
                              f"{out.strip()[-500:]}{tail}")
    return parse_facts(out, f"image {image!r}")
