"""Which engine answers, told from its ``/info`` and ``/version`` answers, and what that
changes: no engine needed. The answers are trimmed from real engines' (Docker 20.10 and
Podman 4.3 on Debian bookworm as they answered here; Docker Desktop and the rootless engines
as their documentation and users' reports show them)."""

from __future__ import annotations

import resource
import socket
from types import SimpleNamespace

import docker.errors
import pytest
import requests

from pyhost.errors import EngineUnavailable
from pyhost.launchers.docker.client import engine_errors
from pyhost.launchers.docker.engine_kind import (
    EngineKind,
    engine_kind,
    engine_process_limits,
    parse_limits,
    podman_version,
    rlimit_advice,
    session_ulimits,
)
from pyhost.launchers.docker.paths import EngineView, desktop_socket

DOCKER_INFO = {
    "OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "OSType": "linux", "Name": "vm",
    "ServerVersion": "20.10.24+dfsg1", "Labels": [], "Driver": "overlay2",
    "SecurityOptions": ["name=seccomp,profile=default"],
}
DOCKER_VERSION = {
    "Platform": {"Name": ""}, "Version": "20.10.24+dfsg1", "ApiVersion": "1.41",
    "Components": [{"Name": "Engine", "Version": "20.10.24+dfsg1"},
                   {"Name": "containerd", "Version": "1.6.20~ds1"},
                   {"Name": "runc", "Version": "1.1.5+ds1"}, {"Name": "docker-init"}],
}
DOCKER_PING = {"Api-Version": "1.41", "Server": "Docker/20.10.24+dfsg1 (linux)"}
PODMAN_INFO = {
    "OperatingSystem": "debian", "OSType": "linux", "Name": "vm", "ServerVersion": "4.3.1",
    "Labels": None, "Driver": "overlay", "SecurityOptions": ["name=seccomp,profile=default"],
}
PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"}, "Version": "4.3.1", "ApiVersion": "1.41",
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1",
                    "Details": {"APIVersion": "4.3.1", "MinAPIVersion": "4.0.0"}},
                   {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
                   {"Name": "OCI Runtime (runc)", "Version": "runc version 1.1.5+ds1"}],
}
PODMAN_PING = {"Api-Version": "1.41", "Libpod-Api-Version": "4.3.1",
               "Server": "Libpod/4.3.1 (linux)"}
