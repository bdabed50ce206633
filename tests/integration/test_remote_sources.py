"""Jobs whose code comes from ``git+https://`` and ``zip+https://``, end to end: a real TLS
server on 127.0.0.1 with a certificate authority made for the test (trusted through
``PYHOST_SOURCE_CA_FILE``), ``git http-backend`` as CGI serving a bare repository with two
branches and a tag, a zip served as a static file; the function saved in a real catalog and run
as a job in a real container, which completes with the handler's result. The host fetched the
source: the container has no network, and nothing of the fetch is left in the temporary
directory. The refusals (a ref that does not exist, 404, 500, an unknown authority, credentials)
are in ``tests/unit/test_sources_remote.py``; one of them is here too, through the same
project."""

from __future__ import annotations

import tempfile

import pytest

import pyhost.runtime as dh
from pyhost import ConfigurationError, NotInCatalog
from tests.support.https_sources import TOKEN, USER, served_functions

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_functions(tmp_path_factory.mktemp("served")) as served:
        yield served


@pytest.fixture
def project(tmp_path, client, served, monkeypatch):
    monkeypatch.setenv("PYHOST_SOURCE_CA_FILE", str(served.server.ca_file))
    dh.configure(tmp_path / "home")
    return dh.get_or_create_project("remote")


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """This test's own temporary directory: no fetch leaves anything in it."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    assert not [entry.name for entry in path.iterdir()
                if entry.name.startswith(("pyhost-git-", "pyhost-zip-"))]


@pytest.mark.parametrize("source, returns", [
    ("git", "main"), ("git#feature", "feature"), ("git#v1", "v1"), ("git#tagged", "v1"),
    ("zip", "zipped")], ids=["git-head", "git-branch", "git-tag", "git-commit", "zip"])
def test_a_job_from_a_remote_source_completes(project, served, scratch, jobs_settle, source,
                                              returns):
    kind, _, ref = source.partition("#")
    ref = served.tagged if ref == "tagged" else ref
    url = served.repository if kind == "git" else served.archive
    code_src = f"{kind}+{url}" + (f"#{ref}" if ref else "")
    fn = project.new_function(name="remote", kind="python", handler="main", code_src=code_src)
    run = fn.run(action="job", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == returns
    assert run.status.container  # it ran in a container


def test_a_job_from_a_private_repository_keeps_no_credentials(project, served, scratch,
                                                              jobs_settle, tmp_path):
    code_src = "git+" + served.server.private(served.repository) + "#feature"
    fn = project.new_function(name="private", kind="python", handler="main",
                              code_src=code_src)
    run = fn.run(action="job", wait=True)
    assert run.status.state == "COMPLETED", run.status.error
    assert run.result("result") == "feature"
    assert fn.spec["code_src"] == code_src.replace(f"{USER}:{TOKEN}@", "***@")
    home = tmp_path / "home"
    assert (home / "catalog.db").exists()
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_ref_that_does_not_exist_saves_nothing_and_runs_nothing(project, served, scratch,
                                                                  our_containers):
    with pytest.raises(ConfigurationError, match="the repository has no branch or tag "
                                                 "'gone'") as refused:
        project.new_function(name="gone", kind="python", handler="main",
                             code_src=f"git+{served.repository}#gone")
    assert served.repository in str(refused.value)
    with pytest.raises(NotInCatalog):
        project.get_function("gone")
    assert not our_containers()
