"""The image's source hash: what changes it and what does not. No engine needed."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pyhost.errors import PyHostError
from pyhost.launchers.docker import debian_base, image_context
from pyhost.launchers.docker.debian_base import apt_mirror
from pyhost.launchers.docker.image_context import SourceTree, source_hash


@pytest.fixture
def tree(tmp_path: Path) -> SourceTree:
    (tmp_path / "Dockerfile.hxpy").write_text("FROM scratch\n")
    package = tmp_path / "container" / "hxpy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VERSION = 1\n")
    (package / "server.py").write_text("def serve():\n    pass\n")
    return SourceTree(tmp_path / "Dockerfile.hxpy", tmp_path / "container")


def test_the_hash_is_stable_and_hex(tree: SourceTree) -> None:
    first = source_hash(tree)
    assert first == source_hash(tree)
    assert len(first) == 64 and int(first, 16) >= 0


def test_editing_a_file_under_container_changes_it(tree: SourceTree) -> None:
    before = source_hash(tree)
    (tree.container / "hxpy" / "server.py").write_text("def serve():\n    return 1\n")
    assert source_hash(tree) != before


def test_adding_renaming_or_removing_a_file_changes_it(tree: SourceTree) -> None:
    before = source_hash(tree)
    extra = tree.container / "hxpy" / "extra.py"
    extra.write_text("")
    added = source_hash(tree)
    assert added != before
    extra.rename(tree.container / "hxpy" / "other.py")
    assert source_hash(tree) not in (before, added)
    (tree.container / "hxpy" / "other.py").unlink()
    assert source_hash(tree) == before


def test_the_dockerfile_counts(tree: SourceTree) -> None:
    before = source_hash(tree)
    tree.dockerfile.write_text("FROM scratch\nUSER 1000\n")
    assert source_hash(tree) != before


def test_moving_bytes_between_files_changes_it(tree: SourceTree) -> None:
    """Names and lengths are hashed too, so content cannot slide across a file boundary."""
    package = tree.container / "hxpy"
    (package / "a.py").write_text("xy")
    (package / "b.py").write_text("")
    before = source_hash(tree)
    (package / "a.py").write_text("x")
    (package / "b.py").write_text("y")
    assert source_hash(tree) != before


def test_bytecode_and_caches_are_ignored(tree: SourceTree) -> None:
    before = source_hash(tree)
    cache = tree.container / "hxpy" / "__pycache__"
    cache.mkdir()
    (cache / "server.cpython-311.pyc").write_bytes(b"\x00compiled")
    (tree.container / "hxpy" / "stray.pyc").write_bytes(b"\x00")
    (tree.container / ".mypy_cache").mkdir()
    (tree.container / ".mypy_cache" / "x.json").write_text("{}")
    assert source_hash(tree) == before
    assert all("__pycache__" not in name for name, _ in tree.files())


def test_files_outside_container_do_not_count(tree: SourceTree) -> None:
    before = source_hash(tree)
    (tree.dockerfile.parent / "README.md").write_text("not in the context\n")
    assert source_hash(tree) == before


def test_the_context_holds_exactly_the_hashed_files(tree: SourceTree) -> None:
    snapshot = image_context.snapshot_sources(tree)
    with tarfile.open(fileobj=image_context.context_tar(snapshot)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [name for name, _ in tree.files()]
        assert {(m.uid, m.gid) for m in members} == {(0, 0)}
        server = tar.extractfile("container/hxpy/server.py")
        assert server is not None and server.read() == b"def serve():\n    pass\n"
    assert image_context.snapshot_hash(snapshot) == source_hash(tree)


def test_the_checkout_sources_are_found() -> None:
    sources = image_context.find_sources()
    names = [name for name, _ in sources.files()]
    assert names[0] == "Dockerfile.hxpy"
    assert "container/hxpy/__init__.py" in names


def test_a_missing_file_is_a_pyhost_error(tmp_path: Path) -> None:
    tree = SourceTree(tmp_path / "Dockerfile.hxpy", tmp_path / "container")
    with pytest.raises(PyHostError, match="Dockerfile.hxpy"):
        source_hash(tree)


def test_the_mirror_comes_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://oneline.example/debian bookworm-updates main\n"
    )
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\n# a comment inside\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    (parts / "off.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: trixie\n"
    )
    assert apt_mirror("bookworm", tmp_path) == "http://mirror.example/debian"
    assert apt_mirror("bookworm-updates", tmp_path) == "http://oneline.example/debian"
    assert apt_mirror("trixie", tmp_path) == debian_base.DEFAULT_MIRROR


def test_debootstrap_output_is_summarised() -> None:
    said: list[str] = []
    summary = debian_base._DebootstrapSummary(said.append)
    for line in ("I: Retrieving Packages",
                 "I: Retrieving libc6 2.36-9", "I: Validating libc6 2.36-9",
                 "I: Retrieving python3 3.11.2-1", "I: Validating python3 3.11.2-1",
                 "I: Unpacking required packages...", "I: Unpacking libc6...",
                 "I: Configuring the base system...", "I: Configuring python3...",
                 "I: Base system installed successfully."):
        summary.feed(line)
    summary.close()
    assert said == [
        "debootstrap: I: Retrieving Packages",
        "debootstrap: downloaded 2 packages",
        "debootstrap: I: Unpacking required packages...",
        "debootstrap: unpacked 1 packages",
        "debootstrap: I: Configuring the base system...",
        "debootstrap: configured 1 packages",
        "debootstrap: I: Base system installed successfully.",
    ]


def test_context_tar_is_reproducible(tree: SourceTree) -> None:
    def tar_bytes() -> bytes:
        buffer = image_context.context_tar(image_context.snapshot_sources(tree))
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue()

    assert tar_bytes() == tar_bytes()
