"""Where the engine is and how it sees our paths: pure functions, no engine."""

import pytest

from pyhost.launchers.base import Endpoint
from pyhost.launchers.docker.networking import (
    check_publish_address,
    network_endpoint,
    published_endpoint,
)
from pyhost.launchers.docker.paths import container_id_candidates, locate_engine, translate

ID = "4f1c" + "0" * 56 + "beef"
OTHER = "a" * 64

# What a container of a local engine sees (trimmed from a real one).
CONTAINER_MOUNTINFO = f"""\
651 556 0:52 / / rw,relatime master:299 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X
652 651 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
660 651 254:0 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw
661 651 254:0 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw
662 651 254:0 /var/lib/docker/containers/{ID}/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
663 651 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw
"""

# What the engine's own machine sees: another container's shm is a mount POINT there.
ENGINE_HOST_MOUNTINFO = f"""\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw
700 42 0:60 / /var/lib/docker/containers/{OTHER}/mounts/shm rw - tmpfs shm rw,size=65536k
"""


def test_the_container_id_comes_from_the_per_container_files():
    assert container_id_candidates(CONTAINER_MOUNTINFO) == [ID]


def test_other_containers_mounts_on_the_engine_host_are_not_ours():
    assert container_id_candidates(ENGINE_HOST_MOUNTINFO, hostname="vm") == []


def test_cgroup_and_a_short_id_hostname_are_candidates_too():
    cgroup = f"12:pids:/docker/{OTHER}\n0::/system.slice/docker-{ID}.scope\n"
    assert container_id_candidates("", cgroup, "0123456789ab") == [OTHER, ID, "0123456789ab"]
    assert container_id_candidates("", "0::/\n", "my-laptop") == []


def test_ids_are_not_repeated():
    assert container_id_candidates(CONTAINER_MOUNTINFO, f"0::/docker/{ID}") == [ID]


MOUNTS = [
    {"Type": "bind", "Source": "/srv/data", "Destination": "/data"},
    {"Type": "bind", "Source": "/srv/deep", "Destination": "/data/deep"},
    {"Type": "volume", "Name": "cache", "Source": "/var/lib/docker/volumes/cache/_data",
     "Destination": "/cache"},
    {"Type": "tmpfs", "Source": "", "Destination": "/scratch"},
    {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock"},
]


@pytest.mark.parametrize("path, seen", [
    ("/data", "/srv/data"),
    ("/data/io", "/srv/data/io"),
    ("/data/io/sub/dir", "/srv/data/io/sub/dir"),
    ("/data/deep/io", "/srv/deep/io"),  # the longest destination wins
    ("/data/deeper", "/srv/data/deeper"),  # a prefix of the name is not a parent directory
    ("/cache/io", "/var/lib/docker/volumes/cache/_data/io"),
])
def test_paths_translate_through_the_longest_mount(path, seen):
    assert translate(path, MOUNTS) == seen


@pytest.mark.parametrize("path", ["/tmp/pyhost-x", "/database/io", "/scratch/io", "/"])
def test_paths_in_the_containers_own_filesystem_or_a_tmpfs_do_not_translate(path):
    assert translate(path, MOUNTS) is None


@pytest.mark.parametrize("base_url, docker_host, remote, host", [
    ("http+docker://localhost", None, False, None),
    ("http+docker://localunixsocket", None, False, None),
    ("http+docker://localnpipe", None, False, None),
    ("http://127.0.0.1:2375", "tcp://127.0.0.1:2375", True, "127.0.0.1"),
    ("https://engine.example:2376", None, True, "engine.example"),
    ("http+docker://ssh", "ssh://me@build-box:2222", True, "build-box"),
    ("http+docker://ssh", None, True, None),
])
def test_the_engine_is_remote_unless_its_url_is_a_local_socket(base_url, docker_host, remote,
                                                               host):
    location = locate_engine(base_url, docker_host)
    assert (location.remote, location.host) == (remote, host)


def test_publish_addresses_are_ipv4():
    assert check_publish_address("0.0.0.0") == "0.0.0.0"
    for bad in ("localhost", "::1", "", "300.1.1.1"):
        with pytest.raises(ValueError, match="publish_address must be an IPv4 address"):
            check_publish_address(bad)


def test_endpoints_are_read_from_an_inspect():
    attrs = {"NetworkSettings": {
        "Networks": {"sessions": {"IPAddress": "172.20.0.5"}, "other": {"IPAddress": ""}},
        "Ports": {"5151/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}]},
    }}
    assert network_endpoint(attrs, "sessions") == Endpoint("tcp", ("172.20.0.5", 5151))
    assert network_endpoint(attrs, "other") is None
    assert network_endpoint({}, "sessions") is None
    assert published_endpoint(attrs, "127.0.0.1", None) == Endpoint("tcp", ("127.0.0.1", 49153))
    # bound to every address: reached at the engine's host name
    assert published_endpoint(attrs, "0.0.0.0", "engine.example") == \
        Endpoint("tcp", ("engine.example", 49153))
    assert published_endpoint({"NetworkSettings": {"Ports": {"5151/tcp": None}}},
                              "127.0.0.1", None) is None
