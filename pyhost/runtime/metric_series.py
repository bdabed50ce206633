"""A run's metrics as series: every value its handler logs, with its step and the host's time,
appended as JSON lines to ``<project>/run/<id>/metrics/series.jsonl`` in the store.

Why a file and not the catalog: the run's record is one JSON document rewritten whole on
every change, and ``pyhost runs`` reads it; a series of 100 000 points kept there would make
each logged value rewrite everything before it and every listing carry it. A file beside the
run's logs is appended in O(1), read only by :meth:`Run.metrics <pyhost.runtime.runs.Run.metrics>`,
and readable by any process while the run goes on. ``run.status.metrics`` keeps only the last
value of each metric (a number: the last item of a list), so the record stays small.

A line is a point, ``{"name", "value", "step", "time"}``, or ``{"name", "reset": true}``
(``overwrite=True``: the points of that name before it are dropped). A step not given is the
point's index in its series (0, 1, 2, ... counted again from 0 after a reset); a list of
values is one point per item, at consecutive steps. Values are what DigitalHub's
``log_metric`` takes: an int or a float (NaN and infinities too), or a list of them.

Bounds, counted on the host as the calls arrive: :data:`MAX_METRIC_POINTS` points and
:data:`MAX_METRIC_NAMES` names per run; a call that would go past either is refused whole.
"""

from __future__ import annotations

import json
import numbers
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigurationError

__all__ = ["MAX_METRIC_NAMES", "MAX_METRIC_POINTS", "SERIES_FILE", "MetricSeries",
           "check_metrics", "read_series", "series_path"]

MAX_METRIC_POINTS = 100_000  # points one run may log, across its metrics
MAX_METRIC_NAMES = 1_000  # names one run may log: each is a key of the run's status.metrics
SERIES_FILE = "series.jsonl"
_NAME_LIMIT = 256  # characters in a metric's name


def series_path(project: str, run_id: str) -> str:
    """Where a run's series is, relative to the store's root."""
    return f"{project}/run/{run_id}/metrics/{SERIES_FILE}"


def check_metrics(metrics: Any, step: Any = None,
                  overwrite: Any = False) -> dict[str, list[int | float]]:
    """``{name: its points' values}`` from a ``log_metrics`` call (a number is one point, a
    list one per item), numbers made plain ``int``/``float`` (numpy's too).

    Raises:
        ConfigurationError: not a dict of names to numbers or lists of numbers, a name that
            is not 1-256 characters, a step that is not a whole number >= 0, an overwrite
            that is not a bool.
    """
    if not isinstance(metrics, dict):
        raise ConfigurationError(f"metrics must be a dict of name -> value, not "
                                 f"{type(metrics).__name__}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)
                             or step < 0):
        raise ConfigurationError(f"step={step!r}: a whole number >= 0, or None (the point's "
                                 "index in its series)")
    if not isinstance(overwrite, bool):
        raise ConfigurationError(f"overwrite={overwrite!r}: True or False")
    checked: dict[str, list[int | float]] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not 0 < len(name) <= _NAME_LIMIT:
            raise ConfigurationError(f"a metric needs a name of 1-{_NAME_LIMIT} characters, "
                                     f"not {str(name)[:40]!r}")
        items = value if isinstance(value, (list, tuple)) else [value]
        plain = [number for number in map(_plain, items) if number is not None]
        if len(plain) != len(items):
            raise ConfigurationError(
                f"metric {name!r}: an int or a float, or a list of them (as DigitalHub's "
                f"log_metric takes), not {_describe(value)}")
        checked[name] = plain
    return checked


def _plain(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        wrong = next(item for item in value if _plain(item) is None)
        return f"a list holding {type(wrong).__name__} {repr(wrong)[:40]}"
    return f"{type(value).__name__} {repr(value)[:40]}"


class MetricSeries:
    """The series file of one run as its host calls write it (thread-safe: serve replicas
    share one). The first write truncates the file: a job's retry starts a new series, as it
    starts new ``status.metrics``.

    Args:
        path: the file (its directory made on the first write).
        max_points, max_names: the run's bounds (see the module docstring).
    """

    def __init__(self, path: Path, max_points: int = MAX_METRIC_POINTS,
                 max_names: int = MAX_METRIC_NAMES) -> None:
        self.path = path
        self.max_points = max_points
        self.max_names = max_names
        self.points = 0  # points written: what the cap counts (a reset frees none)
        self._lengths: dict[str, int] = {}  # name -> points in its series now
        self._started = False
        self._lock = threading.Lock()

    def log(self, checked: dict[str, list[int | float]], step: int | None,
            overwrite: bool, admit: Callable[[int], None] = lambda size: None) -> None:
        """Append one call's points (from :func:`check_metrics`) at the host's time, all or
        none.

        Args:
            admit: given the bytes about to be written; raises to refuse them (the store
                quota).

        Raises:
            ConfigurationError: the call would go past ``max_points`` or ``max_names``.
        """
        now = time.time()
        with self._lock:
            lengths = dict(self._lengths)
            new_names = [name for name in checked if name not in lengths]
            if len(lengths) + len(new_names) > self.max_names:
                raise ConfigurationError(
                    f"a run may log at most {self.max_names} metric names "
                    f"(pyhost.runtime.metric_series.MAX_METRIC_NAMES); it has "
                    f"{len(lengths)} and this call adds {len(new_names)}: refused whole")
            adding = sum(len(points) for points in checked.values())
            if self.points + adding > self.max_points:
                raise ConfigurationError(
                    f"a run may log at most {self.max_points} metric points "
                    f"(pyhost.runtime.metric_series.MAX_METRIC_POINTS); it has logged "
                    f"{self.points} and this call adds {adding}: refused whole")
            lines = []
            for name, points in checked.items():
                if overwrite and lengths.get(name):
                    lines.append(json.dumps({"name": name, "reset": True}))
                    lengths[name] = 0
                start = lengths.get(name, 0)
                first = start if step is None else int(step)
                lines.extend(json.dumps({"name": name, "value": value, "step": first + index,
                                         "time": now})
                             for index, value in enumerate(points))
                lengths[name] = start + len(points)
            data = "".join(line + "\n" for line in lines).encode()
            admit(len(data))
            if not self._started:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab" if self._started else "wb") as out:
                out.write(data)
            self._started = True
            self._lengths = lengths
            self.points += adding


def read_series(lines: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every metric's points by name, in the order logged, from a series file's lines (a
    last line still being written is skipped)."""
    series: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if entry.get("reset"):
            series[entry["name"]] = []
            continue
        series.setdefault(entry["name"], []).append(
            {"value": entry.get("value"), "step": entry.get("step"), "time": entry.get("time")})
    return series
