"""What the tests of the ``pyhost`` command share: the handlers they run, ``python -m pyhost``
as a user runs it, and the ids of a project's runs. The fixtures over them (``home``,
``handlers``, ``table``) are in ``tests/unit/conftest.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyhost.runtime as dh

HANDLERS = '''\
import os
import time


def total(di, scale, tags, label="none"):
    df = di.as_df()
    print(f"{label}: {len(df)} rows")
    return {"sum": int(df["x"].sum()) * scale, "tags": tags}


def doubled(di):
    df = di.as_df()
    df["x"] = df["x"] * 2
    return df


def fails(depth=1):
    if depth:
        return fails(depth - 1)
    raise ValueError("no good")


def environ():
    return [os.environ.get("GREETING"), len(os.environ.get("TOKEN", ""))]


def sleeper(seconds=60):
    print("going to sleep", flush=True)
    time.sleep(seconds)
'''


def pyhost_command(*args: str, cwd: Path | None = None,
                   **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m pyhost ARGS`` with this interpreter and import path (the installed
    console script may point at another checkout), and ``env`` added to the environment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run([sys.executable, "-m", "pyhost", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def run_ids(project: str = "demo") -> list[str]:
    return [run.id for run in dh.get_project(project).list_runs()]
