"""Which engine answers, told from its ``/info`` and ``/version`` answers, and what that
changes: no engine needed. The answers are trimmed from real engines' (Docker 20.10 and
Podman 4.3 on Debian bookworm as they answered here; Docker Desktop and the rootless engines
as their documentation and users' reports show them)."""

from __future__ import annotations

import resource
from types import SimpleNamespace

import pytest

from pyhost.launchers.docker.engine_kind import EngineKind, engine_kind, session_ulimits
from pyhost.launchers.docker.paths import EngineView

DOCKER_INFO = {
    "OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "OSType": "linux",
    "Name": "buildhost", "ServerVersion": "20.10.24+dfsg1", "Labels": [],
    "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
}
DOCKER_VERSION = {
    "Platform": {"Name": ""}, "Version": "20.10.24+dfsg1", "ApiVersion": "1.41",
    "Components": [{"Name": "Engine", "Version": "20.10.24+dfsg1"},
                   {"Name": "containerd", "Version": "1.6.20~ds1"},
                   {"Name": "runc", "Version": "1.1.5+ds1"}],
}
PODMAN_INFO = {
    "OperatingSystem": "debian", "OSType": "linux", "Name": "buildhost",
    "ServerVersion": "4.3.1", "Labels": None,
    "SecurityOptions": ["name=apparmor", "name=seccomp,profile=default"],
}
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"}, "Version": "4.3.1", "ApiVersion": "1.41",
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1",
                    "Details": {"APIVersion": "4.3.1", "MinAPIVersion": "4.0.0"}}],
}
DESKTOP_INFO = {
    "OperatingSystem": "Docker Desktop", "OSType": "linux", "Name": "docker-desktop",
    "KernelVersion": "6.10.14-linuxkit", "ServerVersion": "27.4.0",
    "Labels": ["com.docker.desktop.address=unix:///Users/me/Library/Containers/"
               "com.docker.docker/Data/docker-cli.sock"],
    "SecurityOptions": ["name=seccomp,profile=unconfined", "name=cgroupns"],
}
DESKTOP_VERSION = {
    "Platform": {"Name": "Docker Desktop 4.37.1 (178610)"}, "Version": "27.4.0",
    "Components": [{"Name": "Engine", "Version": "27.4.0"}],
}
ROOTLESS_OPTIONS = ["name=seccomp,profile=builtin", "name=rootless", "name=cgroupns"]


def test_docker_on_linux_changes_nothing():
    kind = engine_kind(DOCKER_INFO, DOCKER_VERSION, platform="linux")
    assert kind == EngineKind("Docker", "20.10.24+dfsg1")
    assert str(kind) == "Docker 20.10.24+dfsg1"
    assert kind.changes() == ()
    assert session_ulimits(kind, local=True) == {}


def test_podman_is_named_by_its_component_and_says_what_it_changes():
    kind = engine_kind(PODMAN_INFO, PODMAN_VERSION, platform="linux")
    assert kind == EngineKind("Podman", "4.3.1") and kind.podman
    assert str(kind) == "Podman 4.3.1"
    (change,) = kind.changes()
    assert "localhost/NAME" in change and "limits" in change


def test_docker_desktop_runs_in_a_vm_however_it_says_so():
    assert engine_kind(DESKTOP_INFO, DESKTOP_VERSION, platform="darwin") == \
        EngineKind("Docker Desktop", "27.4.0", in_vm=True)
    # Docker Desktop for Linux: the engine is in a VM on Linux too.
    assert engine_kind(DESKTOP_INFO, DESKTOP_VERSION, platform="linux").in_vm
    # Each sign alone is enough.
    plain_info = {**DESKTOP_INFO, "OperatingSystem": "", "Labels": []}
    assert engine_kind(plain_info, DESKTOP_VERSION, platform="linux").in_vm
    assert engine_kind({**plain_info, "Labels": DESKTOP_INFO["Labels"]}, {},
                       platform="linux").in_vm
    assert engine_kind({**DESKTOP_INFO, "Labels": []}, {}, platform="linux").in_vm
    changes = " ".join(engine_kind(DESKTOP_INFO, DESKTOP_VERSION).changes())
    assert "published" in changes and "127.0.0.1" in changes


