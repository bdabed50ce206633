"""One suite that every catalog backend must pass (memory, SQLite), then SQLite's own:
its file, its schema versions, its threads. Its processes:
``tests/faults/test_catalog_processes.py``."""

from __future__ import annotations

import enum
import itertools
import json
import math
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyhost.runtime.catalog import (
    Catalog,
    CatalogError,
    MemoryCatalog,
    Record,
    SqliteCatalog,
    StaleState,
)
from pyhost.runtime.catalog import sqlite as sqlite_backend
from pyhost.runtime.catalog.document import (
    decode_document,
    encode_document,
    encode_with_copy,
)

_CLOCK = itertools.count(1)


def _record(entity_type: str = "function", project: str = "p", name: str = "f", *,
            kind: str = "python", created: float | None = None, state: str = "",
            document: dict[str, Any] | None = None, id: str | None = None) -> Record:
    created = float(next(_CLOCK)) if created is None else created
    return Record(entity_type, project, name, id or uuid.uuid4().hex, kind, created, created,
                  state, {"spec": {"n": 1}} if document is None else document)


@pytest.fixture(params=["memory", "sqlite"])
def catalog(request, tmp_path):
    made: Catalog = (MemoryCatalog() if request.param == "memory"
                     else SqliteCatalog(tmp_path / "catalog.db"))
    yield made
    made.close()


@pytest.fixture
def db(tmp_path):
    made = SqliteCatalog(tmp_path / "catalog.db")
    yield made
    made.close()


# --- the shared suite ----------------------------------------------------------------------

def test_a_record_comes_back_as_it_went_in(catalog):
    document = {"metadata": {"labels": ["a", "é"]}, "spec": {"x": 1.5, "y": None, "z": True,
                                                              "nested": [{"k": -3}]}}
    record = _record(document=document)
    catalog.add(record)
    assert catalog.get("function", record.id) == record


def test_documents_are_copied_in_and_out(catalog):
    document = {"spec": {"items": [1, 2]}}
    record = _record(document=document)
    catalog.add(record)
    document["spec"]["items"].append(3)          # the caller's dict, after add
    got = catalog.get("function", record.id)
    assert got is not None and got.document == {"spec": {"items": [1, 2]}}
    got.document["spec"]["items"].append(4)      # a returned dict
    again = catalog.get("function", record.id)
    assert again is not None and again.document == {"spec": {"items": [1, 2]}}
    found = catalog.find("function")[0]
    found.document.clear()
    assert catalog.get("function", record.id) == again


def test_a_tuple_is_stored_as_a_list_by_every_backend(catalog):
    record = _record(document={"shape": (2, 3)})
    catalog.add(record)
    got = catalog.get("function", record.id)
    assert got is not None and got.document == {"shape": [2, 3]}


def test_update_hands_back_what_it_stored_as_a_copy(catalog):
    run = _record("run", state="CREATED")
    catalog.add(run)
    document = {"status": {"shape": (2, 3), "items": [{"k": [1]}]}, "n": float("inf")}
    updated = catalog.update("run", run.id, document, state="RUNNING", updated=5.0)
    stored = catalog.get("run", run.id)
    assert stored is not None and updated == stored
    assert updated.document == {"status": {"shape": [2, 3], "items": [{"k": [1]}]},
                                "n": float("inf")}
    document["status"]["items"][0]["k"].append(2)  # the caller's, after the update
    assert updated.document["status"]["items"] == [{"k": [1]}]
    updated.document["status"]["items"].clear()    # the one handed back
    assert catalog.get("run", run.id) == stored


def test_get_of_a_missing_id_or_another_type_is_none(catalog):
    record = _record()
    catalog.add(record)
    assert catalog.get("function", "nope") is None
    assert catalog.get("run", record.id) is None


def test_a_duplicate_id_is_refused_even_under_another_type(catalog):
    record = _record()
    catalog.add(record)
    with pytest.raises(CatalogError, match="exists"):
        catalog.add(_record(id=record.id, document={"other": 1}))
    with pytest.raises(CatalogError, match="exists"):
        catalog.add(_record("model", id=record.id))
    assert catalog.get("function", record.id) == record
    assert catalog.find("model") == []


