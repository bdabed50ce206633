"""Who a session is on the host, and what of it the host's configuration shows (issue #18,
parts 3, 4, 6a), against real containers:

* the socket directory bind-mounted at ``/run/hxpy`` takes no file once the host is
  connected: a new file, an append, a directory, a link are refused, and the host directory
  stays empty;
* the session runs as the sandbox uid, which is no account on this host;
* a secret and the session key are in neither ``docker inspect`` nor the server's
  ``/proc/<pid>/environ``, for a session and for a runtime job, while user code sees the
  secret in ``os.environ``;
* a build instruction ending in a continuation is refused before anything starts, and a build
  step that allocates past the build memory limit fails naming the step.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, PythonError, py
from pyhost.launchers.docker.iodir import SANDBOX_UID
from tests.security.conftest import tree_bytes

FUNCTIONS = Path(__file__).resolve().parents[1] / "support" / "functions"
MARKER = "s3cr3t-marker"

# Each attempt must fail in the container with EACCES; none may leave a byte on the host.
SOCKET_DIR_WRITES = {
    "new file": "open('/run/hxpy/fill', 'wb').write(b'x' * (1 << 20))",
    "append": "open('/run/hxpy/hxpy.sock', 'ab').write(b'x')",
    "directory": "__import__('os').mkdir('/run/hxpy/more')",
    "link": "__import__('os').symlink('/tmp', '/run/hxpy/link')",
}


def test_the_socket_directory_takes_no_file_once_the_host_is_connected():
    with py(io=None) as session:
        session.eval("None")
        socket_dir = session._instance.socket_dir
        for what, code in SOCKET_DIR_WRITES.items():
            with pytest.raises(PythonError) as refused:
                session.eval(code)
            assert refused.value.remote_type == "PermissionError", what
            assert "Permission denied" in refused.value.remote_message, what
        info = os.stat(socket_dir)
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o700)
        assert os.listdir(socket_dir) == [] and tree_bytes(socket_dir) == 0
        assert session.eval("1 + 1") == 2  # the session itself goes on
    assert not os.path.exists(socket_dir)


@pytest.mark.parametrize("configured", [None, 62000])
def test_the_session_runs_as_the_sandbox_uid_which_no_host_account_has(configured,
                                                                        monkeypatch):
    if configured is not None:  # a uid the image has no entry for: Python works even so
        monkeypatch.setenv("PYHOST_SANDBOX_UID", str(configured))
    uid = configured or SANDBOX_UID
    with py(io=None) as session:
        ids = session.eval("import os; [os.getuid(), os.getgid()]")
        status = session.eval("open('/proc/self/status').read()")
        user = session.eval("import getpass, os; [getpass.getuser(), os.path.expanduser('~')]")
    assert SANDBOX_UID == 61000 and ids == [uid, uid]
    assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
    assert user == ["hxpy", "/tmp"]  # no login account's home: HOME and USER from the image
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)


def _host_view(client, container_id: str) -> tuple[str, bytes]:
    """The container's configuration as ``docker inspect`` shows it, and the environment of
    its server process (pid 1 of the container) as this host's ``/proc`` shows it."""
    attrs = client.api.inspect_container(container_id)
    with open(f"/proc/{attrs['State']['Pid']}/environ", "rb") as environ:
        return json.dumps(attrs), environ.read()


def test_a_session_secret_and_the_key_are_not_in_the_containers_configuration(client):
    with py(io=None, secrets={"TOKEN": MARKER}) as session:
        assert session.eval("__import__('os').environ['TOKEN']") == MARKER
        key = session._key
        assert len(key) >= 32
        inspected, environ = _host_view(client, session.container_id)
        # User code sees the same: its own process started without them.
        own = session.eval("open('/proc/self/environ', 'rb').read()")
    for text in (MARKER, key):
        assert text not in inspected
        assert text.encode() not in environ and text.encode() not in own
    assert b"HXPY_KEY_FROM=stdin" in environ  # where it came from, not what it is


def test_a_job_secret_is_not_in_its_containers_configuration(home, client, monkeypatch,
                                                             jobs_settle):
    token = f"{MARKER}-{os.urandom(6).hex()}"
    monkeypatch.setenv("API_TOKEN", token)
    project = dh.get_or_create_project("secrets")

    def function(handler):
        return project.new_function(name=f"fn-{handler}", kind="python",
                                    code_src=str(FUNCTIONS / "main.py"), handler=handler)

    assert function("secret_user").run(secrets=["API_TOKEN"], wait=True) \
        .result("result") == len(token)  # the handler sees it
    run = function("sleeper").run(parameters={"seconds": 60}, secrets=["API_TOKEN"])
    deadline = time.monotonic() + 60
    while not run.refresh().status.container:
        assert run.status.state in ("READY", "RUNNING") and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        inspected, environ = _host_view(client, run.status.container)
    finally:
        assert run.stop().status.state == "STOPPED"
    assert token not in inspected and token.encode() not in environ
    assert b"HXPY_KEY_FROM=stdin" in environ


def test_a_build_instruction_ending_in_a_continuation_is_refused_before_it_starts(
        home, client, our_containers):
    project = dh.get_or_create_project("builds")
    fn = project.new_function(name="cont", kind="python",
                              code_src=str(FUNCTIONS / "main.py"), handler="sleeper")
    with pytest.raises(ConfigurationError, match=r"instruction 1 .* line continuation"):
        fn.run(action="build", instructions=["echo swallowed \\"], wait=True)
    assert not our_containers() and not client.api.images(name="pyhost/builds/cont")
    assert not list(project.list_runs())  # nothing recorded either


def test_a_build_step_past_the_memory_limit_fails_naming_it(home, client, monkeypatch):
    monkeypatch.setenv("PYHOST_BUILD_MEMORY", "96m")
    project = dh.get_or_create_project("builds")
    fn = project.new_function(name="hog", kind="python",
                              code_src=str(FUNCTIONS / "main.py"), handler="sleeper")
    hog = "python3 -c 'b = bytearray(512 << 20); print(len(b))'"
    run = fn.run(action="build", instructions=["echo fine", hog], wait=True, progress=False)
    try:
        assert run.status.state == "ERROR"
        error = run.status.error["message"]
        assert "instruction 2 of 2" in error and "code 137" in error
        assert "PYHOST_BUILD_MEMORY" in error
    finally:
        if client.api.images(name=run.spec["image"]):
            client.api.remove_image(run.spec["image"], force=True)
