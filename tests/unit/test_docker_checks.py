"""Options only the Docker launcher understands are checked by it when the session is made,
before anything starts and without asking the engine (none runs in the unit suite)."""

import pytest

from pyhost import ConfigurationError, py
from pyhost.launchers import get_launcher
from pyhost.launchers.docker.launcher import DockerLauncher


@pytest.fixture
def docker_launcher():
    # No client is made until a container starts: these checks must never get that far.
    return DockerLauncher(client=None)


@pytest.mark.parametrize("options, named", [
    ({"io": "/data", "io_volume": "vol"}, "io_volume"),
    ({"publish_address": "localhost"}, "publish_address"),
    ({"publish_address": "::1"}, "publish_address"),
    ({"network": "host"}, "network='host'"),
    ({"network": "container:abc"}, "network='container:abc'"),
    ({"network": "bridge"}, "network='bridge'"),
])
def test_bad_docker_options_fail_at_py(docker_launcher, options, named):
    with pytest.raises(ConfigurationError, match=named):
        py(launcher=docker_launcher, **options)
    assert docker_launcher._client is None  # the engine was never asked


def test_good_docker_options_pass_without_an_engine(docker_launcher):
    s = py(launcher=docker_launcher, io_volume="vol", io=None, network="sessions",
           publish_address="0.0.0.0")
    assert not s.closed and s.container_id is None
    assert docker_launcher._client is None


def test_launchers_are_chosen_by_name():
    assert get_launcher("process").name == "process"
    assert get_launcher("process") is get_launcher("process")
    assert get_launcher("pyhost.launchers.process:ProcessLauncher").name == "process"
    with pytest.raises(ConfigurationError, match="not a launcher name"):
        get_launcher("kubernetes")
    with pytest.raises(ConfigurationError, match="cannot load"):
        get_launcher("pyhost.nowhere:Launcher")
    with pytest.raises(ConfigurationError, match="is not a Launcher class"):
        get_launcher("pyhost.errors:PyHostError")


def test_the_gateway_check_says_whether_swarm_tasks_have_a_route_out():
    from pyhost.launchers.docker.swarm.doctor import gateway_check

    masquerade = "com.docker.network.bridge.enable_ip_masquerade"
    assert gateway_check({masquerade: "false"}).ok
    for options in ({masquerade: "true"}, {}):  # Docker's default masquerades
        check = gateway_check(options)
        assert not check.ok and "route out" in check.detail
    assert not gateway_check(None).ok