def test_latest_is_the_largest_created_then_the_last_inserted(catalog):
    old = _record(created=10.0)
    newest = _record(created=30.0)
    middle = _record(created=20.0)
    for record in (old, newest, middle, _record(name="g", created=99.0),
                   _record(project="q", created=99.0)):
        catalog.add(record)
    assert catalog.latest("function", "p", "f") == newest
    tie = _record(created=30.0)
    catalog.add(tie)
    assert catalog.latest("function", "p", "f") == tie
    assert catalog.latest("function", "p", "missing") is None
    assert catalog.latest("model", "p", "f") is None


@pytest.fixture
def runs(catalog) -> list[Record]:
    made = [_record("run", project, name, kind=kind, state=state, created=created)
            for created, (project, name, kind, state) in enumerate([
                ("p", "a", "python+job", "CREATED"),
                ("p", "a", "python+job", "RUNNING"),
                ("p", "b", "python+build", "COMPLETED"),
                ("q", "a", "python+job", "COMPLETED"),
                ("q", "b", "python+job", "ERROR"),
                ("p", "a", "python+job", "COMPLETED"),
            ], start=1)]
    for record in reversed(made):  # insertion order must not decide the order of find
        catalog.add(record)
    catalog.add(_record("function", "p", "a"))
    return made


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, [0, 1, 2, 3, 4, 5]),
    ({"project": "p"}, [0, 1, 2, 5]),
    ({"name": "a"}, [0, 1, 3, 5]),
    ({"kind": "python+build"}, [2]),
    ({"state": "COMPLETED"}, [2, 3, 5]),
    ({"state": ["CREATED", "ERROR"]}, [0, 4]),
    ({"state": ("RUNNING",)}, [1]),
    ({"state": []}, []),
    ({"project": "p", "name": "a"}, [0, 1, 5]),
    ({"project": "p", "name": "a", "state": ["COMPLETED", "RUNNING"]}, [1, 5]),
    ({"project": "q", "kind": "python+job", "state": "ERROR"}, [4]),
    ({"project": "nobody"}, []),
    ({"limit": 2}, [4, 5]),
    ({"limit": 0}, []),
    ({"limit": 100}, [0, 1, 2, 3, 4, 5]),
    ({"project": "p", "limit": 3}, [1, 2, 5]),
])
def test_find_filters_oldest_first(catalog, runs, filters, expected):
    assert catalog.find("run", **filters) == [runs[index] for index in expected]


def test_find_orders_ties_by_insertion(catalog):
    first, second = _record(created=5.0), _record(created=5.0)
    catalog.add(first)
    catalog.add(second)
    assert catalog.find("function") == [first, second]
    assert catalog.find("function", limit=1) == [second]


def test_find_refuses_a_negative_limit(catalog):
    with pytest.raises(CatalogError, match="limit"):
        catalog.find("run", limit=-1)


def test_pages_go_newest_first_and_follow_their_cursor_to_the_end(catalog):
    made = [_record("run", "p", f"r{index}", state="COMPLETED" if index % 3 else "ERROR",
                    created=100.0 + index // 2,  # pairs share a time: the id breaks the tie
                    document={"spec": {"function": f"store://p/function/python/f{index % 2}"},
                              "status": {"message": "needle" if index == 7 else ""}})
            for index in range(25)]
    for record in made:
        catalog.add(record)
    newest = sorted(made, key=lambda record: (record.created, record.id), reverse=True)
    seen, cursor = [], None
    while True:
        page = catalog.page("run", project="p", size=10, after=cursor)
        seen += page.records
        cursor = page.next
        if cursor is None:
            break
    assert seen == newest  # every record once, in order, across three pages
    assert catalog.page("run", project="p", size=25).next is None
    errors = catalog.page("run", project="p", state="ERROR", size=100).records
    assert errors == [record for record in newest if record.state == "ERROR"]
    odd = catalog.page("run", functions=["store://p/function/python/f1"], size=100).records
    assert odd == [record for record in newest if record.name[1:].isdigit()
                   and int(record.name[1:]) % 2]
    assert catalog.page("run", text="NEEDLE").records == [made[7]]
    assert catalog.page("run", project="q").records == []
    assert catalog.page("run", state=[]).records == []
    with pytest.raises(CatalogError, match="1 to 1000"):
        catalog.page("run", size=0)


