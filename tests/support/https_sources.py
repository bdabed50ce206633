"""Remote function sources served over real TLS on 127.0.0.1, for the tests of ``git+https://``
and ``zip+https://``: a certificate authority made for the test (``trustme``), and one server
with these paths:

* ``/git/<repo>.git/...``: git's smart HTTP, ``git http-backend`` run as a CGI program over the
  bare repositories under ``<root>/git``;
* ``/files/<name>``: the files under ``<root>/files`` (404 for any other name);
* ``/status/<code>/...``: answers ``<code>`` (e.g. 404, 500) to anything below it, git's
  requests included;
* ``/moved/...``: redirects (302) to the same path without ``/moved``; ``/to-http/...`` to it
  over plain ``http://`` (the same port: nothing answers http there);
* ``/private/...``: the same as without the prefix, for a request with HTTP Basic credentials
  :data:`USER` / :data:`TOKEN`; 401 asking for them otherwise.

Every request line is recorded (:attr:`SourceServer.requests`), with whether it carried the
right credentials, so a test can see what was asked and sent.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import ssl
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import trustme

__all__ = ["TOKEN", "USER", "Served", "SourceServer", "bare_repository", "serve_functions"]

USER = "deploy"
TOKEN = "tok-3b9e51c07d"  # a marker: a test asserts it is shown nowhere
_GIT_HTTP_BACKEND = ["git", "http-backend"]


@dataclass(frozen=True)
class Seen:
    """One request as the server got it."""

    method: str
    path: str
    authorized: bool


class SourceServer:
    """The TLS server described above, on an ephemeral port of 127.0.0.1; a context manager.

    Attributes:
        url: ``https://127.0.0.1:<port>``.
        ca_file: the PEM file of the test's certificate authority (the server's certificate
            is signed by it and by nothing a system trusts).
        requests: what the server was asked, in order.
    """

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        (root / "git").mkdir(parents=True, exist_ok=True)
        (root / "files").mkdir(parents=True, exist_ok=True)
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.requests: list[Seen] = []
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # the handshake happens in the request's thread: a client that refuses the
        # certificate cannot stall the accepting loop
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> SourceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def private(self, url: str) -> str:
        """``url`` (of this server) under ``/private``, with the credentials in it."""
        rest = url[len(self.url):]
        return f"https://{USER}:{TOKEN}@{self.url[len('https://'):]}/private{rest}"


def bare_repository(root: Path, name: str, work: Path) -> Path:
    """``work`` (a repository with commits) pushed, every branch and tag, to a new bare
    repository ``<root>/git/<name>.git``; returns its path."""
    bare = root / "git" / f"{name}.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(work), str(bare)], check=True,
                   capture_output=True)
    return bare


def _handler_for(server: SourceServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        source_server = server
    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    source_server: SourceServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._route()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        authorized = self._authorized()
        self.source_server.requests.append(Seen(self.command, path, authorized))
        body = self._body()
        if path.startswith("/private/"):
            if not authorized:
                self._answer(401, b"credentials needed\n",
                             {"WWW-Authenticate": 'Basic realm="sources"'})
                return
            path = path[len("/private"):]
        if path.startswith(("/moved/", "/to-http/")):
            _, hop, rest = path.split("/", 2)
            where = self.source_server.url
            if hop == "to-http":
                where = where.replace("https://", "http://", 1)
            query = urlsplit(self.path).query
            self._answer(302, b"", {"Location": f"{where}/{rest}" + (f"?{query}" if query
                                                                      else "")})
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self._answer(code, f"the test's server answers {code}\n".encode())
        elif path.startswith("/git/"):
            self._git(path[len("/git"):], body)
        elif path.startswith("/files/"):
            self._file(unquote(path[len("/files/"):]))
        else:
            self._answer(404, b"no such path\n")

    def _authorized(self) -> bool:
        expected = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()  # the blank line after the last chunk
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _file(self, name: str) -> None:
        files = self.source_server.root / "files"
        path = files / name
        if "/" in name or not path.is_file():
            self._answer(404, b"no such file\n")
            return
        self._answer(200, path.read_bytes(), {"Content-Type": "application/zip"})

    def _git(self, path_info: str, body: bytes) -> None:
        """``git http-backend`` as a CGI program (RFC 3875): the request in variables and on
        stdin, the answer's headers, a blank line and its body on stdout."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GIT_PROJECT_ROOT": str(self.source_server.root / "git"),
               "GIT_HTTP_EXPORT_ALL": "1", "GATEWAY_INTERFACE": "CGI/1.1",
               "SERVER_PROTOCOL": self.request_version, "REQUEST_METHOD": self.command,
               "PATH_INFO": path_info, "QUERY_STRING": urlsplit(self.path).query,
               "REMOTE_ADDR": self.client_address[0], "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": self.headers.get("Content-Type", "")}
        for header in ("Git-Protocol", "Content-Encoding"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        done = subprocess.run(_GIT_HTTP_BACKEND, input=body, env=env, capture_output=True,
                              timeout=60, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        if done.returncode != 0 and not head:
            status, payload = 500, done.stderr
        self._answer(status, payload, headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError):  # a client that refused our certificate
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Served:
    """What :func:`serve_functions` put on a server: the URLs of a repository and a zip whose
    handler ``main`` returns the name of where it came from."""

    server: SourceServer
    repository: str  # https://.../git/functions.git: branches main, feature; tag v1
    tagged: str  # the sha of the commit v1 names
    archive: str  # https://.../files/functions.zip


def serve_functions(server: SourceServer, work: Path) -> Served:
    """A repository (``main`` returns 'v1' at the tag ``v1``, 'main' on the branch ``main``,
    'feature' on the branch ``feature``) and a zip (``main`` returns 'zipped'), on ``server``."""
    work.mkdir(parents=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(work), "-c", "user.name=t",
                               "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    def commit(returns: str) -> str:
        (work / "main.py").write_text(f"def main():\n    return {returns!r}\n")
        git("add", "-A")
        git("commit", "-qm", returns)
        return git("rev-parse", "HEAD")

    git("init", "-q", "-b", "main")
    tagged = commit("v1")
    git("tag", "v1")
    commit("main")
    git("checkout", "-q", "-b", "feature", "v1")
    commit("feature")
    git("checkout", "-q", "main")
    bare_repository(server.root, "functions", work)
    with zipfile.ZipFile(server.root / "files" / "functions.zip", "w",
                         zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.py", "def main():\n    return 'zipped'\n")
    return Served(server, f"{server.url}/git/functions.git", tagged,
                  f"{server.url}/files/functions.zip")


@contextlib.contextmanager
def served_functions(root: Path) -> Iterator[Served]:
    """A server with a new authority under ``root``, serving the functions, for the block."""
    with SourceServer(root / "www", trustme.CA()) as server:
        yield serve_functions(server, root / "work")
