"""A function's source from someone else's directory, git repository or zip: links out of the
source, devices, FIFOs, too many files, too many bytes and zip bombs are refused with the entry
and the cap named, and the host's memory stays bounded while they are (no Docker here)."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

from pyhost import ConfigurationError
from pyhost.runtime.sources import load_source
from tests.security.conftest import peak_rss_bytes, reset_peak_rss

MiB = 1 << 20
MEMORY_BOUND = 64 * MiB


def source_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "lib").mkdir(parents=True)
    (root / "main.py").write_text("def main():\n    return 1\n")
    (root / "lib" / "real.py").write_text("VALUE = 'real'\n")
    return root


@pytest.fixture
def secret(tmp_path):
    """A root-only file outside every source, with a marker in it."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("MARKER-d41d8cd9 the host's secret\n")
    path.chmod(0o600)
    return path


# -- a directory ----------------------------------------------------------------------------

def test_a_link_inside_the_source_is_kept_under_its_own_name(tmp_path):
    root = source_dir(tmp_path)
    (root / "alias.py").symlink_to("lib/real.py")
    (root / "libalias").symlink_to("lib")          # a directory link: its files are in lib/
    (root / "dangling.py").symlink_to("missing.py")  # inside, but nothing there: skipped
    files = load_source(code_src=str(root)).files
    assert files["alias.py"] == b"VALUE = 'real'\n" == files["lib/real.py"]
    assert sorted(files) == ["alias.py", "lib/real.py", "main.py"]


def test_the_path_the_user_names_may_itself_be_a_link(tmp_path):
    root = source_dir(tmp_path)
    (tmp_path / "named").symlink_to(root)
    assert "main.py" in load_source(code_src=str(tmp_path / "named")).files


@pytest.mark.parametrize("target", ["secret", "/proc/self/environ", "/dev/zero", "/etc"])
def test_a_link_out_of_the_source_is_refused_naming_it(tmp_path, secret, target):
    root = source_dir(tmp_path)
    (root / "lib" / "leak.txt").symlink_to(secret if target == "secret" else target)
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match=r"'lib/leak.txt' is a symbolic link to .*"
                                                 r"outside the source") as refused:
        load_source(code_src=str(root))
    assert "MARKER" not in str(refused.value)
    assert peak_rss_bytes() - before < MEMORY_BOUND


def test_a_relative_link_climbing_out_is_refused(tmp_path, secret):
    root = source_dir(tmp_path)
    (root / "up.txt").symlink_to("../outside/secret.txt")
    with pytest.raises(ConfigurationError, match="'up.txt' is a symbolic link"):
        load_source(code_src=str(root))


def test_a_fifo_is_refused_without_hanging(tmp_path):
    root = source_dir(tmp_path)
    os.mkfifo(root / "lib" / "pipe")
    with pytest.raises(ConfigurationError, match="'lib/pipe' is a FIFO"):
        load_source(code_src=str(root))
    os.unlink(root / "lib" / "pipe")
    os.mkfifo(root / "lib" / "pipe2")  # and a link to a FIFO inside the source
    (root / "via.txt").symlink_to("lib/pipe2")
    with pytest.raises(ConfigurationError, match="'via.txt' is a FIFO"):
        load_source(code_src=str(root))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_inside_the_source_is_refused(tmp_path):
    root = source_dir(tmp_path)
    os.mknod(root / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match="'zero' is a character device"):
        load_source(code_src=str(root))
    assert peak_rss_bytes() - before < MEMORY_BOUND


def test_too_many_files_are_refused_naming_the_cap(tmp_path, monkeypatch):
    root = tmp_path / "many"
    root.mkdir()
    for index in range(10_001):
        (root / f"m{index}.py").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"more than 10,000 files \(the cap is 10,000; "
                                                 r"set PYHOST_SOURCE_MAX_FILES to raise it\)"):
        load_source(code_src=str(root))
    monkeypatch.setenv("PYHOST_SOURCE_MAX_FILES", "10001")  # read at each call
    assert len(load_source(code_src=str(root)).files) == 10_001


def test_a_file_past_the_byte_cap_is_refused_while_it_is_read(tmp_path):
    root = source_dir(tmp_path)
    with open(root / "huge.bin", "wb") as huge:
        huge.truncate(1 << 30)  # sparse: a GiB for the reader, nothing on disk
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match=r"more than 33,554,432 bytes of files "
                                                 r"\(passed at 'huge.bin'\).*"
                                                 r"PYHOST_SOURCE_MAX_BYTES"):
        load_source(code_src=str(root))
    assert peak_rss_bytes() - before < MEMORY_BOUND


