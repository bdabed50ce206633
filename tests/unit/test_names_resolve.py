"""Every dotted ``pyhost.*`` / ``hxpy.*`` name and every ``path/to/file.py`` that the code's
docstrings and comments, the docs, README, ``Dockerfile.hxpy`` and ``pyproject.toml`` name
must exist: a rename that leaves its old name in the prose fails here."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (?<![\w.]) keeps label keys such as org.pyhost.owner.pid out; a name ends before a dot that
# ends a sentence.
_DOTTED = re.compile(r"(?<![\w./-])((?:pyhost|hxpy)(?:\.[A-Za-z_]\w*)+)")
_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w-]+\.(?:py|md))\b")
# Dotted words that are not our Python names: a socket file, loggers with no module of their
# name, and hxPy's own package that docs/compat.md lists as missing here.
_NOT_NAMES = {"hxpy.sock", "hxpy.serve", "pyhost.build", "hxpy.brio"}


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def _texts() -> list[tuple[str, str]]:
    names = [name for name in _tracked()
             if name.endswith(".py") and name.startswith(("pyhost/", "container/"))
             or name.startswith("docs/") and name.endswith(".md")
             or name in ("README.md", "Dockerfile.hxpy", "pyproject.toml")]
    return [(name, (ROOT / name).read_text()) for name in names if (ROOT / name).exists()]


def _resolves(dotted: str) -> bool:
    if dotted.endswith(".__main__"):  # found, not imported: importing it runs the program
        try:
            return importlib.util.find_spec(dotted) is not None
        except ImportError:  # no such package
            return False
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def _named(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for where, text in _texts():
        for match in pattern.finditer(text):
            found.setdefault(match.group(1), []).append(where)
    return found


def test_every_dotted_name_resolves():
    missing = {name: sorted(set(where)) for name, where in _named(_DOTTED).items()
               if name not in _NOT_NAMES and not _resolves(name)}
    assert not missing, missing


def test_every_file_path_named_exists():
    tracked = _tracked()
    missing = {}
    for path, where in _named(_PATH).items():
        # named from the top, from container/ (hxpy/...) or pyhost/ (runtime/..., launchers/...)
        if not any(name == path or name.endswith("/" + path) for name in tracked):
            missing[path] = sorted(set(where))
    assert not missing, missing


@pytest.mark.parametrize("text, names", [
    ("see pyhost.runtime.tasks.job.JobTask.", ["pyhost.runtime.tasks.job.JobTask"]),
    ("label org.pyhost.owner.pid and hxpy:latest", []),
])
def test_the_name_pattern(text, names):
    assert [match.group(1) for match in _DOTTED.finditer(text)] == names