def test_the_summary_counts_versions_and_names_by_project_type_and_state(catalog, runs):
    tallies = {(t.project, t.entity_type, t.state): (t.versions, t.names)
               for t in catalog.summary()}
    assert tallies == {("p", "run", "CREATED"): (1, 1), ("p", "run", "RUNNING"): (1, 1),
                       ("p", "run", "COMPLETED"): (2, 2), ("q", "run", "COMPLETED"): (1, 1),
                       ("q", "run", "ERROR"): (1, 1), ("p", "function", ""): (1, 1)}


def test_update_moves_a_run_when_its_state_is_the_expected_one(catalog):
    run = _record("run", state="CREATED")
    catalog.add(run)
    moved = catalog.update("run", run.id, {"status": {"step": 1}}, state="RUNNING",
                           expect_state="CREATED", updated=1234.5)
    assert moved == Record("run", run.project, run.name, run.id, run.kind, run.created, 1234.5,
                           "RUNNING", {"status": {"step": 1}})
    assert catalog.get("run", run.id) == moved
    done = catalog.update("run", run.id, {"status": {"step": 2}}, state="COMPLETED",
                          expect_state=["CREATED", "RUNNING"], updated=1300.0)
    assert done.state == "COMPLETED" and catalog.get("run", run.id) == done
    kept = catalog.update("run", run.id, {"status": {"step": 3}}, updated=1400.0)
    assert kept.state == "COMPLETED" and catalog.get("run", run.id) == kept


def test_a_stale_update_changes_nothing(catalog):
    run = _record("run", state="RUNNING")
    catalog.add(run)
    for expected in ("CREATED", ["CREATED", "STOPPED"], []):
        with pytest.raises(StaleState, match="RUNNING"):
            catalog.update("run", run.id, {"lost": True}, state="COMPLETED",
                           expect_state=expected, updated=999.0)
    assert catalog.get("run", run.id) == run


def test_update_of_a_missing_record_is_an_error_not_a_stale_state(catalog):
    run = _record("run", state="CREATED")
    catalog.add(run)
    for entity_type, id in (("run", "missing"), ("model", run.id)):
        with pytest.raises(CatalogError, match="no ") as raised:
            catalog.update(entity_type, id, {}, expect_state="CREATED", updated=1.0)
        assert not isinstance(raised.value, StaleState)


def test_an_unknown_entity_type_is_refused_everywhere(catalog):
    calls = [lambda: catalog.add(_record("widget")),
             lambda: catalog.get("widget", "x"),
             lambda: catalog.latest("widget", "p", "f"),
             lambda: catalog.find("widget"),
             lambda: catalog.update("widget", "x", {}, updated=1.0)]
    for call in calls:
        with pytest.raises(CatalogError, match="unknown entity type 'widget'"):
            call()


@pytest.mark.parametrize(("document", "where"), [
    ({"spec": {"values": [1, object()]}}, r"document\['spec'\]\['values'\]\[1\]"),
    ({"spec": {"when": {1, 2}}}, r"document\['spec'\]\['when'\] is a builtins.set"),
    ({"spec": {1: "one"}}, r"document\['spec'\] has the key 1"),
    (["not", "a", "dict"], "a document is a dict, not list"),
])
def test_a_document_that_is_not_json_is_refused_naming_the_field(catalog, document, where):
    with pytest.raises(CatalogError, match=where):
        catalog.add(_record(document=document))
    assert catalog.find("function") == []
    run = _record("run", state="CREATED")
    catalog.add(run)
    with pytest.raises(CatalogError, match=where):
        catalog.update("run", run.id, document, state="RUNNING", updated=5.0)
    assert catalog.get("run", run.id) == run