def test_a_bad_cap_setting_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PYHOST_SOURCE_MAX_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="PYHOST_SOURCE_MAX_BYTES='lots'"):
        load_source(code_src=str(source_dir(tmp_path)))


# -- git ------------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def new_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "main.py").write_text("def main():\n    return 'main'\n")
    return repo


@pytest.mark.parametrize("target", ["secret", "/proc/self/environ", "/dev/zero"])
def test_a_git_repository_linking_out_is_refused(tmp_path, secret, target):
    repo = new_repo(tmp_path)
    (repo / "data").mkdir()
    (repo / "data" / "leak").symlink_to(secret if target == "secret" else target)
    commit_all(repo, "hostile")
    with pytest.raises(ConfigurationError, match=r"'data/leak' is a symbolic link to .*"
                                                 r"outside the source") as refused:
        load_source(code_src=f"git+file://{repo}")
    assert "MARKER" not in str(refused.value)


def test_a_git_repository_linking_inside_is_read(tmp_path):
    repo = new_repo(tmp_path)
    (repo / "alias.py").symlink_to("main.py")
    commit_all(repo, "benign")
    files = load_source(code_src=f"git+file://{repo}").files
    assert files["alias.py"] == files["main.py"] == b"def main():\n    return 'main'\n"


def test_each_ref_is_fetched_alone_and_shallow(tmp_path, monkeypatch):
    """Every ref has, in its history, a commit with 4 MiB of incompressible data that its own
    tree no longer holds; with the fetch capped at 2 MiB, only a fetch of that one commit
    (depth 1) passes: a full clone would bring the big blob and be refused."""
    repo = new_repo(tmp_path)
    (repo / "big.bin").write_bytes(os.urandom(4 * MiB))
    commit_all(repo, "big")
    (repo / "big.bin").unlink()
    (repo / "main.py").write_text("def main():\n    return 'v1'\n")
    tagged = commit_all(repo, "v1")
    git(repo, "tag", "v1")
    (repo / "main.py").write_text("def main():\n    return 'main'\n")
    commit_all(repo, "main")
    git(repo, "checkout", "-q", "-b", "feature", "v1")
    (repo / "main.py").write_text("def main():\n    return 'feature'\n")
    commit_all(repo, "feature")
    git(repo, "checkout", "-q", "main")
    monkeypatch.setenv("PYHOST_SOURCE_MAX_FETCH_BYTES", str(2 * MiB))
    for ref, expected in (("", "main"), ("#main", "main"), ("#v1", "v1"),
                          ("#feature", "feature"), (f"#{tagged}", "v1")):
        files = load_source(code_src=f"git+file://{repo}{ref}").files
        assert files == {"main.py": f"def main():\n    return {expected!r}\n".encode()}, ref
    # the same fetch of a commit whose own tree holds the big file is refused by the cap
    with pytest.raises(ConfigurationError, match=r"the fetch passed the size cap \(the cap is "
                                                 r"2,097,152; set PYHOST_SOURCE_MAX_FETCH_BYTES"):
        load_source(code_src=f"git+file://{repo}#{git(repo, 'rev-parse', 'v1~1')}")


