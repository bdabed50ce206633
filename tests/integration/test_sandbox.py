"""The sandbox a session runs in, attacked from inside a real container."""

import os
import secrets
import socket

import pytest

from pyhost import MarshalError, PythonError, SessionDied, py
from pyhost.launchers.base import LaunchSpec
from pyhost.launchers.docker.launcher import DockerLauncher
from pyhost.session.handshake import open_server


@pytest.fixture
def s(client, io_dir):
    with py(io=io_dir, timeout=60) as session:
        session.exec("import os, socket, subprocess").eval("None")
        yield session


def _fails(s, code):
    with pytest.raises(PythonError) as info:
        s.eval(code)
    return info.value


def test_only_loopback_exists_and_connects_fail(s):
    assert s.eval("sorted(os.listdir('/sys/class/net'))") == ["lo"]
    err = _fails(s, "socket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert err.remote_type in ("OSError", "ConnectionRefusedError", "TimeoutError")


def test_name_resolution_fails(s):
    assert _fails(s, "socket.getaddrinfo('deb.debian.org', 80)").remote_type == \
        "socket.gaierror"


@pytest.mark.parametrize("path", ["/x", "/etc/x", "/usr/x", "/home/x"])
def test_the_root_filesystem_is_read_only(s, path):
    err = _fails(s, f"open({path!r}, 'w')")
    assert err.remote_type in ("OSError", "PermissionError")


def test_no_host_file_outside_io_and_no_docker_socket(s, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    assert not s.eval(f"os.path.exists({str(secret)!r})")
    found = s.eval("[os.path.join(d, f) for d, _, fs in os.walk('/', onerror=None) "
                   "if not d.startswith('/proc') for f in fs if f.startswith('docker.sock')]")
    assert found == []


def test_non_root_no_capabilities_no_new_privileges(s):
    status = s.eval("dict(l.split(':\\t', 1) for l in open('/proc/self/status').read()"
                    ".splitlines() if ':\\t' in l)")
    assert s.eval("os.getuid()") != 0
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert int(status["CapBnd"], 16) == 0  # nothing to regain: what cap_drop=ALL gives
    assert status["NoNewPrivs"].strip() == "1"


# Starts a setuid-root program, waits for its password prompt (by then the exec has applied
# whatever the setuid bit gives) and reads the program's own ids and capabilities.
SETUID_CHILD = """
def setuid_child(path):
    info = os.stat(path)
    child = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        prompt = os.read(child.stderr.fileno(), 200).decode()
        with open(f"/proc/{child.pid}/status") as status:
            fields = dict(line.split(":\\t", 1) for line in status.read().splitlines()
                          if ":\\t" in line)
    finally:
        child.kill()
        child.wait()
    return {"setuid_root": bool(info.st_mode & 0o4000) and info.st_uid == 0, "prompt": prompt,
            **{key: fields[key].split() for key in ("Name", "Uid", "CapEff", "CapBnd",
                                                      "NoNewPrivs")}}
"""


@pytest.mark.parametrize("path", ["/usr/bin/su", "/usr/bin/passwd"])
def test_setuid_binaries_give_nothing(s, path):
    uid = s.eval("os.getuid()")
    child = s.exec(SETUID_CHILD).eval(f"setuid_child({path!r})")
    assert uid != 0
    assert child["setuid_root"], f"{path} is no longer setuid root: pick another"
    assert child["prompt"].endswith("assword: ")  # it runs and waits for a password
    assert child["Name"] == [os.path.basename(path)]
    # Without no-new-privileges the effective and saved uids would be 0 here.
    assert child["Uid"] == [str(uid)] * 4  # real, effective, saved, filesystem
    assert child["NoNewPrivs"] == ["1"]
    # Without cap_drop=ALL the bounding set (and, as root, the effective set) is Docker's
    # default.
    assert int(child["CapEff"][0], 16) == 0 and int(child["CapBnd"][0], 16) == 0


def test_a_fork_bomb_hits_the_pids_limit_and_the_host_is_fine(s):
    err = _fails(s, "procs = []\nwhile True:\n    procs.append(subprocess.Popen(['sleep', '30']))")
    assert err.remote_type in ("BlockingIOError", "OSError")
    assert "Resource temporarily unavailable" in err.remote_message
    assert s.eval("len(procs) < 300")
    s.eval("[p.kill() for p in procs] and None")


def test_a_memory_bomb_is_oom_killed(client, io_dir):
    with py(io=io_dir, mem_limit="128m") as s:
        with pytest.raises(SessionDied) as info:
            s.eval("x = []\nwhile True:\n    x.append(bytearray(32 << 20))")
        assert info.value.oom_killed


def test_filling_tmp_gives_enospc(s):
    err = _fails(s, "with open('/tmp/fill', 'wb') as f:\n"
                    "    for _ in range(100):\n        f.write(b'\\0' * (1 << 20))")
    assert "No space left on device" in err.remote_message
    s.eval("os.remove('/tmp/fill')")


def test_printing_a_gigabyte_is_capped(s):
    s.eval("chunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(chunk)")
    assert s.last_output_truncated
    assert len(s.last_output) < (1 << 20) + 200


def test_a_two_gib_define_is_refused_before_sending(s):
    sent = s.stats.bytes_out
    with pytest.raises(MarshalError, match="over the maximum frame size of 1073741824"):
        s.define("x", bytes(2 << 30))
    assert s.stats.bytes_out == sent
    assert s.eval("'still fine'") == "still fine"


def test_io_is_the_only_writable_mount(s, io_dir):
    s.eval("open('/io/out.txt', 'w').write('ok')")
    assert open(os.path.join(io_dir, "out.txt")).read() == "ok"
    mounts = s.eval("[l.split()[1] for l in open('/proc/self/mounts') if ' rw,' in l]")
    assert "/io" in mounts
    assert "/" not in mounts


def test_files_in_io_do_not_shadow_modules(client, io_dir):
    os.makedirs(io_dir, exist_ok=True)
    with open(os.path.join(io_dir, "json.py"), "w") as planted:
        planted.write("raise SystemExit('shadowed')\n")
    assert py(io=io_dir).eval("import json; json.dumps([1])") == "[1]"


def test_a_second_client_cannot_hijack_a_busy_session(client):
    spec = LaunchSpec(session_id=secrets.token_hex(6), key="")
    opened = open_server(DockerLauncher(), spec, 1 << 20)
    try:
        path = opened.instance.endpoint.address
        assert opened.instance.endpoint.kind == "unix"
        # The server stops listening and removes its socket once the host has said hello.
        assert not os.path.exists(path)
        with socket.socket(socket.AF_UNIX) as intruder, pytest.raises(FileNotFoundError):
            intruder.connect(path)
    finally:
        opened.transport.close()
        opened.instance.cleanup()
