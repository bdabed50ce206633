"""``make bench`` brings what its rows need: the serve rows' ``wrk`` is installed by a target
that asks apt only when ``wrk`` is not on the PATH (read, not run: it would install)."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def _rule(target: str) -> tuple[list[str], str]:
    """A target's prerequisites and its recipe (the tab-indented lines after it)."""
    text = MAKEFILE.read_text()
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", text, re.MULTILINE)
    assert match is not None, f"the Makefile has no {target} target"
    return match[1].split(), match[2]


def test_bench_installs_wrk_and_the_image_first():
    prerequisites, recipe = _rule("bench")
    assert {"image", "wrk"} <= set(prerequisites)
    assert "benchmarks/run.py" in recipe


def test_wrk_is_installed_only_when_missing():
    _, recipe = _rule("wrk")
    guard, _, install = recipe.partition("||")
    assert "command -v wrk" in guard
    assert re.search(r"apt-get install\b.*\n?.*\bwrk\b", install)
    assert "-y" in install.split()  # unattended
    phony = re.search(r"^\.PHONY:(.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert phony is not None and "wrk" in phony[1].split()  # never taken for a file
