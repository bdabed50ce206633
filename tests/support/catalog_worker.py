"""One process of the multi-process catalog test (``tests/faults/test_catalog_processes.py``).

``python catalog_worker.py DB WORKER COUNT MODE`` opens the SQLite catalog at DB, prints
``ready``, waits for a line on stdin (so that every process starts at once), then:

- ``runs``: makes COUNT runs of its own, each added CREATED then moved CREATED -> RUNNING ->
  COMPLETED with compare-and-set;
- ``claim``: moves CREATED runs to RUNNING, as their owner, one at a time, always going for
  the newest one left (as every other worker is), until none is left.

It prints one JSON line (its first and last times, and the runs it claimed) and exits 0; any
exception goes to stderr with exit status 1.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from pyhost.runtime.catalog import Record, SqliteCatalog, StaleState


def make_runs(catalog: SqliteCatalog, worker: int, count: int) -> list[str]:
    for number in range(count):
        now = time.time()
        run = Record("run", f"p{worker}", uuid.uuid4().hex, uuid.uuid4().hex, "python+job",
                     now, now, "CREATED", {"worker": worker, "number": number})
        catalog.add(run)
        for old, new in (("CREATED", "RUNNING"), ("RUNNING", "COMPLETED")):
            moved = catalog.update("run", run.id, {**run.document, "state": new}, state=new,
                                   expect_state=old, updated=time.time())
            assert moved.state == new
        stored = catalog.get("run", run.id)
        assert stored is not None and stored.state == "COMPLETED"
    return []


def claim_runs(catalog: SqliteCatalog, worker: int) -> list[str]:
    # As workers pulling jobs do: all go for the same run at once, until none is left.
    won = []
    while found := catalog.find("run", state="CREATED", limit=1):
        run = found[0]
        try:
            catalog.update("run", run.id, {"owner": worker}, state="RUNNING",
                           expect_state="CREATED", updated=time.time())
        except StaleState:
            continue
        won.append(run.id)
    return won


def main(path: str, worker: int, count: int, mode: str) -> None:
    catalog = SqliteCatalog(path)
    print("ready", flush=True)
    sys.stdin.readline()
    first = time.time()
    won = make_runs(catalog, worker, count) if mode == "runs" else claim_runs(catalog, worker)
    last = time.time()
    catalog.close()
    print(json.dumps({"first": first, "last": last, "won": won}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
