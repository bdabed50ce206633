"""What every benchmark row shares: the registry of rows and the :class:`Bench`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

import pyhost
from benchmarks.containers import EchoServer, Fleet, LabellingClient
from benchmarks.report import Result
from pyhost.launchers.docker.client import docker_client
from pyhost.launchers.docker.launcher import DockerLauncher

MB = 1e6  # decimal megabytes, for MB and MB/s alike
perf_counter = time.perf_counter


# -- the registry of rows ---------------------------------------------------------------------

RowFunction = Callable[["Bench"], "list[Result]"]


@dataclass(frozen=True)
class Row:
    name: str
    issue: str
    function: RowFunction


ROWS: dict[str, Row] = {}


def row(name: str, issue: str = "") -> Callable[[RowFunction], RowFunction]:
    """Register a row function under ``name`` (its results are printed in registry order)."""

    def register(function: RowFunction) -> RowFunction:
        ROWS[name] = Row(name, issue, function)
        return function

    return register


class Bench:
    """What rows share: the engine, labelled containers, a lazily started echo server, and
    the results of earlier rows (a later row may use one as its baseline)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.client = docker_client()
        self.run_id = secrets.token_hex(6)
        self.fleet = Fleet(self.client, self.run_id)
        # Session containers get the bench labels too, through the launcher's client.
        labelling = LabellingClient(self.client, self.fleet.labels)
        self.launcher = DockerLauncher(client=labelling)
        # The image is held by id: a rebuild that moves the tag during the run (tests do that)
        # must not mix two servers in one report.
        self.image_tag = _session_image(self.client)
        self.image = str(self.client.api.inspect_image(self.image_tag)["Id"])
        self.results: dict[str, Result] = {}
        self._echo: EchoServer | None = None

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def session(self, **options: Any) -> pyhost.Session:
        """A session as ``py()`` makes it, on the labelling launcher and without an io mount
        (the runner must not write into the working directory)."""
        return pyhost.py(**self.session_options, **options)

    @property
    def session_options(self) -> dict[str, Any]:
        """What every session of the run is opened with (a warm pool must match them)."""
        return {"launcher": self.launcher, "io": None, "image": self.image}

    @property
    def echo(self) -> EchoServer:
        if self._echo is None:
            self._echo = EchoServer(self.fleet, self.image)
        return self._echo

    def close(self) -> int:
        if self._echo is not None:
            self._echo.close()
            self._echo = None
        return self.fleet.remove_all()


def _session_image(client: Any) -> str:
    try:
        from pyhost.launchers.docker.image import resolve_image
    except ImportError:
        return "hxpy:latest"
    return resolve_image(client)