def test_a_document_that_contains_itself_is_refused(catalog):
    document: dict[str, Any] = {"spec": {}}
    document["spec"]["again"] = document
    with pytest.raises(CatalogError, match=r"document\['spec'\]\['again'\] contains itself"):
        catalog.add(_record(document=document))


def test_nan_survives_in_a_document(catalog):
    record = _record(document={"metrics": {"loss": float("nan")}})
    catalog.add(record)
    got = catalog.get("function", record.id)
    assert got is not None and got.document["metrics"]["loss"] != got.document["metrics"]["loss"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**30, -2**63 - 1,
                                   [1.5, {"deep": float("nan")}]])
def test_what_orjson_would_not_write_as_json_does_survives_add_and_update(catalog, value):
    # orjson writes NaN and the infinities as null and refuses ints over 64 bits: such a
    # document is written by json, on insert and on update alike.
    document = {"status": {"metrics": {"value": value}}, "spec": {"n": 1}}
    record = _record("run", state="CREATED", document=document)
    catalog.add(record)
    got = catalog.get("run", record.id)
    assert got is not None and _same(got.document, json.loads(json.dumps(document)))
    updated = catalog.update("run", record.id, {**document, "more": [value]}, updated=5.0)
    again = catalog.get("run", record.id)
    assert again is not None and _same(again.document, updated.document)
    assert _same(updated.document["more"], json.loads(json.dumps([value])))


def test_compare_and_set_has_one_winner_among_threads(catalog):
    runs = [_record("run", state="CREATED") for _ in range(100)]
    for run in runs:
        catalog.add(run)
    start = threading.Barrier(8)
    wins: dict[int, list[str]] = {worker: [] for worker in range(8)}
    errors: list[BaseException] = []

    def claim(worker: int) -> None:
        try:
            start.wait()
            # As workers pulling jobs do: all go for the same run at once, until none is left.
            while found := catalog.find("run", state="CREATED", limit=1):
                try:
                    catalog.update("run", found[0].id, {"owner": worker}, state="RUNNING",
                                   expect_state="CREATED", updated=time.time())
                except StaleState:
                    continue
                wins[worker].append(found[0].id)
        except BaseException as exc:  # noqa: B036 - reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    claimed = sorted(itertools.chain.from_iterable(wins.values()))
    assert claimed == sorted(run.id for run in runs), "a run was claimed twice, or never"
    for worker, ids in wins.items():
        for id in ids:
            got = catalog.get("run", id)
            assert got is not None and got.document == {"owner": worker}


def test_close_is_idempotent(catalog):
    catalog.close()
    catalog.close()


# --- SQLite: the file ----------------------------------------------------------------------

def test_the_file_is_private_in_wal_mode_in_a_new_directory(tmp_path):
    path = tmp_path / "new" / "deeper" / "catalog.db"
    catalog = SqliteCatalog(path)
    catalog.add(_record())
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal = path.with_name("catalog.db-wal")
        assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        catalog.close()


def test_each_connection_is_set_for_concurrent_writers(db):
    conn = db._connection()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_records_outlive_the_catalog_object(tmp_path):
    record = _record("run", state="CREATED")
    first = SqliteCatalog(tmp_path / "catalog.db")
    first.add(record)
    first.close()
    second = SqliteCatalog(tmp_path / "catalog.db")
    try:
        assert second.get("run", record.id) == record
    finally:
        second.close()


