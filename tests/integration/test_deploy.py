"""Deployments beside the default: network= sessions, pyhost itself in a container of the
engine (Docker-in-Docker, with the engine socket mounted), and a remote engine.

The Docker-in-Docker host is an image built FROM the session image with pyhost and its pure
Python dependencies copied in. Everything made here is labelled org.pyhost.test=1 and removed
by id; session containers started inside the host container are removed by their owner label.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import sys

import docker
import docker.errors
import docker.types
import pytest

from pyhost import PyHostError, py
from pyhost.launchers.base import LaunchSpec
from pyhost.launchers.docker.image import DEFAULT_TAG
from pyhost.launchers.docker.launcher import DockerLauncher
from pyhost.launchers.docker.networking import PUBLISH_NETWORK, SERVER_PORT
from pyhost.launchers.ownership import LABEL_PREFIX
from pyhost.session.handshake import open_server
from tests.support.dind import ROOT, TEST_LABELS, dind_host_image, host_result, run_host
from tests.support.forwarder import UnixForwarder

DESIGN_EXAMPLE = ('.timeout(10).define("a", 100).define("b", 2)'
                  '.exec("def mult(x, y): return x * y\\n").eval("mult(a, b)")')


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture
def network(client):
    """A user-defined internal network, as a compose file would make it."""
    name = f"pyhost-test-{secrets.token_hex(4)}"
    made = client.api.create_network(name, driver="bridge", internal=True, labels=TEST_LABELS)
    yield name
    client.api.remove_network(made["Id"])


@pytest.fixture(scope="module")
def host_image(client):
    """An image FROM the session image that can run pyhost as the trusted host."""
    with dind_host_image(client) as tag:
        yield tag


# -- network= from this machine ---------------------------------------------------------------

def test_a_network_session_keeps_the_sandbox_and_is_reached_over_tcp(client, io_dir, network):
    with py(io=io_dir, network=network) as s:
        assert s.eval("2 + 3") == 5
        attrs = client.api.inspect_container(s.container_id)
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == network
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert f"HXPY_LISTEN=tcp:0.0.0.0:{SERVER_PORT}" in attrs["Config"]["Env"]
        assert not any(m["Destination"] == "/run/hxpy" for m in attrs["Mounts"])
        assert s.exec("import os").eval("os.getuid()") != 0
        s.eval("open('/io/net.txt', 'w').write('over tcp') and None")
    assert open(os.path.join(io_dir, "net.txt")).read() == "over tcp"


def test_an_async_network_session_moves_a_large_array_over_tcp(client, io_dir, network):
    import asyncio

    import numpy as np

    from pyhost import AsyncSession

    array = np.arange(1_000_000, dtype="f8").reshape(1000, 1000)

    async def run() -> tuple[np.ndarray, str]:
        async with AsyncSession(io=io_dir, network=network) as s:
            back = await s.define("m", array).eval("m * 2")
            mode = client.api.inspect_container(s.container_id)["HostConfig"]["NetworkMode"]
            return back, mode

    back, mode = asyncio.run(run())
    assert mode == network
    assert back.shape == (1000, 1000) and (back == array * 2).all()


def test_a_second_client_cannot_hijack_a_busy_network_session(client, network):
    spec = LaunchSpec(session_id=secrets.token_hex(6), key="", network=network)
    opened = open_server(DockerLauncher(), spec, 1 << 20)
    try:
        assert opened.instance.endpoint.kind == "tcp"
        with pytest.raises(ConnectionRefusedError):  # the server stopped listening
            socket.create_connection(opened.instance.endpoint.address, timeout=5)
    finally:
        opened.transport.close()
        opened.instance.cleanup()


def test_an_unknown_network_is_named_in_the_error(client):
    with pytest.raises(PyHostError, match="network='pyhost-no-such-net'.*no such network"):
        py(io=None, network="pyhost-no-such-net").eval("1")


def test_the_host_network_is_refused(client):
    with pytest.raises(PyHostError, match="network='host' would share a network stack"):
        py(io=None, network="host").eval("1")


# -- Docker-in-Docker -------------------------------------------------------------------------

DIND_SCRIPT = """
import json, os, docker
from pyhost import py
from pyhost.launchers.docker.launcher import DockerLauncher
net = os.environ["NET"]
value = py(network=net, io="/data/io")""" + DESIGN_EXAMPLE + """
with py(network=net, io="/data/io") as s:
    s.eval("open('/io/from-session.txt', 'w').write('written in the session') and None")
    attrs = docker.from_env().api.inspect_container(s.container_id)
