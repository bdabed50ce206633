"""How a build's progress is shown: a bar in a terminal (tqdm), plain lines otherwise.

A build reports each line it prints to one callable (``Launcher.build_image``'s
``progress``). Lines ``Step N/M : what`` move the bar; the others show beside it. Where
stderr is not a terminal, each line is logged (logger ``pyhost.build``, level INFO), or
printed when asked (``progress="lines"``, as ``pyhost build`` does in a pipe).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, TextIO

from ...errors import ConfigurationError
from ...launchers.images import parse_step

__all__ = ["BuildBar", "build_progress", "check_progress"]

log = logging.getLogger("pyhost.build")

Reporter = Callable[[str], None]


class BuildBar:
    """A tqdm bar over a build's steps; the latest line beside it."""

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=None, desc=title, unit="step", file=stream or sys.stderr,
                         leave=True, dynamic_ncols=True, bar_format=None)
        self._title = title

    def __call__(self, line: str) -> None:
        step = parse_step(line)
        if step is not None:
            done, total, what = step
            self._bar.total = total
            self._bar.n = done - 1  # the step named is under way
            self._bar.set_description(f"{self._title}: {what[:40]}", refresh=False)
        self._bar.set_postfix_str("" if step else line.strip()[-60:], refresh=False)
        self._bar.refresh()

    def close(self, ok: bool) -> None:
        """End the bar: full when the build succeeded, where it stopped otherwise."""
        if ok and self._bar.total:
            self._bar.n = self._bar.total
        self._bar.set_description(self._title, refresh=False)
        self._bar.set_postfix_str("done" if ok else "failed")
        self._bar.close()


def build_progress(progress: Any, title: str) -> tuple[Reporter, Callable[[bool], None]]:
    """``(report a line, close with success or not)`` for a build's ``progress`` setting.

    Args:
        progress: None or ``"auto"``: a bar when stderr is a terminal, else log lines;
            ``"bar"``, ``"lines"`` (printed to stderr), ``"log"``; False: nothing; or a
            callable given each line.
        title: what the bar is labelled.

    Raises:
        ConfigurationError: another value.
    """
    if progress is None or progress == "auto":
        progress = "bar" if _terminal(sys.stderr) else "log"
    if progress is False:
        return (lambda line: None), (lambda ok: None)
    if progress == "bar":
        bar = BuildBar(title)
        return bar, bar.close
    if progress == "lines":
        return (lambda line: print(line, file=sys.stderr, flush=True)), (lambda ok: None)
    if progress == "log":
        return (lambda line: log.info("%s: %s", title, line)), (lambda ok: None)
    check_progress(progress)  # a callable
    return progress, (lambda ok: None)


def check_progress(progress: Any) -> None:
    """Refuse a ``progress`` setting :func:`build_progress` does not know.

    Raises:
        ConfigurationError: naming the values it takes.
    """
    if not (progress in (None, False, "auto", "bar", "lines", "log") or callable(progress)):
        raise ConfigurationError(f"progress={progress!r}: 'auto', 'bar', 'lines', 'log', "
                                 "False or a callable taking each line")


def _terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
