"""The SQLite catalog: one embedded file, shared by every thread and process that opens it.

Layout (schema version 3)::

    meta(key TEXT PRIMARY KEY, value TEXT)          -- 'schema_version' -> '3'
    records(id TEXT PRIMARY KEY, entity_type, project, name, kind, created REAL,
            updated REAL, state TEXT, seq INTEGER UNIQUE, document TEXT, function TEXT)
      index (entity_type, project, name, created)   -- latest(), find(project=, name=)
      index (entity_type, state)                     -- find(state=)
      index (entity_type, project, created, id)      -- page(), newest first (version 2)
      index (entity_type, project, state, created, id)     -- page(state=) (version 2)
      index (entity_type, project, function, created, id)  -- page(functions=) (version 3)

``seq`` is the insertion order (ties of ``created`` go to the later insert); ``document`` is
JSON text (:mod:`.document`), never a pickle; ``function`` is the document's
``spec.function`` (a run's function key) when it is a string, written with the document.

Concurrency: the file is in WAL mode (readers never block the writer), each thread has its
own connection, every write is one ``BEGIN IMMEDIATE`` transaction (so a compare-and-set
reads and writes under the one write lock), waits for the lock, and is retried with backoff
if SQLite still answers "busy" (it does, without waiting, in a few cases such as a WAL
recovery by another process). One operation waits ``busy_timeout`` seconds in all, however
many tries that takes; then it raises :class:`CatalogError` having written nothing (a writer
holding the lock that long is stuck, or the file is on a filesystem whose locks fail).
``synchronous=NORMAL``: a power cut may lose the last commits, never consistency (a
process that dies loses nothing it committed; ``FULL`` would add an fsync to every commit).

Versions: on open the schema is created or brought forward by :data:`_MIGRATIONS` (version
``n`` -> ``n + 1``), all in one transaction; a file written by a newer pyhost is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    ENTITY_TYPES,
    Catalog,
    CatalogBusy,
    CatalogError,
    Cursor,
    Page,
    Record,
    StaleState,
    Tally,
    check_page_size,
)
from .document import decode_document, encode_document, encode_with_copy

__all__ = ["SqliteCatalog"]

_T = TypeVar("_T")
_COLUMNS = "entity_type, project, name, id, kind, created, updated, state, document"
_KEY_COLUMNS = "project, name, kind, created, state"  # what an update keeps of a record
# An update returns them itself where SQLite can (3.35 and later; Debian bullseye has 3.34).
_RETURNING = f" RETURNING {_KEY_COLUMNS}" if sqlite3.sqlite_version_info >= (3, 35) else ""
_ATTEMPTS = 8           # tries of one operation while SQLite answers "busy"
_FIRST_PAUSE = 0.005    # seconds; doubled each try, with jitter, up to _MAX_PAUSE
_MAX_PAUSE = 0.5
_BUSY_CODES = (5, 6)    # SQLITE_BUSY, SQLITE_LOCKED (extended codes share the low byte)
# A run's function key as version 2 indexed it; a document with NaN in it is no JSON to
# SQLite: none.
_FUNCTION_V2 = ("(CASE WHEN json_valid(document) THEN json_extract(document, "
                "'$.spec.function') END)")


def _create_version_1(conn: sqlite3.Connection) -> None:
    # No CHECK on entity_type: the list may grow, and a CHECK would need a migration.
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("""
        CREATE TABLE records (
            id TEXT NOT NULL PRIMARY KEY,
            entity_type TEXT NOT NULL,
            project TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            state TEXT NOT NULL DEFAULT '',
            seq INTEGER NOT NULL,
            document TEXT NOT NULL
        )""")
    conn.execute("CREATE UNIQUE INDEX records_seq ON records (seq)")
    conn.execute("CREATE INDEX records_by_name ON records (entity_type, project, name, created)")
    conn.execute("CREATE INDEX records_by_state ON records (entity_type, state)")


def _index_pages(conn: sqlite3.Connection) -> None:
    """Version 2: what pages of a project's records, newest first, need (the console's runs
    page over 100,000 runs): by project; by project and state; runs by function."""
    conn.execute("CREATE INDEX records_newest ON records (entity_type, project, created, id)")
    conn.execute("CREATE INDEX records_by_project_state ON records "
                 "(entity_type, project, state, created, id)")
    conn.execute(f"CREATE INDEX runs_by_function ON records "
                 f"(entity_type, project, {_FUNCTION_V2}, created, id)")


def _function_column(conn: sqlite3.Connection) -> None:
    """Version 3: a run's function key in a column of its own, written with the document,
    rather than an index on an expression that parsed the document twice at every write of
    it (and twice more for the old one at an update): about 25 us of a small local run's
    two statements. The runs version 2 could not index (NaN in their document) are
    indexed now."""
    conn.execute("ALTER TABLE records ADD COLUMN function TEXT")
    conn.create_function("spec_function", 1, _spec_function_of_text, deterministic=True)
    conn.execute("UPDATE records SET function = spec_function(document)")
    conn.execute("DROP INDEX runs_by_function")
    conn.execute("CREATE INDEX runs_by_function ON records "
                 "(entity_type, project, function, created, id)")


#: Version n -> the function that brings a version-n file to n + 1, inside the open's
#: transaction. Version 0 is an empty file.
_MIGRATIONS: Mapping[int, Callable[[sqlite3.Connection], None]] = {
    0: _create_version_1, 1: _index_pages, 2: _function_column}


class SqliteCatalog(Catalog):
    """A :class:`~.base.Catalog` in one SQLite file, safe for threads and processes.

    Args:
        path: the database file; it and its directory are made if missing, the file with
            mode 0600 (run documents may hold anything a user passed).
        busy_timeout: seconds one operation waits for another writer's lock, in all.

    Attributes:
        path: ``path``, made absolute.

    Raises:
        CatalogError: the file cannot be opened or made, is not a catalog, or was written
            by a newer pyhost (upgrade pyhost to open it).
    """

    schema_version = 3
    _migrations = _MIGRATIONS

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        # Absolute: other threads open their connections later, perhaps after a chdir.
        self.path = Path(path).absolute()
        self._busy_ms = int(busy_timeout * 1000)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._owners: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Made here rather than by SQLite, which would use 0644; its -wal and -shm files
            # take the database file's mode. Only when missing: closing ANY descriptor of a
            # file drops every POSIX lock this process holds on it, so opening and closing an
            # existing catalog would drop the locks of the process's other connections, and
            # another process closing its last connection would then delete the WAL under them.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if self.path.is_dir():  # SQLite would only say "unable to open database file"
                raise CatalogError(f"cannot use {self.path} as the catalog: it is a "
                                   "directory") from IsADirectoryError(
                    errno.EISDIR, os.strerror(errno.EISDIR), str(self.path))
        except OSError as exc:
            raise CatalogError(f"cannot make the catalog file {self.path}: {exc}") from exc
        try:
            self._attempt(self._set_wal)
            self._write(self._upgrade)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteCatalog({str(self.path)!r})"

    # --- the interface ---------------------------------------------------------------------

    def add(self, record: Record) -> None:
        _check_type(record.entity_type)
        text = encode_document(record.document)

        def insert(conn: sqlite3.Connection) -> None:
            # One statement is its own transaction, and a writing statement takes the write
            # lock before it reads MAX(seq).
            try:
                conn.execute(
                    f"INSERT INTO records ({_COLUMNS}, function, seq) VALUES (?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, ?, (SELECT IFNULL(MAX(seq), 0) + 1 FROM records))",
                    (record.entity_type, record.project, record.name, record.id, record.kind,
                     record.created, record.updated, record.state, text,
                     _spec_function(record.document)))
            except sqlite3.IntegrityError as exc:
                raise CatalogError(f"a record with id {record.id} exists") from exc

        self._attempt(insert)

    def update(self, entity_type: str, id: str, document: dict[str, Any], *,
               state: str | None = None, expect_state: str | Sequence[str] | None = None,
               updated: float) -> Record:
        _check_type(entity_type)
        text, document = encode_with_copy(document)  # what is stored is handed back
        expected = () if expect_state is None else _states(expect_state)
        guard = "" if expect_state is None else \
            f" AND state IN ({', '.join('?' * len(expected))})"  # IN () is never true

        def compare_and_set(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            # One statement: the state is compared under the write lock it holds to write,
            # and it returns what an update never changes (no second statement to read it).
            changed = conn.execute(
                "UPDATE records SET document = ?, function = ?, state = COALESCE(?, state), "
                f"updated = ? WHERE id = ? AND entity_type = ?{guard}{_RETURNING}",
                (text, _spec_function(document), state, updated, id, entity_type, *expected))
            if _RETURNING:
                return changed.fetchall()
            return self._read(f"SELECT {_KEY_COLUMNS} FROM records WHERE id = ? AND "
                              "entity_type = ?", (id, entity_type)) if changed.rowcount else []

        changed = self._attempt(compare_and_set)
        if not changed:  # no such record, or not in the state expected: which?
            rows = self._read(f"SELECT {_KEY_COLUMNS} FROM records WHERE id = ? AND "
                              "entity_type = ?", (id, entity_type))
            if not rows:
                raise CatalogError(f"no {entity_type} with id {id}")
            raise StaleState(f"{entity_type} {id} is {rows[0][4]}, not "
                             f"{' or '.join(expected)}")
        project, name, kind, created, current_state = changed[0]
        return Record(entity_type, project, name, id, kind, float(created), updated,
                      current_state, document)

    def get(self, entity_type: str, id: str) -> Record | None:
        _check_type(entity_type)
        rows = self._read(f"SELECT {_COLUMNS} FROM records WHERE id = ? AND entity_type = ?",
                          (id, entity_type))
        return _record(rows[0]) if rows else None

    def latest(self, entity_type: str, project: str, name: str) -> Record | None:
        _check_type(entity_type)
        rows = self._read(f"SELECT {_COLUMNS} FROM records WHERE entity_type = ? AND "
                          "project = ? AND name = ? ORDER BY created DESC, seq DESC LIMIT 1",
                          (entity_type, project, name))
        return _record(rows[0]) if rows else None

    def find(self, entity_type: str, *, project: str | None = None, name: str | None = None,
             kind: str | None = None, state: str | Sequence[str] | None = None,
             limit: int | None = None) -> list[Record]:
        _check_type(entity_type)
        if limit is not None and limit < 0:
            raise CatalogError(f"limit must be 0 or more, not {limit}")
        where = ["entity_type = ?"]
        values: list[Any] = [entity_type]
        for column, wanted in (("project", project), ("name", name), ("kind", kind)):
            if wanted is not None:
                where.append(f"{column} = ?")
                values.append(wanted)
        if state is not None:
            states = _states(state)
            where.append(f"state IN ({', '.join('?' * len(states))})" if states else "0")
            values.extend(states)
        # Newest first so that LIMIT keeps the newest; turned back to oldest first below.
        query = (f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} "
                 "ORDER BY created DESC, seq DESC")
        if limit is not None:
            query += " LIMIT ?"
            values.append(limit)
        return [_record(row) for row in reversed(self._read(query, tuple(values)))]

    def page(self, entity_type: str, *, project: str | None = None,
             state: str | Sequence[str] | None = None, functions: Sequence[str] | None = None,
             text: str | None = None, after: Cursor | None = None, size: int = 50) -> Page:
        _check_type(entity_type)
        check_page_size(size)
        where = ["entity_type = ?"]
        values: list[Any] = [entity_type]
        if project is not None:
            where.append("project = ?")
            values.append(project)
        for column, wanted in (("state", state), ("function", functions)):
            if wanted is not None:
                chosen = _states(wanted)
                where.append(f"{column} IN ({', '.join('?' * len(chosen))})" if chosen else "0")
                values.extend(chosen)
        if text:
            where.append("instr(lower(document), ?) > 0")
            values.append(text.lower())
        if after is not None:
            where.append("(created, id) < (?, ?)")
            values.extend(after)
        rows = self._read(f"SELECT {_COLUMNS} FROM records WHERE {' AND '.join(where)} "
                          "ORDER BY created DESC, id DESC LIMIT ?", (*values, size + 1))
        records = [_record(row) for row in rows[:size]]
        more = len(rows) > size
        return Page(records, (records[-1].created, records[-1].id) if more else None)

    def summary(self) -> list[Tally]:
        # Two index-only scans: counts by state; distinct names where there are versions
        # (a run's name is its id: as many names as runs).
        counts = self._read("SELECT project, entity_type, state, COUNT(*) FROM records "
                            "GROUP BY entity_type, project, state", ())
        names = {(project, entity_type): int(count) for project, entity_type, count in
                 self._read("SELECT project, entity_type, COUNT(DISTINCT name) FROM records "
                            "WHERE entity_type != 'run' GROUP BY entity_type, project", ())}
        return sorted(Tally(str(project), str(entity_type), str(state), int(versions),
                            names.get((project, entity_type), int(versions)))
                      for project, entity_type, state, versions in counts)

    def close(self) -> None:
        """Close every connection this catalog opened, in any thread (idempotent); call it
        when no other thread is still using the catalog. Later calls raise CatalogError."""
        with self._lock:
            self._closed = True
            owners, self._owners = self._owners, []
        for _, conn in owners:
            conn.close()

    # --- connections, transactions, retries -------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise CatalogError(f"the catalog {self.path} is closed")
        if os.getpid() != self._pid:
            self._forked()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: the module starts no transactions of its own; ours are
        # explicit. check_same_thread=False only so that close() can close every thread's.
        conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            # A thread's connection outlives its thread-local slot only here: close those of
            # threads that have ended.
            ended = [conn for owner, conn in self._owners
                     if (thread := owner()) is None or not thread.is_alive()]
            self._owners = [(owner, conn) for owner, conn in self._owners
                            if conn not in ended]
            self._owners.append((weakref.ref(threading.current_thread()), conn))
        for old in ended:
            old.close()
        return conn

    def _forked(self) -> None:
        # SQLite connections must not cross a fork, and closing the parent's in the child
        # could disturb its locks: keep them, unused, and start afresh.
        with self._lock:
            self._inherited.extend(conn for _, conn in self._owners)
            self._owners = []
            self._local = threading.local()
            self._pid = os.getpid()

    def _read(self, query: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # One statement is one consistent snapshot; no transaction needed.
        return self._attempt(lambda conn: conn.execute(query, values).fetchall())

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        def transaction(conn: sqlite3.Connection) -> _T:
            # IMMEDIATE takes the write lock before the first read, so what ``work`` reads
            # cannot change before it writes, and no deferred upgrade can fail half-way.
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._attempt(transaction)

    def _attempt(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        pause = _FIRST_PAUSE
        began = time.monotonic()
        deadline = began + self._busy_ms / 1000
        for attempt in range(1, _ATTEMPTS + 1):
            conn: sqlite3.Connection | None = None
            try:
                conn = self._connection()
                if attempt > 1:  # a retry waits only what is left of the one busy_timeout
                    left = max(int((deadline - time.monotonic()) * 1000), 0)
                    conn.execute(f"PRAGMA busy_timeout = {left}")
                return work(conn)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise CatalogError(f"the catalog {self.path} failed: {exc}") from exc
                if attempt == _ATTEMPTS or time.monotonic() >= deadline:
                    raise CatalogBusy(
                        f"the catalog {self.path} stayed locked by another writer for "
                        f"{time.monotonic() - began:.1f} s (busy_timeout "
                        f"{self._busy_ms / 1000:g} s); nothing of this "
                        "operation was written") from exc
            except sqlite3.Error as exc:
                raise CatalogError(f"the catalog {self.path} failed: {exc}") from exc
            finally:
                if attempt > 1 and conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            time.sleep(min(pause * random.uniform(0.5, 1.5),  # jitter: retries do not collide
                           max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, _MAX_PAUSE)
        raise AssertionError("unreachable")

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        # Persistent in the file; a no-op once set. Must run outside a transaction.
        conn.execute("PRAGMA journal_mode = WAL").fetchone()

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        version = _schema_version(conn, self.path)
        if version > self.schema_version:
            raise CatalogError(
                f"the catalog {self.path} has schema version {version}, but this pyhost "
                f"knows versions up to {self.schema_version}: upgrade pyhost to open it")
        for step in range(version, self.schema_version):
            self._migrations[step](conn)
        if version != self.schema_version:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(self.schema_version),))


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                             "'table'")}
    if "meta" not in tables:
        if tables:
            raise CatalogError(f"{path} is an SQLite database, but not a pyhost catalog")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise CatalogError(f"{path} has no readable schema version ({row!r})") from None


def _spec_function(document: dict[str, Any]) -> str | None:
    """What the ``function`` column holds for ``document``: its ``spec.function`` if a
    string."""
    spec = document.get("spec")
    function = spec.get("function") if isinstance(spec, dict) else None
    return function if isinstance(function, str) else None


def _spec_function_of_text(text: str) -> str | None:
    try:
        return _spec_function(decode_document(text))
    except CatalogError:
        return None  # damaged: its reader is told, not its migration


def _record(row: tuple[Any, ...]) -> Record:
    entity_type, project, name, id, kind, created, updated, state, text = row
    return Record(entity_type, project, name, id, kind, float(created), float(updated), state,
                  decode_document(text))


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _check_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise CatalogError(f"unknown entity type {entity_type!r}; the types are "
                           f"{', '.join(ENTITY_TYPES)}")


def _states(state: str | Sequence[str]) -> tuple[str, ...]:
    return (state,) if isinstance(state, str) else tuple(state)
