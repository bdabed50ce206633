"""An io directory the user made is usable by the session, and the user can use what the
session wrote, without pyhost changing the directory's owner or mode bits (see
pyhost.launchers.docker.iodir and docs/security.md). These run as root, as CI does."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from pyhost import PythonError, py
from pyhost.launchers.docker.iodir import SANDBOX_UID

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the cases are those of a root host")


def _acl_entries(path: str) -> bytes:
    try:
        return os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return b""


def test_a_mkdtemp_dir_of_root_is_writable_and_what_was_written_is_roots_to_use(client):
    io_dir = tempfile.mkdtemp(prefix="pyhost-io-")
    try:
        before = os.stat(io_dir)
        assert before.st_uid == 0 and stat.S_IMODE(before.st_mode) == 0o700
        with py(io=io_dir) as s:
            s.exec("open('/io/x.txt', 'w').write('hi')").eval("None")
            assert s.eval("__import__('os').getuid()") == SANDBOX_UID
        written = os.path.join(io_dir, "x.txt")
        with open(written) as handle:
            assert handle.read() == "hi"
        os.remove(written)
        after = os.stat(io_dir)
        assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
        # Owner and others keep their bits; the group bits now show the ACL mask, while the
        # owning group's own entry still grants nothing.
        assert stat.S_IMODE(after.st_mode) & 0o707 == 0o700
        assert _acl_entries(io_dir), "the session user was given access by an ACL entry"
        # A second session needs no new grant and works the same.
        assert py(io=io_dir).eval("open('/io/y.txt', 'w').write('again')") == 5
    finally:
        for name in os.listdir(io_dir):
            os.remove(os.path.join(io_dir, name))
        os.rmdir(io_dir)


def test_a_dir_owned_by_another_user_is_used_as_that_user(client, tmp_path):
    io_dir = tmp_path / "theirs"
    io_dir.mkdir(mode=0o700)
    os.chown(io_dir, 4321, 4322)
    with py(io=str(io_dir)) as s:
        assert s.eval("open('/io/out.txt', 'w').write('mine')") == 4
        assert s.eval("__import__('os').getuid(), __import__('os').getgid()") == [4321, 4322]
    info = os.stat(io_dir / "out.txt")
    assert (info.st_uid, info.st_gid) == (4321, 4322)
    assert stat.S_IMODE(os.stat(io_dir).st_mode) == 0o700
    assert not _acl_entries(str(io_dir))  # nothing to grant: the owner runs the session


def test_a_read_only_dir_is_mounted_read_only(client, tmp_path):
    io_dir = tmp_path / "inputs"
    io_dir.mkdir()
    (io_dir / "in.txt").write_text("input")
    os.chmod(io_dir, 0o555)
    try:
        with py(io=str(io_dir)) as s:
            assert s.eval("open('/io/in.txt').read()") == "input"
            with pytest.raises(PythonError) as info:
                s.eval("open('/io/out.txt', 'w')")
            assert "Read-only file system" in info.value.remote_message
        assert sorted(os.listdir(io_dir)) == ["in.txt"]
        assert stat.S_IMODE(os.stat(io_dir).st_mode) == 0o555
    finally:
        os.chmod(io_dir, 0o755)