def test_a_git_tree_past_the_caps_is_refused_before_checkout(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    for index in range(30):
        (repo / f"m{index}.py").write_text("")
    commit_all(repo, "many")
    monkeypatch.setenv("PYHOST_SOURCE_MAX_FILES", "20")
    with pytest.raises(ConfigurationError, match="more than 20 files"):
        load_source(code_src=f"git+file://{repo}")


@pytest.mark.parametrize("code_src, message", [
    ("git+ext://sh -c evil", "git\\+ext:// is not read"),
    ("git+-uevil://x", "git\\+-uevil:// is not read"),
    ("git+file:///nowhere#--upload-pack=touch /tmp/x", "not a branch, tag or commit"),
    ("git+file:///nowhere#a..b", "not a branch, tag or commit"),
])
def test_git_urls_and_refs_that_could_run_commands_are_refused(code_src, message):
    with pytest.raises(ConfigurationError, match=message):
        load_source(code_src=code_src)


# -- zip ------------------------------------------------------------------------------------

def write_bomb(path: Path, inflated: int = 2 << 30) -> None:
    """A zip with one entry of ``inflated`` zero bytes, written from a stream of chunks (the
    fastest level: 2 GiB make ~9 MiB of archive in seconds)."""
    zeros = bytes(MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("main.py", "w", force_zip64=True) as entry:
            for _ in range(inflated // MiB):
                entry.write(zeros)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    write_bomb(path)
    return path


def test_a_zip_bomb_is_refused_with_memory_bounded(bomb):
    assert bomb.stat().st_size < 16 * MiB
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match=r"more than 33,554,432 bytes of files "
                                                 r"\(passed at 'main.py'\)"):
        load_source(code_src=f"zip+file://{bomb}")
    assert peak_rss_bytes() - before < MEMORY_BOUND


def test_a_zip_lying_about_its_size_is_refused(bomb, tmp_path):
    """The central directory says the 2 GiB entry holds 1000 bytes: what comes out is checked,
    not what the header says."""
    data = bytearray(bomb.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    extra = central + 46 + len("main.py")  # the zip64 extra field holds the real sizes
    assert data[extra:extra + 2] == b"\x01\x00"
    data[extra + 4:extra + 12] = (1000).to_bytes(8, "little")  # uncompressed size
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    assert zipfile.ZipFile(liar).getinfo("main.py").file_size == 1000
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match=r"'main.py' cannot be read \(Bad CRC-32"):
        load_source(code_src=f"zip+file://{liar}")
    assert peak_rss_bytes() - before < MEMORY_BOUND


def test_a_zip_inflating_past_the_ratio_is_refused(tmp_path):
    small = tmp_path / "dense.zip"
    write_bomb(small, inflated=4 * MiB)  # ~4 KiB of archive for 4 MiB of zeros
    with pytest.raises(ConfigurationError, match=r"inflates to more than 200 times its .* "
                                                 r"PYHOST_SOURCE_MAX_ZIP_RATIO"):
        load_source(code_src=f"zip+file://{small}")


def test_a_zip_with_too_many_entries_is_refused(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(10_001):
            archive.writestr(f"m{index}.py", b"")
    with pytest.raises(ConfigurationError, match=r"more than 10,000 entries .*"
                                                 r"PYHOST_SOURCE_MAX_FILES"):
        load_source(code_src=f"zip+file://{many}")


@pytest.mark.parametrize("mode, kind", [(stat.S_IFLNK | 0o777, "a symbolic link"),
                                        (stat.S_IFIFO | 0o644, "a FIFO")])
def test_a_zip_link_entry_is_refused_not_taken_as_data(tmp_path, mode, kind):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", "def main(): pass\n")
        link = zipfile.ZipInfo("leak")
        link.create_system = 3
        link.external_attr = mode << 16
        archive.writestr(link, "/proc/self/environ")
    with pytest.raises(ConfigurationError, match=f"'leak' is {kind}, not a regular file"):
        load_source(code_src=f"zip+file://{path}")


def test_zip_paths_out_and_unbounded_methods_are_refused(tmp_path):
    path = tmp_path / "up.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../etc/evil.py", "x = 1\n")
    with pytest.raises(ConfigurationError, match="would land outside the source"):
        load_source(code_src=f"zip+file://{path}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("main.py", "x = 1\n")
    with pytest.raises(ConfigurationError, match="only stored and deflated entries"):
        load_source(code_src=f"zip+file://{path}")


class _Server(http.server.BaseHTTPRequestHandler):
    """``/small.zip``: a good zip; ``/announced.zip``: 2 MiB with a Content-Length;
    ``/endless.zip``: no Content-Length, and bytes until the client hangs up."""

    good = b""
    sent: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = {"/small.zip": self.good, "/announced.zip": bytes(2 * MiB)}.get(self.path)
        self.send_response(200)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()
        sent = 0
        try:
            while sent < (1 << 30):
                self.wfile.write(bytes(64 << 10))
                sent += 64 << 10
        except OSError:
            pass
        finally:
            self.sent[self.path] = sent

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("main.py", "def main():\n    return 'served'\n")
    _Server.good = good.read_bytes()
    _Server.sent = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.protocol_version = "HTTP/1.0"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_zip_over_http_is_capped_while_it_downloads(server, monkeypatch):
    assert load_source(code_src=f"zip+{server}/small.zip").files == {
        "main.py": b"def main():\n    return 'served'\n"}
    monkeypatch.setenv("PYHOST_SOURCE_MAX_FETCH_BYTES", str(MiB))
    with pytest.raises(ConfigurationError, match=r"announces 2,097,152 bytes .*the cap is "
                                                 r"1,048,576; set PYHOST_SOURCE_MAX_FETCH_BYTES"):
        load_source(code_src=f"zip+{server}/announced.zip")
    before = reset_peak_rss()
    with pytest.raises(ConfigurationError, match=r"the download passed 1,048,576 bytes"):
        load_source(code_src=f"zip+{server}/endless.zip")
    assert peak_rss_bytes() - before < MEMORY_BOUND