# /proc/PID/limits of Podman's service as it ran here (in a container, no CAP_SYS_RESOURCE).
PODMAN_LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             32768                32768                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
"""
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
    assert session_ulimits(kind, parse_limits(PODMAN_LIMITS)) == {}


def test_podman_is_named_by_its_component_and_says_what_it_changes():
    kind = engine_kind(PODMAN_INFO, PODMAN_VERSION, platform="linux")
    assert kind == EngineKind("Podman", "4.3.1") and kind.podman
    assert str(kind) == "Podman 4.3.1"
    (change,) = kind.changes()
    assert "localhost/NAME" in change and "limits" in change
    # What a launcher knows of it from its ping alone: no /info, so rootless is unknown.
    from_ping = engine_kind({}, podman_version("4.3.1"), platform="linux")
    assert from_ping == EngineKind("Podman", "4.3.1", rootless=None)


def test_docker_desktop_runs_in_a_vm_however_it_says_so():
    assert engine_kind(DESKTOP_INFO, DESKTOP_VERSION, platform="darwin") == \
        EngineKind("Docker Desktop", "27.4.0", in_vm=True)
    # Docker Desktop for Linux: the engine is in a VM on Linux too.
    assert engine_kind(DESKTOP_INFO, DESKTOP_VERSION, platform="linux").in_vm
    # Each sign alone is enough (a launcher asks /info only).
    plain_info = {**DESKTOP_INFO, "OperatingSystem": "", "Labels": []}
    assert engine_kind(plain_info, DESKTOP_VERSION, platform="linux").in_vm
    assert engine_kind({**plain_info, "Labels": DESKTOP_INFO["Labels"]}, {},
                       platform="linux").in_vm
    assert engine_kind({**DESKTOP_INFO, "Labels": []}, {}, platform="linux").in_vm
    assert not engine_kind(plain_info, {}, platform="linux").in_vm
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
    assert engine_kind(info, version, platform="linux").rootless is False


def test_the_engine_process_limits_are_read_from_proc():
    assert parse_limits(PODMAN_LIMITS) == {"nofile": (20000, 20000), "nproc": (32768, 32768)}
    unlimited = PODMAN_LIMITS.replace("32768                32768", "unlimited            "
                                      "unlimited")
    assert parse_limits(unlimited)["nproc"] == (1048576, 1048576)


def test_podman_containers_ask_for_the_engine_limits_and_others_for_none():
    podman = engine_kind({}, podman_version("4.3.1"), platform="linux")
    limits = parse_limits(PODMAN_LIMITS)
    assert session_ulimits(podman, limits) == limits
    # Unknown engine limits (a remote Podman): nothing is asked, its defaults decide.
    assert session_ulimits(podman, None) == {}
    huge = {"nofile": (1 << 40, 1 << 40), "nproc": (4096, 1 << 40)}
    assert session_ulimits(podman, huge) == {"nofile": (1048576, 1048576),
                                             "nproc": (4096, 1048576)}


def test_the_limits_of_the_process_behind_a_unix_socket(tmp_path):
    """This process listens: its own limits are found through the socket's peer."""
    path = str(tmp_path / "engine.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        found = engine_process_limits(path)
    nofile, nproc = (resource.getrlimit(which) for which in (resource.RLIMIT_NOFILE,
                                                            resource.RLIMIT_NPROC))
    capped = tuple(1048576 if value == resource.RLIM_INFINITY else value for value in nofile)
    assert found is not None and found["nofile"] == capped
    assert set(found) == {"nofile", "nproc"}
    assert engine_process_limits(str(tmp_path / "no-such.sock")) is None


def test_an_rlimit_failure_says_what_to_change():
    said = ("HTTP 500: runc: runc create failed: unable to start container process: error "
            "during container init: error setting rlimits for ready process: error setting "
            "rlimit type 7: operation not permitted: OCI permission denied")
    assert "`default_ulimits = []`" in rlimit_advice(said)
    assert rlimit_advice("HTTP 404: no such image") == ""


class _StubClient:
    """What EngineView reads of an SDK client: its base URL and socket, its ping's headers,
    /info."""

    def __init__(self, base_url: str, ping: dict, info: dict,
                 socket_path: str = "/var/run/docker.sock") -> None:
        self.api = SimpleNamespace(base_url=base_url, get=self._get,
                                   _custom_adapter=SimpleNamespace(socket_path=socket_path))
        self._ping, self._info = ping, info
        self.info_asked = 0

    def _get(self, url: str) -> SimpleNamespace:
        assert url.endswith("/_ping")
        return SimpleNamespace(headers=self._ping, raise_for_status=lambda: None)

    def info(self) -> dict:
        self.info_asked += 1
        return self._info


DESKTOP_SOCKET = "/home/ada/.docker/desktop/docker.sock"


@pytest.mark.parametrize("base_url, ping, info, socket_path, published, product, asked", [
    ("http+docker://localhost", DOCKER_PING, DOCKER_INFO, "/var/run/docker.sock", False,
     "Docker", 0),
    ("http+docker://localhost", PODMAN_PING, PODMAN_INFO, "/tmp/p/podman.sock", False,
     "Podman", 0),  # Podman's /info is slow; its ping names it
    ("http+docker://localhost", DOCKER_PING, DESKTOP_INFO, DESKTOP_SOCKET, True,
     "Docker Desktop", 1),
    ("http://10.0.0.5:2375", DOCKER_PING, DOCKER_INFO, "", True, "Docker", 0),
])
def test_sessions_are_published_where_no_unix_socket_reaches(base_url, ping, info, socket_path,
                                                             published, product, asked):
    client = _StubClient(base_url, ping, info, socket_path)
    view = EngineView(client)
    assert view.published is published
    assert view.kind.product == product
    assert client.info_asked == asked  # /info only where it decides something
    if ping is DOCKER_PING and not asked:  # the version from the ping's Server header
        assert view.kind.version == "20.10.24+dfsg1"
    if product == "Docker Desktop":
        assert "in a VM (Docker Desktop)" in view.describe()


@pytest.mark.parametrize("path, desktop", [
    ("/home/ada/.docker/desktop/docker.sock", True),
    ("/var/run/docker.sock", False),
    ("/run/user/1000/docker.sock", False),
    ("/tmp/podman/podman.sock", False),
])
def test_only_docker_desktops_socket_is_worth_asking_info(path, desktop):
    assert desktop_socket(path) is desktop


def test_only_a_podman_view_gives_containers_explicit_ulimits():
    docker_view = EngineView(_StubClient("http+docker://localhost", DOCKER_PING, DOCKER_INFO))
    assert docker_view.ulimits() is None


def test_an_engine_error_quotes_the_engine_and_keeps_its_cause():
    """The SDK's text leads with the request URL; pyhost quotes the engine's own words,
    cut in the middle when long, and adds what to change for an rlimit failure."""
    explanation = ("runc: runc create failed: unable to start container process: "
                   + "error during container init: " * 10
                   + "error setting rlimits for ready process: error setting rlimit type 7: "
                   "operation not permitted: OCI permission denied")
    response = requests.Response()
    response.status_code, response.reason = 500, "Internal Server Error"
    response.url = f"http+docker://localhost/v1.41/containers/{'f' * 64}/start"
    error = docker.errors.APIError(requests.HTTPError(response=response), response=response,
                                   explanation=explanation)
    assert str(error).startswith("500 Server Error for http+docker://")  # the SDK's text
    with pytest.raises(EngineUnavailable) as caught:
        with engine_errors("the engine could not start the session container"):
            raise error
    message = str(caught.value)
    assert caught.value.__cause__ is error
    assert message.startswith("the engine could not start the session container: HTTP 500: "
                              "runc: runc create failed")
    assert "http+docker://" not in message and " ... " in message
    quoted, _, advice = message.partition("; the engine asked")
    assert quoted.endswith("error setting rlimit type 7: operation not permitted: OCI "
                           "permission denied")
    assert "`default_ulimits = []`" in advice