def test_a_relative_path_means_the_same_file_after_a_chdir(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    catalog = SqliteCatalog("relative.db")
    monkeypatch.chdir("/")
    record = _record()
    try:
        thread = threading.Thread(target=catalog.add, args=(record,))  # a new connection
        thread.start()
        thread.join()
        assert catalog.get("function", record.id) == record
        assert catalog.path == tmp_path / "relative.db"
    finally:
        catalog.close()


def test_a_closed_catalog_says_so(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.close()
    with pytest.raises(CatalogError, match="closed"):
        catalog.get("run", "x")


@pytest.mark.parametrize("content", [b"this is not a database, just text" * 100, None])
def test_a_file_that_is_not_a_catalog_is_refused(tmp_path, content):
    path = tmp_path / "other.db"
    if content is None:
        with sqlite3.connect(path) as raw:
            raw.execute("CREATE TABLE mine (x)")
        raw.close()
    else:
        path.write_bytes(content)
    with pytest.raises(CatalogError) as raised:
        SqliteCatalog(path)
    message = str(raised.value)
    assert "not a pyhost catalog" in message if content is None else \
        isinstance(raised.value.__cause__, sqlite3.DatabaseError)


def test_a_path_that_cannot_be_a_file_is_refused(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(CatalogError, match="dir.db") as raised:
        SqliteCatalog(tmp_path / "dir.db")
    assert isinstance(raised.value.__cause__, OSError)


# --- SQLite: schema versions ---------------------------------------------------------------

def _meta_version(path: os.PathLike[str]) -> str:
    raw = sqlite3.connect(path)
    try:
        return str(raw.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                   .fetchone()[0])
    finally:
        raw.close()


def test_an_empty_file_is_version_0_and_is_brought_to_the_current_version(tmp_path):
    path = tmp_path / "catalog.db"
    path.touch()
    catalog = SqliteCatalog(path)
    catalog.close()
    assert _meta_version(path) == str(SqliteCatalog.schema_version) == "3"
    raw = sqlite3.connect(path)
    indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = "
                                             "'index' AND tbl_name = 'records'")}
    raw.close()
    assert {"records_by_name", "records_by_state", "records_seq", "records_newest",
            "records_by_project_state", "runs_by_function"} <= indexes


def _add_owner_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE records ADD COLUMN owner TEXT NOT NULL DEFAULT 'nobody'")


class _NextVersion(SqliteCatalog):
    """What a pyhost with schema version 4 would be: one more migration."""

    schema_version = 4
    _migrations = {**sqlite_backend._MIGRATIONS, 3: _add_owner_column}


def test_an_older_file_is_migrated_on_open_and_keeps_its_records(tmp_path):
    path = tmp_path / "catalog.db"
    record = _record("run", state="RUNNING")
    old = SqliteCatalog(path)
    old.add(record)
    old.close()
    new = _NextVersion(path)
    try:
        assert new.get("run", record.id) == record
        new.add(_record())
    finally:
        new.close()
    assert _meta_version(path) == "4"
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT owner FROM records WHERE id = ?", (record.id,)).fetchone() == \
        ("nobody",)
    raw.close()
    # ...and the older pyhost now refuses the file rather than misread it.
    with pytest.raises(CatalogError, match="schema version 4.*up to 3: upgrade pyhost"):
        SqliteCatalog(path)


class _Version2(SqliteCatalog):
    """The pyhost before the function column: runs indexed by an expression on the
    document."""

    schema_version = 2
    _migrations = {step: sqlite_backend._MIGRATIONS[step] for step in (0, 1)}


def test_a_version_2_file_gets_its_runs_function_keys_in_a_column(tmp_path):
    path = tmp_path / "catalog.db"
    key = "store://p/function/python/f:1"
    runs = [_record("run", document={"spec": {"function": key}}),
            # NaN: no JSON to SQLite, so version 2 could not index it; version 3 does
            _record("run", document={"spec": {"function": key},
                                     "status": {"metrics": {"loss": float("nan")}}}),
            _record("run", document={"spec": {"function": "store://p/function/python/g:1"}}),
            _record("run", document={"spec": {"function": 7}})]
    _Version2(path).close()
    with sqlite3.connect(path) as raw:  # as version 2 wrote them: no function column
        raw.executemany(
            "INSERT INTO records (entity_type, project, name, id, kind, created, updated, "
            "state, seq, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(record.entity_type, record.project, record.name, record.id, record.kind,
              record.created, record.updated, record.state, seq, json.dumps(record.document))
             for seq, record in enumerate([*runs, _record()], 1)])
    raw.close()
    new = SqliteCatalog(path)
    try:
        found = new.page("run", functions=[key]).records
        assert {record.id for record in found} == {runs[0].id, runs[1].id}
        # ...and a run written from now on is found by its column too.
        later = _record("run", document={"spec": {"function": key}})
        new.add(later)
        assert new.page("run", functions=[key]).records[0].id == later.id
        new.update("run", later.id, {"spec": {"function": "store://p/function/python/h:1"}},
                   updated=later.updated)
        assert later.id not in {record.id for record in new.page("run", functions=[key])
                                .records}
    finally:
        new.close()
    assert _meta_version(path) == "3"
    raw = sqlite3.connect(path)
    plan = " ".join(str(row) for row in raw.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM records WHERE entity_type = 'run' AND "
        "project = 'p' AND function IN (?) ORDER BY created DESC, id DESC", (key,)))
    raw.close()
    assert "runs_by_function" in plan


