"""``git+https://`` and ``zip+https://`` sources against a real TLS server on 127.0.0.1 (a
certificate authority made for the test, ``git http-backend`` as CGI, static files, 404 and
500), saved through ``project.new_function`` into a real catalog (no Docker here; the jobs that
run these sources are in ``tests/integration/test_remote_sources.py``).

Each refusal names the URL and what went wrong, shows no credentials, saves nothing and leaves
no temporary directory behind."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import trustme

import pyhost.runtime as dh
from pyhost import ConfigurationError, NotInCatalog
from pyhost.runtime.sources import redact_url
from tests.security.conftest import open_fds
from tests.support.https_sources import TOKEN, USER, served_functions


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_functions(tmp_path_factory.mktemp("served")) as served:
        yield served


@pytest.fixture
def trusted(served, monkeypatch):
    """The test's authority trusted for sources, the documented way."""
    monkeypatch.setenv("PYHOST_SOURCE_CA_FILE", str(served.server.ca_file))
    return served


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The temporary directory of this test alone: empty again when the test ends (every
    fetch cleans up after itself, refused or not)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    assert sorted(entry.name for entry in path.iterdir()) == []


def save(code_src: str, name: str = "remote"):
    return dh.get_or_create_project("remote").new_function(
        name=name, kind="python", handler="main", code_src=code_src)


def refused(code_src: str, match: str) -> str:
    """The message of the refusal to save ``code_src``; nothing was saved."""
    fds = open_fds()
    with pytest.raises(ConfigurationError, match=match) as caught:
        save(code_src, "refused")
    with pytest.raises(NotInCatalog):
        dh.get_or_create_project("remote").get_function("refused")
    # the server's side of the connection is closed by its own thread, maybe a moment later
    deadline = time.monotonic() + 5
    while open_fds() > fds and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open_fds() <= fds
    return str(caught.value)


def source_of(function) -> bytes:
    return function.source().files["main.py"]


@pytest.mark.parametrize("ref, returns", [("", "main"), ("#main", "main"),
                                          ("#feature", "feature"), ("#v1", "v1"),
                                          ("#tagged", "v1")])
def test_a_git_https_source_at_each_kind_of_ref(home, trusted, scratch, ref, returns):
    ref = ref.replace("tagged", trusted.tagged)
    fn = save(f"git+{trusted.repository}{ref}")
    assert source_of(fn) == f"def main():\n    return {returns!r}\n".encode()
    assert fn.spec["code_src"] == f"git+{trusted.repository}{ref}"
    asked = [seen.path for seen in trusted.server.requests]
    assert "/git/functions.git/git-upload-pack" in asked  # git's smart HTTP, not a dumb fetch


def test_a_zip_https_source_and_one_behind_a_redirect(home, trusted, scratch):
    assert source_of(save(f"zip+{trusted.archive}")) == b"def main():\n    return 'zipped'\n"
    moved = trusted.archive.replace("/files/", "/moved/files/")
    assert source_of(save(f"zip+{moved}", "moved")) == b"def main():\n    return 'zipped'\n"


@pytest.mark.parametrize("kind", ["branch", "commit"])
def test_a_ref_that_does_not_exist_is_refused_naming_it(home, trusted, scratch, kind):
    ref = "no-such-branch" if kind == "branch" else "0123456789" * 4
    message = refused(f"git+{trusted.repository}#{ref}", f"'{ref}'")
    assert trusted.repository in message
    assert ("has no branch or tag" if kind == "branch" else "has no commit") in message


@pytest.mark.parametrize("status", [404, 500])
@pytest.mark.parametrize("source", ["git", "zip"])
def test_a_server_answering_an_error_is_refused_naming_the_url(home, trusted, scratch, source,
                                                                status):
    url = f"{trusted.server.url}/status/{status}/" + ("functions.git" if source == "git"
                                                       else "functions.zip")
    said = {"zip": f"the server answered HTTP {status} ", "git": "returned error: 500"
            if status == 500 else f"repository '{url}/' not found"}[source]
    assert url in refused(f"{source}+{url}", re.escape(said))


def test_a_missing_file_is_a_404_naming_the_url(home, trusted, scratch):
    url = trusted.archive.replace("functions.zip", "missing.zip")
    assert url in refused(f"zip+{url}", r"the server answered HTTP 404 \(Not Found\)")


@pytest.mark.parametrize("source", ["git", "zip"])
def test_an_unknown_authority_is_refused_saying_how_to_trust_it(home, served, scratch, source,
                                                                monkeypatch):
    monkeypatch.delenv("PYHOST_SOURCE_CA_FILE", raising=False)
    url = served.repository if source == "git" else served.archive
    message = refused(f"{source}+{url}", "certificate")
    assert "set PYHOST_SOURCE_CA_FILE" in message and url in message


@pytest.mark.parametrize("source, variable", [("zip", "SSL_CERT_FILE"),
                                              ("git", "GIT_SSL_CAINFO")])
