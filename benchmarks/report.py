"""Results of benchmark rows and the table they are printed as.

A :class:`Result` holds the raw samples of one row in the unit it is shown in, the
:class:`Target` it is judged against and, where one was measured in the same run, the
:class:`Baseline` it is compared with. Nothing here measures anything or fails: a missed
target is a ``MISS`` in the verdict column, not an exception.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Baseline", "Result", "Target", "Unavailable", "format_table", "percentile"]


class Unavailable(Exception):
    """A row cannot be measured here (a feature is missing); it is shown as ``n/a``."""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Baseline:
    """What a row is compared with, measured in the same run, in the row's unit."""

    label: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass(frozen=True)
class Target:
    """The goal a row's median is judged against.

    ``limit`` is absolute (in the row's unit) or, when ``relative``, a factor of the
    baseline's median. ``higher_is_better`` turns "at most" into "at least".
    """

    limit: float
    relative: bool = False
    higher_is_better: bool = False

    def describe(self, unit: str) -> str:
        sign = ">=" if self.higher_is_better else "<="
        if self.relative:
            return f"{sign}{_number(self.limit)}x base"
        return f"{sign}{_number(self.limit)} {unit}"

    def bound(self, baseline: Baseline | None) -> float | None:
        """The absolute bound, or None when a relative target has no baseline."""
        if not self.relative:
            return self.limit
        return None if baseline is None else self.limit * baseline.median


@dataclass
class Result:
    """One printed row."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    higher_is_better: bool = False
    target: Target | None = None
    baseline: Baseline | None = None
    note: str = ""
    unavailable: str = ""  # the reason, when the row could not be measured

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        """The fastest sample: the minimum of times, the maximum of rates."""
        return max(self.samples) if self.higher_is_better else min(self.samples)

    @property
    def p95(self) -> float:
        """The tail: 95 % of samples were at least this good."""
        if self.higher_is_better:
            return percentile(self.samples, 0.05)
        return percentile(self.samples, 0.95)

    @property
    def ratio(self) -> float | None:
        """Median over the baseline's median, or over the absolute target without one."""
        if not self.samples:
            return None
        if self.baseline is not None and self.baseline.median:
            return self.median / self.baseline.median
        if self.target is not None and not self.target.relative and self.target.limit:
            return self.median / self.target.limit
        return None

    @property
    def verdict(self) -> str:
        if self.unavailable or not self.samples:
            return "n/a"
        if self.target is None:
            return "-"
        bound = self.target.bound(self.baseline)
        if bound is None:
            return "?"  # relative target, baseline not measured
        met = self.median >= bound if self.target.higher_is_better else self.median <= bound
        return "ok" if met else "MISS"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "unit": self.unit, "verdict": self.verdict}
        if self.unavailable:
            data["unavailable"] = self.unavailable
        if self.samples:
            data.update(n=self.n, best=self.best, median=self.median, p95=self.p95,
                        ratio=self.ratio, samples=self.samples)
        if self.target is not None:
            data["target"] = {"text": self.target.describe(self.unit), "limit": self.target.limit,
                              "relative": self.target.relative,
                              "higher_is_better": self.target.higher_is_better}
        if self.baseline is not None:
            data["baseline"] = {"label": self.baseline.label, "median": self.baseline.median,
                                "n": len(self.baseline.samples)}
        if self.note:
            data["note"] = self.note
        return data


_COLUMNS = ("name", "n", "best", "median", "p95", "unit", "target", "baseline", "ratio",
            "verdict")


def format_table(results: list[Result]) -> str:
    """The results as an aligned text table; what each baseline is, and notes, below it."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    footnotes: dict[str, list[str]] = {}  # text -> the rows it applies to, in order
    for result in results:
        if result.unavailable or not result.samples:
            rows.append((result.name, "0", "n/a", "", "", result.unit,
                         result.target.describe(result.unit) if result.target else "", "",
                         "", "n/a"))
            footnotes.setdefault(f"n/a: {result.unavailable or 'no samples'}",
                                 []).append(result.name)
            continue
        if result.baseline is not None:
            footnotes.setdefault(f"baseline = {result.baseline.label}", []).append(result.name)
        if result.note:
            footnotes.setdefault(result.note, []).append(result.name)
        ratio = result.ratio
        rows.append((
            result.name, str(result.n), _number(result.best), _number(result.median),
            _number(result.p95), result.unit,
            result.target.describe(result.unit) if result.target else "-",
            "-" if result.baseline is None else _number(result.baseline.median),
            "-" if ratio is None else f"{_number(ratio)}x", result.verdict,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    left = {0, 5, 6, 9}  # text columns; numbers align right
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if footnotes:
        lines.append("")
        lines.append("best = fastest sample; p95 = 95 % of samples at least this good; "
                     "ratio = median / baseline median (or / target without a baseline)")
        for text, names in footnotes.items():
            lines.append(f"{', '.join(names)}: {text}")
    return "\n".join(lines)


def _number(value: float) -> str:
    """A few significant digits."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.001 or value == 0:
        return f"{value:.3f}"
    return f"{value:.1e}"
