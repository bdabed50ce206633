"""The pure parts of who a session is and what it is given (issue #18, parts 3, 4, 6a): the
sandbox uid setting, the key read from stdin or a file, secrets over the channel (with the
process launcher: a real server, no Docker), the socket directory lock, the build limits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hxpy import protocol
from hxpy.server import read_key
from pyhost import py
from pyhost.errors import ConfigurationError, ProtocolError
from pyhost.launchers.base import LaunchSpec, server_env
from pyhost.launchers.docker.function_image import BUILD_MEMORY, BUILD_TIMEOUT, build_limits
from pyhost.launchers.docker.iodir import SANDBOX_UID, sandbox_uid
from pyhost.launchers.docker.launcher import lock_socket_dir
from pyhost.session.handshake import check_secrets_reply


def test_the_sandbox_uid_is_61000_unless_configured(monkeypatch):
    monkeypatch.delenv("PYHOST_SANDBOX_UID", raising=False)
    assert sandbox_uid() == SANDBOX_UID == 61000
    monkeypatch.setenv("PYHOST_SANDBOX_UID", " 70000 ")
    assert sandbox_uid() == 70000


@pytest.mark.parametrize("value", ["0", "-5", "root", "2147483647", "1e3"])
def test_a_bad_sandbox_uid_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("PYHOST_SANDBOX_UID", value)
    with pytest.raises(ConfigurationError, match=f"PYHOST_SANDBOX_UID='{value}'"):
        sandbox_uid()


def test_the_servers_environment_holds_neither_key_nor_secrets():
    spec = LaunchSpec(session_id="s", key="the-key", env={"A": "1"},
                      secrets={"TOKEN": "the-secret"})
    env = server_env(spec, "unix:/x")
    assert env["HXPY_KEY_FROM"] == "stdin" and env["A"] == "1"
    assert "the-key" not in repr(env) and "the-secret" not in repr(env)
    assert "the-secret" not in repr(spec)


def _read_key_in_child(source: str, stdin: bytes) -> str:
    code = ("import sys, os; from hxpy.server import read_key; k = read_key(sys.argv[1]); "
            "print(k, os.readlink('/proc/self/fd/0'))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, source], input=stdin, env=env,
                          capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_the_key_is_one_line_of_stdin_and_stdin_is_empty_after_it():
    # The rest of what came is not left for user code: stdin is /dev/null afterwards.
    assert _read_key_in_child("stdin", b"abc123\nmore\n") == "abc123 /dev/null"
    assert _read_key_in_child("stdin", b"") == "/dev/null"


def test_the_key_from_a_file_and_no_key_from_nowhere(tmp_path):
    (tmp_path / "key").write_text("k3y\n")
    assert read_key(f"file:{tmp_path / 'key'}") == "k3y"
    assert read_key("") == "" and read_key("env") == ""


def test_secrets_reach_user_code_but_not_the_process_environment(monkeypatch):
    monkeypatch.setenv("HXPY_IN_PARENT", "x")
    with py(launcher="process", io=None, secrets={"TOKEN": "s3cr3t-marker"}) as session:
        assert session.eval("__import__('os').environ['TOKEN']") == "s3cr3t-marker"
        pid = session.eval("__import__('os').getpid()")
        with open(f"/proc/{pid}/environ", "rb") as environ:
            started_with = environ.read()
        key = session._key
    assert b"HXPY_IN_PARENT=x" in started_with  # it is the server's real environment
    assert b"s3cr3t-marker" not in started_with and key.encode() not in started_with


def test_an_older_server_that_refuses_secrets_is_an_error_not_a_silence():
    old = {"type": protocol.ERROR, "id": 0, "kind": protocol.KIND_PROTOCOL,
           "error": {"type": "ValueError", "message": "unexpected message type 'secrets'"}}
    with pytest.raises(ProtocolError, match="unexpected message type 'secrets'.*rebuild"):
        check_secrets_reply(old, "s1")
    check_secrets_reply({"type": protocol.RESULT, "id": 0, "value": 1}, "s1")


def test_the_locked_socket_directory_is_roots_and_closed(tmp_path):
    path = tmp_path / "sock"
    path.mkdir()
    if os.getuid() == 0:
        os.chown(path, 61000, 61000)
    lock_socket_dir(str(path))
    info = os.stat(path)
    if os.getuid() == 0:
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o700)
    else:
        assert info.st_mode & 0o777 == 0o500
    lock_socket_dir(str(tmp_path / "gone"))  # already removed: nothing to do


def test_build_limits_default_and_configured(monkeypatch):
    monkeypatch.delenv("PYHOST_BUILD_MEMORY", raising=False)
    monkeypatch.delenv("PYHOST_BUILD_TIMEOUT", raising=False)
    assert (BUILD_MEMORY, BUILD_TIMEOUT) == ("2g", 1800.0)
    assert build_limits() == (2 << 30, 1800.0)
    monkeypatch.setenv("PYHOST_BUILD_MEMORY", "512m")
    monkeypatch.setenv("PYHOST_BUILD_TIMEOUT", "60")
    assert build_limits() == (512 << 20, 60.0)


@pytest.mark.parametrize("name, value", [("PYHOST_BUILD_MEMORY", "1m"),
                                         ("PYHOST_BUILD_MEMORY", "lots"),
                                         ("PYHOST_BUILD_TIMEOUT", "0"),
                                         ("PYHOST_BUILD_TIMEOUT", "inf")])
def test_bad_build_limits_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        build_limits()
