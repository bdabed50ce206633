"""The store of entity files: Parquet tables, chunked uploads, copies, and paths that must
stay inside the root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyhost.runtime.home import default_catalog_path, default_store_root, runtime_home
from pyhost.runtime.store import Store, StoreError, Upload


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def _parts(store: Store, relpath: str) -> list[str]:
    return [part.name for part in store.root.joinpath(relpath).iterdir()]


# --- tables --------------------------------------------------------------------------------

def _frame() -> pd.DataFrame:
    index = pd.Index([10, 20, 30, 40], name="row")
    return pd.DataFrame({
        "i": np.array([1, -2, 3, 2**40], dtype="int64"),
        "f": [1.5, np.nan, np.inf, -0.0],
        "s": ["a", "é", "", "d"],
        "b": [True, False, True, False],
        "t": pd.to_datetime(["2021-11-07 05:30:00", "2021-11-07 06:30:00.123456789", None,
                             "2020-01-01 00:00:00"], format="ISO8601")
             .tz_localize("UTC").tz_convert("America/New_York"),
        "c": pd.Categorical(["x", "y", None, "x"], categories=["y", "x", "z"], ordered=True),
        "n": pd.array([1, None, 3, 4], dtype="Int64"),
    }, index=index)


def test_a_table_comes_back_as_it_went_in(store):
    df = _frame()
    relpath = store.write_table("p", "sales", "v1", df)
    assert relpath == "p/dataitem/sales/v1/data.parquet"
    assert not Path(relpath).is_absolute()
    back = store.read_table(relpath)
    pd.testing.assert_frame_equal(back, df)
    assert back.index.name == "row" and back["c"].cat.ordered
    assert _parts(store, "p/dataitem/sales/v1") == ["data.parquet"]


def test_a_range_index_and_a_string_index_survive(store):
    plain = pd.DataFrame({"x": [1, 2, 3]})
    labelled = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="key"))
    for number, df in enumerate((plain, labelled)):
        pd.testing.assert_frame_equal(store.read_table(store.write_table("p", "t", str(number),
                                                                         df)), df)


def test_a_frame_pyarrow_cannot_store_is_a_store_error_and_leaves_no_file(store):
    df = pd.DataFrame({"mixed": [1, "two", object()]})
    with pytest.raises(StoreError, match="mixed|Parquet") as raised:
        store.write_table("p", "bad", "v1", df)
    assert raised.value.__cause__ is not None
    assert _parts(store, "p/dataitem/bad/v1") == []


def test_reading_a_missing_or_broken_table_is_a_store_error(store):
    with pytest.raises(StoreError):
        store.read_table("p/dataitem/none/v1/data.parquet")
    upload = store.upload("p", "dataitem", "junk", "v1", "data.parquet")
    upload.write(b"not parquet")
    with pytest.raises(StoreError):
        store.read_table(upload.commit())


# --- uploads and chunks --------------------------------------------------------------------

def test_a_chunked_upload_appears_only_on_commit(store):
    data = os.urandom(300_000)
    upload = store.upload("p", "artifact", "weights", "v1", "model.bin")
    for start in range(0, len(data), 65_536):
        upload.write(data[start:start + 65_536])
    directory = store.path("p", "artifact", "weights", "v1")
    assert not (directory / "model.bin").exists()
    relpath = upload.commit()
    assert relpath == "p/artifact/weights/v1/model.bin"
    assert _parts(store, "p/artifact/weights/v1") == ["model.bin"]
    assert store.size(relpath) == len(data)
    assert store.read_chunk(relpath, 0, len(data) + 10) == data
    assert store.read_chunk(relpath, 1000, 50) == data[1000:1050]
    assert store.read_chunk(relpath, len(data) - 3, 50) == data[-3:]
    assert store.read_chunk(relpath, len(data) + 5, 50) == b""
    with pytest.raises(ValueError, match="committed"):
        upload.write(b"more")


def test_an_aborted_upload_leaves_nothing(store):
    upload = store.upload("p", "artifact", "a", "v1", "f.bin")
    upload.write(b"half")
    upload.abort()
    upload.abort()
    assert _parts(store, "p/artifact/a/v1") == []
    with pytest.raises(ValueError, match="aborted"):
        upload.write(b"more")
    with pytest.raises(ValueError, match="aborted"):
        upload.commit()


def test_an_upload_that_fails_in_its_block_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.upload("p", "artifact", "a", "v1", "f") as upload:
        upload.write(b"some")
        raise RuntimeError("the sender went away")
    assert _parts(store, "p/artifact/a/v1") == []


def test_an_upload_dropped_unfinished_leaves_nothing(store):
    upload = store.upload("p", "artifact", "a", "v1", "f")
    upload.write(b"some")
    del upload
    assert _parts(store, "p/artifact/a/v1") == []


def test_a_commit_replaces_an_earlier_file_whole(store):
    for content in (b"first version", b"second"):
        with store.upload("p", "artifact", "a", "v1", "f") as upload:
            upload.write(content)
            relpath = upload.commit()
    assert store.read_chunk(relpath, 0, 100) == b"second"


def test_negative_offsets_and_sizes_are_refused(store):
    with pytest.raises(ValueError):
        store.read_chunk("p/x", -1, 10)
    with pytest.raises(ValueError):
        store.read_chunk("p/x", 0, -10)


def test_missing_files_and_directories_are_store_errors(store):
    with pytest.raises(StoreError) as raised:
        store.read_chunk("p/artifact/none", 0, 1)
    assert isinstance(raised.value.__cause__, FileNotFoundError)
    with pytest.raises(StoreError):
        store.size("p/artifact/none")
    store.path("p", "artifact", "a", "v1")
    with pytest.raises(StoreError, match="directory"):
        store.size("p/artifact/a/v1")


# --- copies --------------------------------------------------------------------------------

def test_copy_in_a_file(store, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    relpath = store.copy_in("p", "artifact", "notes", "v1", source)
    assert relpath == "p/artifact/notes/v1/notes.txt"
    assert store.resolve(relpath).read_text() == "hello"
    assert _parts(store, "p/artifact/notes/v1") == ["notes.txt"]
    source.write_text("changed")  # a copy, not a link
    assert store.resolve(relpath).read_text() == "hello"


def test_copy_in_a_tree_follows_links_and_replaces_an_earlier_copy(store, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("linked")
    source = tmp_path / "model"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "deeper" / "b.bin").write_bytes(b"\0\1")
    (source / "link.txt").symlink_to(outside)
    relpath = store.copy_in("p", "model", "m", "v1", source)
    assert relpath == "p/model/m/v1/model"
    copied = store.resolve(relpath)
    assert sorted(str(path.relative_to(copied)) for path in copied.rglob("*")) == \
        ["a.txt", "link.txt", "sub", "sub/deeper", "sub/deeper/b.bin"]
    assert not (copied / "link.txt").is_symlink()
    assert store.read_chunk(f"{relpath}/link.txt", 0, 100) == b"linked"
    assert store.read_chunk(f"{relpath}/sub/deeper/b.bin", 0, 10) == b"\0\1"
    (source / "a.txt").unlink()
    store.copy_in("p", "model", "m", "v1", source)
    assert not (copied / "a.txt").exists() and (copied / "link.txt").exists()
    assert _parts(store, "p/model/m/v1") == ["model"]


def test_copy_in_of_a_missing_source_is_a_store_error_and_leaves_nothing(store, tmp_path):
    with pytest.raises(StoreError) as raised:
        store.copy_in("p", "artifact", "a", "v1", tmp_path / "missing.txt")
    assert isinstance(raised.value.__cause__, FileNotFoundError)
    assert _parts(store, "p/artifact/a/v1") == []


def test_copy_in_of_a_tree_holding_the_store_is_refused(tmp_path):
    store = Store(tmp_path / "home" / "store")
    with pytest.raises(ValueError, match="inside it"):
        store.copy_in("p", "artifact", "a", "v1", tmp_path / "home")


# --- paths and names -----------------------------------------------------------------------

def test_path_is_the_entity_s_own_directory(store):
    directory = store.path("proj", "run", "r", "abc")
    assert directory == store.root / "proj" / "run" / "r" / "abc" and directory.is_dir()


def test_a_relative_root_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    store = Store("relative")
    relpath = store.copy_in("p", "artifact", "a", "v1", Path(__file__))
    monkeypatch.chdir("/")
    assert store.root == tmp_path.resolve() / "relative"
    assert store.resolve(relpath) == store.root / relpath
    assert store.size(relpath) == Path(__file__).stat().st_size


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/abs", "a\\b", "nul\0"])
def test_bad_names_are_refused(store, bad, tmp_path):
    for position in range(4):
        parts = ["p", "artifact", "n", "v1"]
        parts[position] = bad
        with pytest.raises(ValueError, match="not a usable name"):
            store.path(*parts)
    with pytest.raises(ValueError, match="not a usable name"):
        store.upload("p", "artifact", "n", "v1", bad)
    assert not (tmp_path / "abs").exists() and not store.root.parent.joinpath("b").exists()


@pytest.mark.parametrize("relpath", ["", "/etc/passwd", "../outside", "p/../../outside",
                                     "p/../..", ".", "p/.."])
def test_paths_that_leave_the_root_are_refused(store, relpath):
    store.root.mkdir(parents=True)
    with pytest.raises(ValueError):
        store.resolve(relpath)
    with pytest.raises(ValueError):
        store.read_chunk(relpath, 0, 1)


def test_a_symbolic_link_out_of_the_root_is_refused(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    directory = store.path("p", "artifact", "a", "v1")
    (directory / "link").symlink_to(secret)
    (directory / "dirlink").symlink_to(tmp_path)
    for relpath in ("p/artifact/a/v1/link", "p/artifact/a/v1/dirlink/secret.txt"):
        with pytest.raises(ValueError, match="leads out"):
            store.read_chunk(relpath, 0, 100)
        with pytest.raises(ValueError, match="leads out"):
            store.size(relpath)


def test_a_link_that_stays_inside_is_followed(store):
    directory = store.path("p", "artifact", "a", "v1")
    (directory / "real").write_bytes(b"inside")
    (directory / "alias").symlink_to("real")
    assert store.read_chunk("p/artifact/a/v1/alias", 0, 10) == b"inside"


def test_upload_is_exported_for_type_hints(store):
    with store.upload("p", "artifact", "a", "v1", "f") as upload:
        assert isinstance(upload, Upload)


# --- the runtime home ----------------------------------------------------------------------

def test_the_home_is_pyhost_home_then_xdg_then_local_share(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("PYHOST_HOME", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert runtime_home() == tmp_path / "explicit"
    monkeypatch.setenv("PYHOST_HOME", "")
    assert runtime_home() == tmp_path / "xdg" / "pyhost"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert runtime_home() == tmp_path / "user" / ".local" / "share" / "pyhost"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("PYHOST_HOME")
    assert runtime_home() == tmp_path / "user" / ".local" / "share" / "pyhost"
    assert default_catalog_path() == runtime_home() / "catalog.db"
    assert default_store_root() == runtime_home() / "store"
    assert not runtime_home().exists()  # nothing is made by asking
