"""The shared SDK client: on a Unix socket it does not read the environment at every request
(proxies and .netrc cannot apply there, and the walk costs ~0.4 ms a request); a TCP
engine's client still does, since a proxy may be how that engine is reached. Clients are
only constructed here: none of this connects."""

from __future__ import annotations

import docker
import pytest

from pyhost.launchers.docker.client import _local_untrusting


def _client(base_url: str) -> docker.DockerClient:
    return _local_untrusting(docker.DockerClient(base_url=base_url, version="1.41"))


def test_a_unix_socket_client_skips_the_environment(monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    api = _client("unix:///var/run/docker.sock").api
    assert api.trust_env is False
    settings = api.merge_environment_settings(api.base_url + "/_ping", {}, None, None, None)
    assert settings["proxies"] == {}


@pytest.mark.parametrize("base_url", ["tcp://127.0.0.1:2375", "http://127.0.0.1:2375"])
def test_a_tcp_client_still_takes_its_proxy_from_the_environment(monkeypatch, base_url):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    api = _client(base_url).api
    assert api.trust_env is True
    settings = api.merge_environment_settings(api.base_url + "/_ping", {}, None, None, None)
    assert settings["proxies"].get("http") == "http://proxy.invalid:3128"
