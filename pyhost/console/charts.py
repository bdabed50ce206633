"""A metric's series as a line chart in SVG, drawn on the server: no script, nothing fetched.
Every text in it is escaped; the numbers are formatted by us."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["line_chart"]

WIDTH, HEIGHT = 520, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 32  # margins for the labels
_MOST_POINTS = 2000  # a longer series is thinned evenly (its last point always kept)


def line_chart(name: str, points: Sequence[dict[str, Any]]) -> Markup:
    """The chart of one series of ``{"value", "step"}`` points (values that are no finite
    number are left out; a series with none draws a note instead)."""
    pairs = [(float(point.get("step", index)), float(point["value"]))
             for index, point in enumerate(points)
             if _finite(point.get("value")) and _finite(point.get("step", index))]
    title = f'<text x="{_LEFT}" y="18" class="chart-title">{escape(name)}</text>'
    if not pairs:
        return _svg(title + f'<text x="{_LEFT}" y="{HEIGHT // 2}" class="chart-note">'
                    "no numeric values</text>", name)
    pairs = _thinned(pairs)
    steps, values = [step for step, _ in pairs], [value for _, value in pairs]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(values), max(values)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1
    inner_w, inner_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(step: float) -> float:
        return _LEFT + (step - x0) / (x1 - x0) * inner_w

    def y(value: float) -> float:
        return _TOP + (y1 - value) / (y1 - y0) * inner_h

    line = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in pairs)
    last_step, last_value = pairs[-1]
    parts = [
        title,
        f'<rect x="{_LEFT}" y="{_TOP}" width="{inner_w}" height="{inner_h}" class="chart-frame"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" class="chart-axis" text-anchor="end">'
        f"{_number(y1)}</text>",
        f'<text x="{_LEFT - 6}" y="{_TOP + inner_h}" class="chart-axis" text-anchor="end">'
        f"{_number(y0)}</text>",
        f'<text x="{_LEFT}" y="{HEIGHT - 10}" class="chart-axis">step {_number(x0)}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 10}" class="chart-axis" text-anchor="end">'
        f"{_number(x1)}</text>",
        f'<polyline points="{line}" class="chart-line" fill="none"/>',
        f'<circle cx="{x(last_step):.1f}" cy="{y(last_value):.1f}" r="3" class="chart-dot">'
        f"<title>step {_number(last_step)}: {_number(last_value)}</title></circle>",
    ]
    return _svg("".join(parts), name)


def _svg(body: str, name: str) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
                  f'width="{WIDTH}" height="{HEIGHT}" role="img" class="chart" '
                  f'aria-label="{escape(name)}">{body}</svg>')


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _thinned(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(pairs) <= _MOST_POINTS:
        return pairs
    stride = len(pairs) / (_MOST_POINTS - 1)
    return [pairs[int(index * stride)] for index in range(_MOST_POINTS - 1)] + [pairs[-1]]


def _number(value: float) -> str:
    return f"{value:.6g}"