io_source = [m["Source"] for m in attrs["Mounts"] if m["Destination"] == "/io"]
print("RESULT " + json.dumps({
    "value": value, "network": attrs["HostConfig"]["NetworkMode"], "io_source": io_source,
    "translated": DockerLauncher().engine.engine_path("/data/io"),
}))
"""


def test_docker_in_docker_runs_the_design_example_and_writes_through_io(
        client, host_image, network, tmp_path):
    code, output = run_host(client, host_image, DIND_SCRIPT, network, str(tmp_path),
                             {"NET": network})
    assert code == 0, output
    result = host_result(output)
    assert result["value"] == 200
    assert result["network"] == network
    assert result["io_source"] == [str(tmp_path / "io")]  # the path as the engine sees it
    assert result["translated"] == str(tmp_path / "io")
    written = tmp_path / "io" / "from-session.txt"
    assert written.read_text() == "written in the session"


DIND_NO_NETWORK_SCRIPT = """
import json
from pyhost import py, PyHostError
try:
    py(io="/data/io").eval("1")
    print("RESULT " + json.dumps({"error": None}))
except PyHostError as exc:
    print("RESULT " + json.dumps({"error": str(exc)}))
"""


def test_docker_in_docker_without_network_says_the_socket_dir_is_not_shared(
        client, host_image, tmp_path):
    code, output = run_host(client, host_image, DIND_NO_NETWORK_SCRIPT, None, str(tmp_path))
    assert code == 0, output
    error = host_result(output)["error"]
    assert error and "socket directory" in error
    assert "network=" in error and "PYHOST_RUNTIME_DIR" in error


DIND_RUNTIME_DIR_SCRIPT = """
import json, os, docker
from pyhost import py
os.makedirs("/data/run", exist_ok=True)
with py(io="/data/io") as s:
    value = s.eval("6 * 7")
    attrs = docker.from_env().api.inspect_container(s.container_id)
print("RESULT " + json.dumps({
    "value": value, "network": attrs["HostConfig"]["NetworkMode"],
    "sockets": [m["Source"] for m in attrs["Mounts"] if m["Destination"] == "/run/hxpy"],
}))
"""


def test_docker_in_docker_over_a_unix_socket_in_a_shared_runtime_dir(client, host_image,
                                                                    tmp_path):
    code, output = run_host(client, host_image, DIND_RUNTIME_DIR_SCRIPT, None, str(tmp_path),
                             {"PYHOST_RUNTIME_DIR": "/data/run"})
    assert code == 0, output
    result = host_result(output)
    assert result["value"] == 42
    assert result["network"] == "none"
    assert len(result["sockets"]) == 1
    assert result["sockets"][0].startswith(str(tmp_path / "run" / "pyhost-"))


DIND_PRIVATE_IO_SCRIPT = """
import json, os
from pyhost import py, PyHostError
try:
    py(io="/srv/private-io", network=os.environ["NET"]).eval("1")
    print("RESULT " + json.dumps({"error": None}))
except PyHostError as exc:
    print("RESULT " + json.dumps({"error": str(exc)}))
"""


def test_docker_in_docker_io_in_the_containers_own_filesystem_is_a_clear_error(
        client, host_image, network, tmp_path):
    code, output = run_host(client, host_image, DIND_PRIVATE_IO_SCRIPT, network,
                             str(tmp_path), {"NET": network})
    assert code == 0, output
    error = host_result(output)["error"]
    assert error and "/srv/private-io" in error and "io_host_path=" in error


# -- a remote engine --------------------------------------------------------------------------

@pytest.fixture
def remote(client):
    """The local engine behind a loopback TCP port: to pyhost, a remote engine. The pyhost
    publish network is removed afterwards if this test made it."""
    had_network = bool([n for n in client.api.networks(names=[PUBLISH_NETWORK])
                        if n["Name"] == PUBLISH_NETWORK])
    with UnixForwarder("/var/run/docker.sock") as forwarder:
        yield forwarder
    if not had_network:
        for found in client.api.networks(names=[PUBLISH_NETWORK]):
            if found["Name"] == PUBLISH_NETWORK:
                client.api.remove_network(found["Id"])


@pytest.fixture
def volume(client):
    name = f"pyhost-test-io-{secrets.token_hex(4)}"
    yield name
    try:
        client.api.remove_volume(name)
    except docker.errors.NotFound:
        pass


REMOTE_SCRIPT = """
import json, docker
from pyhost import py
value = py()""" + DESIGN_EXAMPLE + """
with py() as s:
    s.eval("None")
    attrs = docker.from_env().api.inspect_container(s.container_id)