def test_any_local_engine_of_a_machine_that_is_not_linux_is_in_a_vm():
    colima = {**DOCKER_INFO, "OperatingSystem": "Ubuntu 24.04.1 LTS", "Name": "colima"}
    assert engine_kind(colima, DOCKER_VERSION, platform="darwin").in_vm
    assert engine_kind(PODMAN_INFO, PODMAN_VERSION, platform="win32").in_vm
    # Reached over TCP or ssh it is a remote engine, which publishes ports anyway.
    assert not engine_kind(colima, DOCKER_VERSION, platform="darwin", local=False).in_vm


@pytest.mark.parametrize("info, version, product", [
    (DOCKER_INFO, DOCKER_VERSION, "Docker"), (PODMAN_INFO, PODMAN_VERSION, "Podman")])
def test_a_rootless_engine_is_told_by_its_security_options(info, version, product):
    kind = engine_kind({**info, "SecurityOptions": ROOTLESS_OPTIONS}, version, platform="linux")
    assert kind.product == product and kind.rootless and not kind.in_vm
    assert str(kind).endswith(" rootless")
    assert any("subordinate" in change for change in kind.changes())
    assert not engine_kind(info, version, platform="linux").rootless


def test_a_local_podman_session_asks_for_the_limits_this_process_has():
    podman = engine_kind(PODMAN_INFO, PODMAN_VERSION, platform="linux")
    limits = session_ulimits(podman, local=True)
    assert set(limits) == {"nofile", "nproc"}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = limits[name]
        own_soft, own_hard = resource.getrlimit(which)
        assert 0 < soft <= hard <= 1048576
        assert own_hard == resource.RLIM_INFINITY or hard <= own_hard
        assert own_soft == resource.RLIM_INFINITY or soft <= own_soft
    # Nothing is known of a remote Podman's limits: nothing is asked for.
    assert session_ulimits(podman, local=False) == {}


class _StubClient:
    """The three things EngineView reads of an SDK client."""

    def __init__(self, base_url: str, info: dict, version: dict) -> None:
        self.api = SimpleNamespace(base_url=base_url)
        self._info, self._version = info, version

    def info(self) -> dict:
        return self._info

    def version(self) -> dict:
        return self._version


@pytest.mark.parametrize("base_url, info, version, published", [
    ("http+docker://localhost", DOCKER_INFO, DOCKER_VERSION, False),
    ("http+docker://localhost", PODMAN_INFO, PODMAN_VERSION, False),
    ("http+docker://localhost", DESKTOP_INFO, DESKTOP_VERSION, True),
    ("http+docker://localnpipe", DESKTOP_INFO, DESKTOP_VERSION, True),
    ("http://10.0.0.5:2375", DOCKER_INFO, DOCKER_VERSION, True),
])
def test_sessions_are_published_where_no_unix_socket_reaches(base_url, info, version,
                                                             published):
    view = EngineView(_StubClient(base_url, info, version))
    assert view.published is published
    if info is DESKTOP_INFO:
        assert "in a VM (Docker Desktop)" in view.describe()


def test_a_local_podman_view_gives_containers_explicit_ulimits():
    view = EngineView(_StubClient("http+docker://localhost", PODMAN_INFO,
                                  PODMAN_VERSION))
    ulimits = view.ulimits()
    assert ulimits is not None and sorted(u["Name"] for u in ulimits) == ["nofile", "nproc"]
    docker_view = EngineView(_StubClient("http+docker://localhost", DOCKER_INFO,
                                         DOCKER_VERSION))
    assert docker_view.ulimits() is None