def test_a_failed_migration_changes_nothing(tmp_path):
    path = tmp_path / "catalog.db"
    SqliteCatalog(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    class Broken(SqliteCatalog):
        schema_version = 4
        _migrations = {**sqlite_backend._MIGRATIONS, 3: broken}

    with pytest.raises(CatalogError, match="syntax error"):
        Broken(path)
    assert _meta_version(path) == "3"
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() \
        == []
    raw.close()


def test_a_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "catalog.db"
    SqliteCatalog(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(CatalogError, match="schema version 7.*upgrade pyhost"):
        SqliteCatalog(path)
    assert _meta_version(path) == "7"


# --- SQLite: threads and locks -------------------------------------------------------------

def test_threads_writing_at_once_lose_nothing(db):
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for number in range(100):
                run = _record("run", f"p{worker % 2}", f"w{worker}-{number}", state="CREATED",
                              document={"worker": worker, "number": number})
                db.add(run)
                db.update("run", run.id, {**run.document, "step": 1}, state="RUNNING",
                          expect_state="CREATED", updated=time.time())
                db.update("run", run.id, {**run.document, "step": 2}, state="COMPLETED",
                          expect_state="RUNNING", updated=time.time())
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    found = db.find("run")
    assert len(found) == 800
    assert {record.state for record in found} == {"COMPLETED"}
    assert {(record.document["worker"], record.document["number"], record.document["step"])
            for record in found} == {(w, n, 2) for w in range(8) for n in range(100)}
    assert len(db.find("run", project="p0")) == 400


def test_connections_of_ended_threads_are_closed(db):
    ended: list[sqlite3.Connection] = []
    for _ in range(5):
        thread = threading.Thread(target=lambda: ended.append(db._connection()))
        thread.start()
        thread.join()
    # The next connection made, here in a thread still alive, closes those of ended threads.
    opened, finish = threading.Event(), threading.Event()

    def live() -> None:
        db.get("run", "x")
        opened.set()
        finish.wait()

    thread = threading.Thread(target=live)
    thread.start()
    opened.wait()
    try:
        for conn in ended:
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                conn.execute("SELECT 1")
        assert len(db._owners) == 2  # this thread's, and the live one's
    finally:
        finish.set()
        thread.join()


def _hold_the_write_lock(path: os.PathLike[str], seconds: float) -> threading.Thread:
    locked = threading.Event()

    def hold() -> None:
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        raw.execute("ROLLBACK")
        raw.close()

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait()
    return thread


def test_a_lock_held_within_the_busy_timeout_is_waited_out(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.db", busy_timeout=2.0)
    holder = _hold_the_write_lock(catalog.path, 0.3)
    try:
        record = _record()
        catalog.add(record)
        assert catalog.get("function", record.id) == record
    finally:
        holder.join()
        catalog.close()


def test_a_lock_held_past_the_busy_timeout_fails_after_that_timeout_in_all(tmp_path):
    # busy_timeout bounds the whole operation, its retries included (they once waited it
    # again at each of 8 tries: 80 s by default).
    catalog = SqliteCatalog(tmp_path / "catalog.db", busy_timeout=0.5)
    holder = _hold_the_write_lock(catalog.path, 2.5)
    try:
        began = time.monotonic()
        with pytest.raises(CatalogError, match=r"stayed locked .*busy_timeout 0\.5 s\)") as raised:
            catalog.add(_record())
        assert 0.45 < time.monotonic() - began < 1.0
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert "nothing of this operation was written" in str(raised.value)
        assert catalog.find("function") == []
    finally:
        holder.join()
        catalog.close()


def test_a_compare_and_set_waits_for_another_writer_rather_than_failing(db):
    # A read that turns into a write cannot wait for the lock (SQLite answers "busy" at
    # once, to avoid a deadlock); a transaction that takes the write lock first can.
    run = _record("run", state="CREATED")
    db.add(run)
    holder = _hold_the_write_lock(db.path, 1.5)
    try:
        moved = db.update("run", run.id, {}, state="RUNNING", expect_state="CREATED",
                          updated=2.0)
        assert moved.state == "RUNNING"
    finally:
        holder.join()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_opens_its_own_connection(db):
    # SQLite says a connection must not be used across a fork; misuse rarely shows at once
    # (it corrupts locks), so this checks that the child does not reuse the parent's.
    parent_record = _record()
    db.add(parent_record)
    parents = db._connection()
    child_record = _record()
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only, and never return into pytest
        status = 1
        try:
            db.add(child_record)
            status = (2 if db._connection() is parents else
                      0 if db.get("function", parent_record.id) == parent_record else 3)
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.get("function", child_record.id) == child_record


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_a_bad_busy_timeout_is_refused_naming_the_variable(tmp_path, monkeypatch, value):
    from pyhost.errors import ConfigurationError
    from pyhost.runtime import Runtime

    monkeypatch.setenv("PYHOST_CATALOG_BUSY_TIMEOUT", value)
    with pytest.raises(ConfigurationError, match=f"PYHOST_CATALOG_BUSY_TIMEOUT='{value}'"):
        Runtime.open(tmp_path / "home")


def test_the_busy_timeout_comes_from_the_environment(tmp_path, monkeypatch):
    from pyhost.runtime import Runtime

    monkeypatch.setenv("PYHOST_CATALOG_BUSY_TIMEOUT", "2.5")
    runtime = Runtime.open(tmp_path / "home")
    try:
        conn = runtime.catalog._connection()  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    finally:
        runtime.close()


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    def __str__(self) -> str:
        return "not what JSON writes"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=30)


@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=6))
def test_a_documents_copy_is_what_its_text_decodes_to(document):
    text, copied = encode_with_copy(document)
    assert text == encode_document(document)
    assert _same(copied, decode_document(text))
    # Whichever encoder wrote it, the text holds what json's would (NaN as NaN, not null).
    assert _same(decode_document(text), json.loads(json.dumps(document)))


@pytest.mark.parametrize("document", [
    {"level": _Level.HIGH}, {"name": [_Text("a")]}, {_Text("key"): 1.5},
    OrderedDict(b=1, a=[OrderedDict(c=(True, None))]),
    {"spec": {"x": [float("nan"), -0.0, 10**30, "é\u2028"]}},
])
def test_a_copy_of_subclasses_and_odd_values_is_still_what_the_text_decodes_to(document):
    text, copied = encode_with_copy(document)
    assert _same(copied, decode_document(text)) and copied is not document


def _same(one: Any, other: Any) -> bool:
    """Equal, of the same types all the way down, NaN being the same as NaN."""
    if type(one) is not type(other):
        return False
    if isinstance(one, dict):
        return list(one) == list(other) and all(_same(one[key], other[key]) for key in one)
    if isinstance(one, list):
        return len(one) == len(other) and all(map(_same, one, other))
    if isinstance(one, float) and math.isnan(one):
        return math.isnan(other)
    return bool(one == other) and (not isinstance(one, float) or
                                   math.copysign(1, one) == math.copysign(1, other))