def test_each_tools_own_setting_still_replaces_the_systems_authorities(
        home, served, scratch, monkeypatch, source, variable):
    """What was honoured before PYHOST_SOURCE_CA_FILE still is, on its own side; with both set,
    pyhost's adds to the tool's, it does not replace them."""
    monkeypatch.delenv("PYHOST_SOURCE_CA_FILE", raising=False)
    code_src = f"{source}+" + (served.repository if source == "git" else served.archive)
    other = served.server.root / "other-ca.pem"  # an authority that did not sign the server
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv(variable, str(other))
    refused(code_src, "certificate")
    monkeypatch.setenv(variable, str(served.server.ca_file))
    assert source_of(save(code_src, "tools-own"))
    monkeypatch.setenv("PYHOST_SOURCE_CA_FILE", str(other))
    assert source_of(save(code_src, "both"))


@pytest.mark.parametrize("source", ["git", "zip"])
def test_a_bad_authority_setting_is_refused_naming_it(home, served, scratch, monkeypatch,
                                                      tmp_path, source):
    code_src = f"{source}+" + (served.repository if source == "git" else served.archive)
    monkeypatch.setenv("PYHOST_SOURCE_CA_FILE", str(tmp_path / "nowhere.pem"))
    refused(code_src, "PYHOST_SOURCE_CA_FILE=.*nowhere.pem.*no such file")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    monkeypatch.setenv("PYHOST_SOURCE_CA_FILE", str(tmp_path / "junk.pem"))
    refused(code_src, "PYHOST_SOURCE_CA_FILE=.*junk.pem.*not a PEM file of certificate "
                      "authorities")


@pytest.mark.parametrize("source", ["git", "zip"])
def test_a_redirect_from_https_to_http_is_refused(home, trusted, scratch, source):
    url = trusted.repository if source == "git" else trusted.archive
    downgraded = url.replace(trusted.server.url, trusted.server.url + "/to-http")
    refused(f"{source}+{downgraded}", "redirects to .*not followed" if source == "git"
            else "redirects to 'http://.*a redirect may not leave https")


def assert_token_nowhere(home: Path) -> None:
    checked = 0
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
            checked += 1
    assert (home / "catalog.db").exists() and checked


@pytest.mark.parametrize("source", ["git", "zip"])
def test_credentials_in_the_url_are_sent_and_never_shown(home, trusted, scratch, source):
    server = trusted.server
    url = server.private(trusted.repository if source == "git" else trusted.archive)
    shown = url.replace(f"{USER}:{TOKEN}@", "***@")
    fn = save(f"{source}+{url}")
    assert source_of(fn) in (b"def main():\n    return 'main'\n",
                             b"def main():\n    return 'zipped'\n")
    assert any(seen.authorized and seen.path.startswith("/private/")
               for seen in server.requests)
    assert fn.spec["code_src"] == f"{source}+{shown}"  # the catalog keeps no credentials
    assert_token_nowhere(home)
    # refused: a 404 behind the credentials, and credentials the server does not take
    missing = url.replace("functions.", "missing.")
    message = refused(f"{source}+{missing}", "404|not found")
    assert TOKEN not in message and missing.replace(f"{USER}:{TOKEN}@", "***@") in message
    wrong = url.replace(TOKEN, "wrong-" + TOKEN[::-1])
    message = refused(f"{source}+{wrong}", "401|Authentication failed")
    assert TOKEN[::-1] not in message and "***@" in message



def test_git_is_given_the_credentials_on_no_command_line(home, trusted, scratch, tmp_path,
                                                         monkeypatch):
    """A command line is readable by every user of the host (``ps``): git gets the URL without
    the credentials, and a helper answers with them for that server only."""
    calls = tmp_path / "git-calls.log"
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n'
                    f'exec {shutil.which("git")} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    server = trusted.server
    fn = save("git+" + server.private(trusted.repository))
    assert source_of(fn) == b"def main():\n    return 'main'\n"
    fetches = [line for line in calls.read_text().splitlines() if " fetch " in line]
    assert fetches and all(TOKEN not in line and USER not in line for line in fetches)
    assert f" {trusted.repository.replace('/git/', '/private/git/')} " in fetches[0]
    assert any(seen.authorized for seen in server.requests)  # the helper answered


@pytest.mark.parametrize("text, shown", [
    ("git+https://u:t0k@host/r.git#main", "git+https://***@host/r.git#main"),
    ("zip+https://t0k@host:8443/a.zip", "zip+https://***@host:8443/a.zip"),
    ("https://u:p@t0k@host/x", "https://***@host/x"),  # an unescaped @ in the password
    ("fatal: 'https://u:t0k@h/r/' and 'http://v:t0k@g/'", "fatal: 'https://***@h/r/' and "
                                                         "'http://***@g/'"),
    ("/srv/src@2024/main.py", "/srv/src@2024/main.py"),  # a local path is no URL
])
def test_redact_url_hides_every_credential(text, shown):
    assert redact_url(text) == shown
