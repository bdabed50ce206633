"""Sessions in real containers: the foundation's promises."""

import glob
import os
import threading
import time

import pytest

from hxpy import protocol, wire
from pyhost import (
    MarshalError,
    PythonError,
    SessionDied,
    SessionTimeout,
    py,
)
from pyhost.launchers.docker.launcher import DockerLauncher
from tests.support.raw import start_raw


def test_the_design_example_leaves_no_container(client, io_dir):
    session = py(io=io_dir)
    val = (session.timeout(10)
           .define("a", 100)
           .define("b", 2)
           .exec("def mult(x, y): return x * y\n")
           .eval("mult(a, b)"))
    assert val == 200
    assert session.closed
    # no_leftover_containers checks the engine; also check by name
    assert not client.api.containers(all=True, filters={"name": f"pyhost-{session.id}"})


def test_context_manager_keeps_one_container_and_its_namespace(client, io_dir):
    with py(io=io_dir) as s:
        s.define("items", [1, 2, 3]).exec("total = sum(items)").eval("None")
        container = s.container_id
        assert container and len(container) == 64
        assert s.eval("total") == 6
        assert s.define("more", 4).eval("total + more") == 10
        assert s.container_id == container
        state = client.api.inspect_container(container)["State"]
        assert state["Running"]
    assert not client.api.containers(all=True, filters={"id": container})


def test_remote_error_with_traceback_and_the_session_survives(client, io_dir):
    with py(io=io_dir) as s:
        s.define("x", 1).eval("None")
        with pytest.raises(PythonError) as info:
            s.exec("def f():\n    return undefined_name\n").eval("f()")
        assert info.value.remote_type == "NameError"
        assert "undefined_name" in info.value.remote_message
        assert "return undefined_name" in info.value.remote_traceback
        assert s.eval("x + 1") == 2


def test_timeout_raises_within_a_second_of_the_deadline(client, io_dir):
    with py(io=io_dir) as s:
        s.eval("None")
        started = time.monotonic()
        with pytest.raises(SessionTimeout):
            s.timeout(1).eval("while True: pass")
        assert time.monotonic() - started < 2.0


def test_hard_timeout_kills_the_container(client, io_dir):
    s = py(io=io_dir, timeout=1)
    with s:
        s.exec("import signal; signal.signal(signal.SIGALRM, signal.SIG_IGN)").eval("None")
        container = s.container_id
        started = time.monotonic()
        with pytest.raises(SessionTimeout) as info:
            s.eval("while True: pass")
        assert time.monotonic() - started < 2.0
        assert info.value.kind == "hard"
        assert not client.api.containers(all=True, filters={"id": container})


def test_io_round_trip(client, io_dir):
    assert py(io=io_dir).eval(
        "open('/io/example.txt', 'w').write('hello from the container')") == 24
    with open(os.path.join(io_dir, "example.txt")) as written:
        assert written.read() == "hello from the container"
    with open(os.path.join(io_dir, "from-host.txt"), "w") as out:
        out.write("hello from the host")
    assert py(io=io_dir).eval("open('/io/from-host.txt').read()") == "hello from the host"


def test_output_is_returned(client, io_dir):
    with py(io=io_dir) as s:
        assert s.eval("print('visible'); 3") == 3
        assert s.last_output == "visible\n"


def test_container_death_is_reported_within_a_second(client, io_dir):
    with py(io=io_dir) as s:
        s.eval("None")
        threading.Timer(0.5, lambda: client.api.kill(s.container_id)).start()
        started = time.monotonic()
        with pytest.raises(SessionDied) as info:
            s.eval("import time; time.sleep(30)")
        assert time.monotonic() - started < 0.5 + 1.0
        assert info.value.exit_code == 137
        assert s.eval("'restarted'") == "restarted"


