"""The fault matrix's common ground (``docs/security.md``, "Faults"): a runtime home of the
test's own (a real SQLite catalog and store, and a directory for its sessions' sockets), the
real engine, and what every fault test ends with: nothing of the test left on the engine
(containers, networks, volumes, services) or on disk (socket dirs, staged ``.part`` files,
store directories no catalog record names), and ``pyhost gc``'s report on that home.

Fixtures here are named ``faults_*``: other suites add files to this folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from pyhost.launchers.docker.launcher import DockerLauncher
from pyhost.launchers.ownership import LABEL_PREFIX, SESSION_LABEL
from pyhost.runtime.catalog.sqlite import SqliteCatalog
from tests.support.detached import pyhost_cli
from tests.support.engine import engine_with_image

_PID_LABEL = f"{LABEL_PREFIX}.owner.pid"
_ENTITY_TYPES = ("artifact", "dataitem", "model")


@dataclass(frozen=True)
class GcSeen:
    """What ``pyhost gc`` printed, one line per part, and the ids it names."""

    returncode: int
    runs: str
    containers: str
    swarm: str

    @property
    def settled(self) -> list[str]:
        """The (short) ids of the runs it settled."""
        return _ids_in(self.runs)

    @property
    def removed(self) -> list[str]:
        """The (short) ids of the containers it removed."""
        return _ids_in(self.containers)

    @property
    def socket_dirs(self) -> int:
        found = re.search(r"(\d+) socket dir", self.containers)
        return int(found.group(1)) if found else -1


def _ids_in(line: str) -> list[str]:
    found = re.search(r"\(([0-9a-f, ]+)\)", line)
    return [part.strip() for part in found.group(1).split(",")] if found else []


@dataclass
class FaultsHome:
    """A home (``PYHOST_HOME``) and socket directory (``PYHOST_RUNTIME_DIR``) of one test,
    the processes it started, and the checks on what they left."""

    path: Path
    runtime_dir: Path
    client: docker.DockerClient
    launcher: DockerLauncher
    pids: set[int] = field(default_factory=set)
    before: set[str] = field(default_factory=set)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process working in this home."""
        return {**os.environ, "PYHOST_HOME": str(self.path),
                "PYHOST_RUNTIME_DIR": str(self.runtime_dir)}

    def spawn(self, argv: list[str], **options: Any) -> subprocess.Popen[str]:
        """A process of the test (what it starts is the test's) in this home's
        environment."""
        process = subprocess.Popen(argv, env=self.env, text=True, **options)
        self.pids.add(process.pid)
        return process

    def python(self, code: str, *args: str, **options: Any) -> subprocess.Popen[str]:
        return self.spawn([sys.executable, "-c", code, *args], **options)

    def cli(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python -m pyhost ARGV`` on this home."""
        return pyhost_cli(self.path, *argv, env=self.env, timeout=timeout)

    def gc(self) -> GcSeen:
        """Run ``pyhost gc`` on this home; what it said."""
        done = self.cli("gc")
        parts = {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
                 for line in (done.stdout + done.stderr).splitlines() if ":" in line}
        return GcSeen(done.returncode, parts.get("runs", ""), parts.get("containers", ""),
                      parts.get("swarm", ""))

    def owners(self) -> set[int]:
        """The processes whose engine objects are this test's: this one, those it started,
        and every owner its runs recorded (supervisors)."""
        owners = {os.getpid(), *self.pids}
        catalog_path = self.path / "catalog.db"
        if catalog_path.exists():
            catalog = SqliteCatalog(catalog_path)
            try:
                for run in catalog.find("run"):
                    labels = (run.document.get("metadata") or {}).get("owner") or {}
                    if str(labels.get(_PID_LABEL, "")).isdigit():
                        owners.add(int(labels[_PID_LABEL]))
            finally:
                catalog.close()
        return owners

    def engine_objects(self) -> dict[str, str]:
        """id -> kind of every pyhost container, network, volume and service of this
        test's processes that the engine holds now."""
        owners = {str(pid) for pid in self.owners()}
        api = self.client.api
        label = {"label": SESSION_LABEL}
        found: dict[str, str] = {}
        for kind, listing in (
                ("container", lambda: api.containers(all=True, filters=label)),
                ("network", lambda: api.networks(filters=label)),
                ("volume", lambda: api.volumes(filters=label).get("Volumes") or []),
                ("service", lambda: _services(api, label))):
            for item in listing():
                labels = item.get("Labels") or (item.get("Spec") or {}).get("Labels") or {}
                if labels.get(_PID_LABEL) in owners:
                    found[item.get("Id") or item.get("ID") or item["Name"]] = kind
        return found

    def disk_leftovers(self) -> list[str]:
        """Socket dirs in the test's runtime dir; staged files (``.part``, ``.old``) and
        entity directories that no catalog record names, in its store."""
        left = [f"socket dir {path}" for path in sorted(self.runtime_dir.iterdir())]
        store = self.path / "store"
        if store.is_dir():
            left += [f"staged file {path}" for path in sorted(store.rglob(".*"))
                     if path.name.endswith((".part", ".old"))]
            left += [f"entity directory {path} is in no record"
                     for path in self.orphaned_entity_dirs()]
        return left

    def orphaned_entity_dirs(self) -> list[Path]:
        """Version directories of the store (``<project>/<type>/<name>/<id>``) with no
        record of that id in the catalog: an entity half made."""
        store = self.path / "store"
        catalog_path = self.path / "catalog.db"
        versions = [path for entity_type in _ENTITY_TYPES
                    for path in store.glob(f"*/{entity_type}/*/*") if path.is_dir()]
        if not versions:
            return []
        catalog = SqliteCatalog(catalog_path)
        try:
            return [path for path in versions
                    if catalog.get(path.parent.parent.name, path.name) is None]
        finally:
            catalog.close()


def _services(api: Any, label: dict[str, str]) -> list[dict[str, Any]]:
    try:
        return list(api.services(filters=label))
    except docker.errors.APIError as exc:
        if exc.status_code == 503:  # no swarm here: no service can be left
            return []
        raise


@pytest.fixture(scope="session")
def faults_engine() -> docker.DockerClient:
    """The real engine with the session image (no engine is a failure, never a skip)."""
    return engine_with_image("the fault tests")


@pytest.fixture
def faults_home(tmp_path, faults_engine, monkeypatch):
    """A :class:`FaultsHome`, this process's runtime pointed at it. At the end, whatever
    the test did: the home's agent is stopped, and the test FAILS if anything of it is left
    on the engine or on disk (what is left is removed first, so one failure does not
    spill into the next test)."""
    import pyhost.runtime as dh

    path = tmp_path / "home"
    # Short: a socket path must fit in 107 bytes. Not named pyhost-*-*, which gc would take
    # for a socket dir of its own.
    runtime_dir = Path(tmp_path / "rt")
    runtime_dir.mkdir()
    monkeypatch.setenv("PYHOST_HOME", str(path))
    monkeypatch.setenv("PYHOST_RUNTIME_DIR", str(runtime_dir))
    home = FaultsHome(path, runtime_dir, faults_engine,
                      DockerLauncher(client=faults_engine, runtime_dir=str(runtime_dir)))
    home.before = set(home.engine_objects())  # this process's, from earlier tests
    dh.configure(path)
    yield home
    if (path / "agent.sock").exists():
        home.cli("agent", "stop")
    deadline = time.monotonic() + 15  # a finished job's container goes just after its end
    while (left := {id: kind for id, kind in home.engine_objects().items()
                    if id not in home.before}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for id, kind in left.items():
        _remove(faults_engine, kind, id)
    disk = home.disk_leftovers()
    assert not left and not disk, f"the test left behind: {left} {disk}"


def _remove(client: docker.DockerClient, kind: str, id: str) -> None:
    api = client.api
    remove = {"container": lambda: api.remove_container(id, force=True, v=True),
              "network": lambda: api.remove_network(id),
              "volume": lambda: api.remove_volume(id, force=True),
              "service": lambda: api.remove_service(id)}[kind]
    try:
        remove()
    except docker.errors.NotFound:
        pass
