"""The store: the files of entities (tables, uploads, copied artifacts) under one root.

Each entity version has its own directory, ``<root>/<project>/<entity_type>/<name>/<id>/``;
what is written there is named to the catalog by its path relative to the root (``str``,
``/``-separated), so a whole runtime home can move. Every write goes to a temporary name in
the same directory (``.<name>.<random>.part``) and is renamed into place when complete, so a
reader never sees half a file and a failed write leaves none (a process killed mid-write may
leave a ``.part`` file, never a wrong one).

Caller mistakes (a name with a path separator, a relative path that leads out of the root)
raise :class:`ValueError`; the filesystem's and pyarrow's failures raise :class:`StoreError`
with the original as its cause (a full disk named as such: "no space left on the store's
filesystem").
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from ..errors import CatalogUnavailable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Store", "StoreError", "Upload"]

_TABLE_FILE = "data.parquet"
_FULL = (errno.ENOSPC, errno.EDQUOT)  # no room on the filesystem, or none left in a quota


class StoreError(CatalogUnavailable):
    """Writing or reading a file of the store failed (the ``OSError`` or pyarrow error is
    the cause)."""


class Store:
    """Files of entities under ``root`` (made when first needed).

    Args:
        root: the store's directory, by default beside the catalog file
            (:func:`pyhost.runtime.home.default_store_root`).

    Attributes:
        root: ``root`` made absolute, its symbolic links resolved, so that it is the prefix
            of what :meth:`path` and :meth:`resolve` return, whatever the working directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, project: str, entity_type: str, name: str, id: str, *,
             make: bool = True) -> Path:
        """The entity version's own directory, ``<root>/<project>/<entity_type>/<name>/<id>``,
        made if missing (unless not ``make``: a run's log is made by its first line).

        Raises:
            ValueError: a part is empty, ``.`` or ``..``, or holds a path separator or NUL.
            StoreError: the directory cannot be made.
        """
        for label, value in (("project", project), ("entity type", entity_type),
                             ("name", name), ("id", id)):
            _check_name(label, value)
        directory = self.root.joinpath(project, entity_type, name, id)
        if not make:
            return directory
        with _os_errors(f"cannot make the directory {directory}"):
            directory.mkdir(parents=True, exist_ok=True)
        return directory

    def resolve(self, relpath: str | os.PathLike[str]) -> Path:
        """The real path of ``relpath``, a path relative to the root (it need not exist).

        Raises:
            ValueError: ``relpath`` is empty, absolute, holds ``..``, or leads out of the
                root (through a symbolic link, say).
        """
        text = os.fspath(relpath)
        parts = PurePosixPath(text).parts
        if not text or text.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(f"{text!r} is not a relative path inside the store")
        root = self.root.resolve()  # again: the root may have been replaced by a link since
        real = (root / text).resolve()
        if root not in real.parents:
            raise ValueError(f"{text!r} leads out of the store at {root} (or is its root)")
        return real

    def write_table(self, project: str, name: str, id: str, df: pd.DataFrame) -> str:
        """Write ``df`` (index included) as Parquet to the dataitem's ``data.parquet``;
        returns its path relative to the root.

        Raises:
            ValueError: a bad name (see :meth:`path`).
            StoreError: pyarrow cannot convert or write the frame (a column of mixed Python
                objects, say), or the file cannot be written.
        """
        import pyarrow as pa  # imported here: only tables need it, and it takes a while
        import pyarrow.parquet as pq

        target = self.path(project, "dataitem", name, id) / _TABLE_FILE
        try:
            table = pa.Table.from_pandas(df, preserve_index=True)
        except pa.ArrowException as exc:
            raise StoreError(f"the table {name} cannot be stored as Parquet: {exc}") from exc
        upload = Upload(self.root, target)
        try:
            pq.write_table(table, upload.file)
        except (OSError, pa.ArrowException) as exc:
            upload.abort()
            raise StoreError(_failed(f"cannot write the table {name} to {target}",
                                     exc)) from exc
        return upload.commit()

    def read_table(self, relpath: str) -> pd.DataFrame:
        """The DataFrame that :meth:`write_table` wrote to ``relpath``.

        Raises:
            ValueError: ``relpath`` leads out of the store.
            StoreError: the file is missing or is not Parquet.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.resolve(relpath)
        try:
            return pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot read the table {relpath}: {exc}") from exc

    def upload(self, project: str, entity_type: str, name: str, id: str,
               filename: str) -> Upload:
        """Start writing ``filename`` in the entity's directory, in chunks (see
        :class:`Upload`); a file of that name already there is replaced on commit.

        Raises:
            ValueError: a bad name or filename (see :meth:`path`).
            StoreError: the temporary file cannot be made.
        """
        _check_name("filename", filename)
        return Upload(self.root, self.path(project, entity_type, name, id) / filename)

    def read_chunk(self, relpath: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the file at ``relpath`` from ``offset`` (fewer at its end,
        none past it).

        Raises:
            ValueError: a negative offset or size, or ``relpath`` leads out of the store.
            StoreError: the file cannot be read.
        """
        if offset < 0 or size < 0:
            raise ValueError(f"offset and size must be 0 or more, not {offset} and {size}")
        path = self.resolve(relpath)
        with _os_errors(f"cannot read {relpath}"), path.open("rb") as file:
            file.seek(offset)
            return file.read(size)

    def size(self, relpath: str) -> int:
        """The size in bytes of the file at ``relpath``.

        Raises:
            ValueError: ``relpath`` leads out of the store.
            StoreError: there is no such file (or it is a directory).
        """
        path = self.resolve(relpath)
        with _os_errors(f"cannot read {relpath}"):
            if path.is_dir():
                raise IsADirectoryError(f"{relpath} is a directory")
            return path.stat().st_size

    def copy_in(self, project: str, entity_type: str, name: str, id: str,
                source: str | os.PathLike[str]) -> str:
        """Copy the file or directory tree ``source`` into the entity's directory, under its
        own name; returns its path relative to the root. Symbolic links are followed (the
        store holds a snapshot, not links out of it); a file or tree of that name already
        there is replaced.

        Raises:
            ValueError: a bad name, or the entity's directory lies inside ``source``.
            StoreError: ``source`` is missing or unreadable, or the copy cannot be written.
        """
        source = Path(source)
        directory = self.path(project, entity_type, name, id)
        _check_name("source name", source.name)
        target = directory / source.name
        relpath = target.relative_to(self.root).as_posix()
        with _os_errors(f"cannot copy {source} to {target}"):
            if not source.is_dir():
                with Upload(self.root, target) as upload, source.open("rb") as file:
                    shutil.copyfileobj(file, upload.file)
                    return upload.commit()
            if directory.resolve().is_relative_to(source.resolve()):
                raise ValueError(f"cannot copy {source} into {directory}, which is inside it")
            staging = Path(tempfile.mkdtemp(dir=directory, prefix=f".{source.name}.",
                                            suffix=".part"))
            try:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                _replace_tree(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return relpath


class Upload:
    """A file arriving in chunks: written to a temporary name beside its target, renamed
    into place by :meth:`commit`, removed by :meth:`abort` (or when the upload is dropped
    unfinished). As a context manager it aborts unless committed inside the block.

    :meth:`write` opens the temporary file, appends and closes it again, so an upload holds
    no file descriptor between chunks (a run with many uploads open cannot exhaust the host's
    descriptors); :attr:`file` opens it once for a writer that streams into it.

    Attributes:
        temporary: the temporary file's path.
        written: bytes written so far.
    """

    def __init__(self, root: Path, target: Path) -> None:
        self._root = root
        self._target = target
        self._state = "open"
        self._open_file: list[BinaryIO] = []  # shared with the finalizer, which closes it
        self.written = 0
        with _os_errors(f"cannot start writing {target}"):
            handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".part")
            os.close(handle)
        self.temporary = Path(name)
        self._discard = weakref.finalize(self, _discard, self._open_file, self.temporary)

    @property
    def file(self) -> BinaryIO:
        """The temporary file, open for appending bytes until :meth:`commit` or
        :meth:`abort` (for a writer that streams into a file object)."""
        self._check_open()
        if not self._open_file:
            with _os_errors(f"cannot write {self._target}"):
                self._open_file.append(open(self.temporary, "ab"))  # noqa: SIM115
        return self._open_file[0]

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` (opening and closing the file, unless :attr:`file` is open).

        Raises:
            ValueError: the upload is already committed or aborted.
            StoreError: the write failed (the disk is full, say); the upload is aborted.
        """
        self._check_open()
        try:
            if self._open_file:
                self._open_file[0].write(chunk)
            else:
                with open(self.temporary, "ab") as out:
                    out.write(chunk)
        except OSError as exc:
            self.abort()
            raise StoreError(_failed(f"cannot write {self._target}", exc)) from exc
        self.written += len(chunk)

    def commit(self) -> str:
        """Make the file whole and put it in place; returns its path relative to the root.

        Raises:
            ValueError: the upload is already committed or aborted.
            StoreError: flushing or renaming failed; the upload is aborted.
        """
        self._check_open()
        try:
            with self.file as out:
                out.flush()
                os.fsync(out.fileno())  # the data before the name, or a crash can leave
            self._open_file.clear()    # the new name on an empty file
            os.replace(self.temporary, self._target)
        except OSError as exc:
            self.abort()
            raise StoreError(_failed(f"cannot finish writing {self._target}", exc)) from exc
        self._state = "committed"
        self._discard.detach()
        return self._target.relative_to(self._root).as_posix()

    def abort(self) -> None:
        """Drop what was written (idempotent; nothing after a commit)."""
        if self._state == "open":
            self._state = "aborted"
            self._discard()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"the upload of {self._target} is {self._state}")


def _discard(open_file: list[BinaryIO], temporary: Path) -> None:
    for file in open_file:
        with contextlib.suppress(OSError):  # its buffer's flush meets the full disk again
            file.close()
    open_file.clear()
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()


def _replace_tree(staging: Path, target: Path) -> None:
    # A directory cannot be renamed onto a non-empty one: move the old one aside first. A
    # reader sees the old tree, then (for an instant) none, then the new; never a mixture.
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".old"))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _check_name(label: str, value: str) -> None:
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or \
            "\\" in value or "\0" in value:
        raise ValueError(f"{label} {value!r} is not a usable name: it must be non-empty, not "
                         "'.' or '..', and hold no '/', '\\\\' or NUL")


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StoreError(_failed(what, exc)) from exc


def _failed(what: str, exc: BaseException) -> str:
    """``what`` failed because of ``exc``; a full filesystem said in words first (pyarrow's
    text for it is "Error writing bytes to file"), and that nothing of the write is kept."""
    if getattr(exc, "errno", None) in _FULL or "no space left" in str(exc).lower():
        return (f"{what}: no space left on the store's filesystem (the disk is full; nothing "
                f"of this write was kept): {exc}")
    return f"{what}: {exc}"