def test_oversized_define_is_refused_on_the_host(client, io_dir):
    with py(io=io_dir, max_frame=1 << 20) as s:
        s.eval("None")
        with pytest.raises(MarshalError, match="maximum frame size"):
            s.define("big", b"\0" * (2 << 20)).eval("len(big)")
        assert s.eval("1") == 1


def test_oversized_reply_is_refused_in_the_container_and_the_session_survives(client, io_dir):
    with py(io=io_dir, max_frame=1 << 20) as s:
        with pytest.raises(MarshalError, match="exceeds the maximum frame size"):
            s.eval("b'x' * (2 << 20)")
        assert s.eval("'still here'") == "still here"


def _raw_server(client, io_dir):
    return start_raw(DockerLauncher(), "the-right-key", io_dir=None)


def test_wrong_key_is_refused_by_a_real_server(client, io_dir):
    instance, sock = _raw_server(client, io_dir)
    try:
        wire.send_message(sock, {"type": "hello", "version": protocol.PROTOCOL_VERSION,
                                 "key": "a-wrong-key"})
        assert wire.recv_message(sock) == {"type": "refused", "reason": "wrong session key"}
    finally:
        sock.close()
        instance.cleanup()


def test_oversized_frame_is_refused_by_a_real_server(client, io_dir):
    instance, sock = _raw_server(client, io_dir)
    try:
        wire.send_message(sock, {"type": "hello", "version": protocol.PROTOCOL_VERSION,
                                 "key": "the-right-key"})
        assert wire.recv_message(sock)["type"] == "welcome"
        sock.sendall(wire.HEADER.pack(0xFFFF_FFFF))  # a buffer frame of 2 GiB - 1
        reply = wire.recv_message(sock)
        assert reply["kind"] == "protocol"
        assert "exceeds the maximum frame size" in reply["error"]["message"]
        assert instance.wait(10) is not None  # the server closed the session
    finally:
        sock.close()
        instance.cleanup()


def test_fifty_sessions_in_a_row_leave_nothing_behind(client, io_dir, runtime_dir):
    launcher = DockerLauncher(runtime_dir=runtime_dir)
    with py(io=io_dir, launcher=launcher) as probe:
        probe.eval("None")
        # The socket dirs are here while sessions run: the checks below look where they are.
        assert glob.glob(os.path.join(runtime_dir, f"pyhost-{probe.id}-*"))
    ids = [probe.id]
    for n in range(50):
        session = py(io=io_dir, launcher=launcher)
        ids.append(session.id)
        assert session.define("n", n).eval("n * 2") == n * 2
    for session_id in ids:
        assert not glob.glob(os.path.join(runtime_dir, f"pyhost-{session_id}-*"))
    assert not client.api.containers(all=True, filters={"label": f"org.pyhost.owner.pid="
                                                                 f"{os.getpid()}"})


def test_the_client_speaks_the_engines_api_version_or_docker_api_version(client, monkeypatch):
    from pyhost.launchers.docker import client as client_module

    engine = client.version()["ApiVersion"]
    monkeypatch.delenv("DOCKER_API_VERSION", raising=False)
    assert client_module._connect().api.api_version == engine  # from its ping alone
    monkeypatch.setenv("DOCKER_API_VERSION", "1.40")
    pinned = client_module._connect()
    assert pinned.api.api_version == "1.40"
    assert pinned.containers.list(filters={"label": "no-such-label"}) == []  # it speaks it


def test_a_cold_server_answers_without_the_modules_it_imports_lazily(client, io_dir):
    # tests/unit/test_server_imports.py checks the list on the host's Python; this is the
    # image's, started as the image starts it. User logging still goes with the output.
    from tests.unit.test_server_imports import LAZY

    with py(io=io_dir) as s:
        assert s.eval(f"sorted(set(__import__('sys').modules) & {set(LAZY)!r})") == []
        s.exec("import logging")
        s.eval("logging.getLogger('user').warning('careful: %d', 3)")
        assert s.last_output == "WARNING:user:careful: 3\n"
