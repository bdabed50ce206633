"""What the io directory plan says, for both kinds of host user: as root (the session user is
the directory's non-root owner, or the sandbox uid with the owner's bits through an ACL) and
as a non-root user (the session is that user; read-only where it cannot write). The
non-root branch runs in a forked child that really drops to another uid."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pyhost.launchers.docker.iodir import IoAccess, plan_io_access, sandbox_uid

OTHER_UID = 61007  # no account, not the sandbox uid

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="changes owners: needs root")


def _directory(tmp_path, name, mode, uid=0):
    path = tmp_path / name
    path.mkdir()
    os.chown(path, uid, uid)
    path.chmod(mode)
    return str(path)


def _plan_as(uid: int, path: str) -> dict:
    """plan_io_access(path) in a child running as ``uid`` (real and effective)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's report is what the test reads)
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            report = plan_io_access(path).__dict__
        except BaseException as exc:
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        text = report.read()
    os.waitpid(child, 0)
    report = json.loads(text)
    assert "error" not in report, report["error"]
    return report


def test_as_root_a_directory_of_a_non_root_user_is_run_as_that_user(tmp_path):
    assert plan_io_access(_directory(tmp_path, "theirs", 0o755, OTHER_UID)) == \
        IoAccess(OTHER_UID, OTHER_UID, False)
    assert plan_io_access(_directory(tmp_path, "theirs-ro", 0o555, OTHER_UID)).read_only


def test_as_root_a_root_directory_is_run_as_the_sandbox_uid_with_the_owners_bits(tmp_path):
    closed = plan_io_access(_directory(tmp_path, "closed", 0o700))
    assert (closed.uid, closed.read_only, closed.grant) == (sandbox_uid(), False, 0o7)
    assert plan_io_access(_directory(tmp_path, "open", 0o777)).grant == 0  # nothing to add
    read_only = plan_io_access(_directory(tmp_path, "ro", 0o500))
    assert read_only.read_only and read_only.grant == 0o5


@pytest.fixture
def open_tmp():
    """A directory every user can pass through (pytest's tmp_path is root's, 0700)."""
    path = tempfile.mkdtemp(prefix="hxio-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_as_a_non_root_user_the_session_is_that_user(open_tmp):
    tmp_path = open_tmp
    mine = _plan_as(OTHER_UID, _directory(tmp_path, "mine", 0o700, OTHER_UID))
    assert (mine["uid"], mine["gid"], mine["read_only"]) == (OTHER_UID, OTHER_UID, False)
    roots = _plan_as(OTHER_UID, _directory(tmp_path, "roots", 0o755))
    assert (roots["uid"], roots["read_only"]) == (OTHER_UID, True)  # it cannot write there