print("RESULT " + json.dumps({
    "value": value, "network": attrs["HostConfig"]["NetworkMode"],
    "ports": attrs["NetworkSettings"]["Ports"], "env": attrs["Config"]["Env"],
    "mounts": [m["Destination"] for m in attrs["Mounts"]],
}))
"""


def test_a_remote_engine_publishes_the_port_on_loopback(client, remote, tmp_path):
    env = {**os.environ, "DOCKER_HOST": remote.url, "PYHOST_IMAGE": DEFAULT_TAG,
           "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "container")])}
    proc = subprocess.Popen([sys.executable, "-c", REMOTE_SCRIPT], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
        for left in client.api.containers(
                all=True, filters={"label": f"{LABEL_PREFIX}.owner.pid={proc.pid}"}):
            client.api.remove_container(left["Id"], force=True)
    assert proc.returncode == 0, output
    result = host_result(output)
    assert result["value"] == 200
    assert result["network"] == PUBLISH_NETWORK
    binding = result["ports"][f"{SERVER_PORT}/tcp"]
    assert binding[0]["HostIp"] == "127.0.0.1" and int(binding[0]["HostPort"]) > 0
    assert f"HXPY_LISTEN=tcp:0.0.0.0:{SERVER_PORT}" in result["env"]
    assert result["mounts"] == []  # no socket dir, and the default ./io is left out
    assert not (tmp_path / "io").exists()
    options = client.api.inspect_network(PUBLISH_NETWORK)["Options"]
    assert options["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    assert options["com.docker.network.bridge.enable_icc"] == "false"


def test_a_remote_session_has_no_way_out(client, remote):
    launcher = DockerLauncher(client=docker.DockerClient(base_url=remote.url))
    with py(launcher=launcher) as s:
        s.exec("import socket\n"
               "def reach(host, port):\n"
               "    try:\n"
               "        socket.create_connection((host, port), timeout=3).close()\n"
               "        return True\n"
               "    except OSError:\n"
               "        return False\n").eval("None")
        assert s.eval("reach('1.1.1.1', 53)") is False  # no NAT: no way out
        assert s.eval("reach('1.1.1.1', 443)") is False
        # The engine's TCP port listens on the engine host's loopback only, so the gateway
        # does not lead to it.
        gateway = client.api.inspect_network(PUBLISH_NETWORK)["IPAM"]["Config"][0]["Gateway"]
        assert s.eval(f"reach({gateway!r}, {remote.port})") is False


def test_an_io_volume_round_trips_between_remote_sessions(client, remote, volume):
    launcher = DockerLauncher(client=docker.DockerClient(base_url=remote.url))
    py(launcher=launcher, io_volume=volume).eval(
        "open('/io/kept.txt', 'w').write('from the first session') and None")
    assert py(launcher=launcher, io_volume=volume).eval("open('/io/kept.txt').read()") == \
        "from the first session"


def test_an_explicit_local_io_dir_on_a_remote_engine_is_a_clear_error(client, remote,
                                                                      io_dir):
    launcher = DockerLauncher(client=docker.DockerClient(base_url=remote.url))
    with pytest.raises(PyHostError, match="is remote and cannot mount it; use io_volume="):
        py(launcher=launcher, io=io_dir).eval("1")
    assert not os.path.exists(io_dir)


def test_io_and_io_volume_together_are_refused_before_anything_is_made(client, io_dir, volume):
    with pytest.raises(ValueError, match="pass one of them"):
        py(io=io_dir, io_volume=volume).eval("1")
    assert not os.path.exists(io_dir)
    with pytest.raises(docker.errors.NotFound):
        client.api.inspect_volume(volume)


def test_an_io_volume_replaces_the_default_io_on_a_local_engine(client, volume):
    with py(io_volume=volume) as s:
        s.eval("open('/io/here.txt', 'w').write('in the volume') and None")
        mounts = client.api.inspect_container(s.container_id)["Mounts"]
    assert [(m["Type"], m.get("Name")) for m in mounts if m["Destination"] == "/io"] == \
        [("volume", volume)]


# -- a local engine in a VM (Docker Desktop) --------------------------------------------------

def test_an_engine_in_a_vm_is_reached_on_a_published_port_and_keeps_io(client, io_dir,
                                                                        runtime_dir):
    """Docker Desktop runs its engine in a VM, where a Unix socket of this machine cannot be
    bind-mounted: told so (here by hand, as no VM runs on this machine), the launcher takes
    the remote engine's published port on loopback, and still mounts the io directory."""
    launcher = DockerLauncher(client=docker.from_env(), runtime_dir=runtime_dir)
    view = launcher.engine
    view._kind = dataclasses.replace(view.kind, product="Docker Desktop", in_vm=True)
    assert view.published and not view.location.remote
    with py(launcher=launcher, io=io_dir) as s:
        assert s.timeout(10).define("a", 100).define("b", 2).exec(
            "def mult(x, y): return x * y\n").eval("mult(a, b)") == 200
        s.exec("open('/io/from-vm.txt', 'w').write('through the shared directory')").eval(
            "None")
        attrs = client.api.inspect_container(s.container_id)
    assert attrs["HostConfig"]["NetworkMode"] == PUBLISH_NETWORK
    binding = attrs["NetworkSettings"]["Ports"][f"{SERVER_PORT}/tcp"]
    assert binding[0]["HostIp"] == "127.0.0.1" and int(binding[0]["HostPort"]) > 0
    assert f"HXPY_LISTEN=tcp:0.0.0.0:{SERVER_PORT}" in attrs["Config"]["Env"]
    assert [m["Destination"] for m in attrs["Mounts"]] == ["/io"]  # no socket directory
    assert os.listdir(runtime_dir) == []
    with open(os.path.join(io_dir, "from-vm.txt")) as handle:
        assert handle.read() == "through the shared directory"
