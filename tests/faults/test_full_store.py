"""The store on a small filesystem (a 4 MiB tmpfs this test mounts at the home's ``store/``)
filled by a job's ``project.log_dataitem``: the run ends ERROR saying the disk is full, no
part of the entity is in the catalog or the store, the catalog opens again and the entities
logged before read back byte for byte."""

from __future__ import annotations

import hashlib
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import pyhost.runtime as dh
from pyhost.errors import NotInCatalog
from pyhost.runtime.catalog.sqlite import SqliteCatalog

pytestmark = pytest.mark.docker

SIZE = 4 << 20

FILLS = textwrap.dedent("""
    def main(project, rows):
        import numpy as np
        import pandas as pd

        print("filling", flush=True)
        # Random floats: Parquet cannot shrink them below the 4 MiB the store has.
        big = pd.DataFrame({"x": np.random.default_rng(7).random(rows)})
        project.log_dataitem(name="big", kind="table", data=big)
        return "never"
""")


@pytest.fixture
def faults_small_store(faults_home):
    """The home's store on a tmpfs of :data:`SIZE` bytes, unmounted at the end."""
    store = faults_home.path / "store"
    store.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs",
                              str(store)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.fail(f"this fault mounts a tmpfs, which needs root (CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}", pytrace=False)
    try:
        yield store
    finally:
        subprocess.run(["umount", "--lazy", str(store)], check=True)


def _files(store: Path) -> dict[str, str]:
    """Every file of the store: its path -> the sha256 of its bytes."""
    return {str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(store.rglob("*")) if path.is_file()}


def test_a_full_store_ends_the_run_error_and_loses_nothing_logged_before(
        faults_home, faults_small_store, tmp_path):
    dh.configure(faults_home.path)
    project = dh.get_or_create_project("full")
    table = pd.DataFrame({"x": range(1000), "label": [f"row {n}" for n in range(1000)]})
    earlier = project.log_dataitem(name="earlier", kind="table", data=table)
    source = tmp_path / "weights.bin"
    source.write_bytes(bytes(range(256)) * 512)
    artifact = project.log_artifact(name="weights", source=str(source))
    fn = project.new_function(name="fills", kind="python", code=FILLS, handler="main")
    before = _files(faults_small_store)
    assert len(before) == 3, before  # the table, the artifact, the function's source

    run = fn.run(action="job", parameters={"rows": 750_000}, wait=True,
                 launcher=faults_home.launcher)

    status = run.status
    assert status.state == "ERROR", status.to_dict()
    assert "no space left on the store's filesystem" in status.message, status.message
    assert "cannot write the table big" in status.message
    assert "<store>" in status.message and str(faults_small_store) not in status.message
    assert status.error["type"] == "hxpy.server.HostCallError"
    assert run.logs().startswith("filling")
    with pytest.raises(NotInCatalog):  # no entity half made
        project.get_dataitem("big")
    assert not any(faults_small_store.glob("full/dataitem/big/*"))
    assert faults_home.disk_leftovers() == []  # no .part, no version dir without a record

    catalog = SqliteCatalog(faults_home.path / "catalog.db")  # opens, and is whole
    try:
        assert catalog._read("PRAGMA integrity_check", ())[0][0] == "ok"
        assert [record.name for record in catalog.find("dataitem")] == ["earlier"]
    finally:
        catalog.close()
    dh.configure(faults_home.path)
    after = {path: digest for path, digest in _files(faults_small_store).items()
             if "/run/" not in f"/{path}"}  # the run's log went beside them
    assert after == before  # byte for byte
    assert dh.get_dataitem(earlier.key).as_df().equals(earlier.as_df())
    assert dh.get_dataitem(earlier.key).as_df()["label"].tolist() == table["label"].tolist()
    downloaded = dh.get_artifact(artifact.key).download(tmp_path / "back")
    assert Path(downloaded).read_bytes() == source.read_bytes()

    seen = faults_home.gc()
    assert seen.returncode == 0, seen
    assert seen.settled == [] and seen.socket_dirs == 0, seen


FILLED = textwrap.dedent("""
    def main(project):
        for n in range(50):
            print(f"a line the full disk cannot take {n}", flush=True)
        print("and one without its end", end="", flush=True)  # stored when the run ends
        project.log_dataitem(name="small", kind="table",
                             data=__import__("pandas").DataFrame({"x": [1, 2, 3]}))
        return "never"
""")


def test_a_store_already_full_ends_the_run_error_not_stuck_running(faults_home,
                                                                    faults_small_store):
    dh.configure(faults_home.path)
    project = dh.get_or_create_project("full")
    fn = project.new_function(name="filled", kind="python", code=FILLED, handler="main")
    filler = faults_small_store / "filler"
    try:
        # Every byte taken before the run starts: its log and its table meet a full disk.
        with open(filler, "wb", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * 4096)
                    out.flush()
            except OSError:
                pass
        run = fn.run(action="job", wait=True, launcher=faults_home.launcher)
    finally:
        filler.unlink(missing_ok=True)
    status = run.status
    assert status.state == "ERROR", status.to_dict()  # ended: not left RUNNING
    assert "no space left on the store's filesystem" in status.message, status.message
    assert "the runtime failed" not in status.message
    assert "full disk" not in run.logs()  # the disk took none of its log: it was full
    with pytest.raises(NotInCatalog):
        project.get_dataitem("small")
    assert faults_home.disk_leftovers() == []
    seen = faults_home.gc()
    assert seen.returncode == 0 and seen.settled == [], seen
