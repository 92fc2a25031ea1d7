"""Bar charts as plain geometry for inline SVG (no JavaScript): the template draws rectangles and labels, and a
table under each chart carries the same numbers for screen readers and for copying."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 560, 190, 34, 24, 10
COLORS = {
    "emergency": "#b3261e",
    "urgent": "#a34a06",  # the urgent badge colour (white text on it passes WCAG AA contrast)
    "routine": "#1f5fa8",
    "better": "#2e7d32",
    "same": "#7a8594",
    "worse": "#b3261e",
    "rate": "#1f5fa8",
    "failures": "#b3261e",
}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


@dataclass
class Chart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label) of horizontal grid lines
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x centre, label) under each column
    legend: list[tuple[str, str]] = field(default_factory=list)  # (color, name)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM


def _nice_max(value: float) -> float:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if value <= step * 4:
            return float(step * 4)
    return float(value)


def stacked(title: str, columns: Sequence[tuple[str, Mapping[str, int]]], keys: Sequence[tuple[str, str]]) -> Chart:
    """One stacked bar per column; `keys` are (key, legend name) from the bottom up."""
    chart = Chart(title, legend=[(COLORS.get(k, "#555"), name) for k, name in keys])
    top = _nice_max(max([sum(v.get(k, 0) for k, _ in keys) for _, v in columns] + [1]))
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(columns), 1)
    for i, (label, values) in enumerate(columns):
        x = LEFT + i * slot + slot * 0.15
        y = float(HEIGHT - BOTTOM)
        for key, name in keys:
            n = values.get(key, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            chart.bars.append(
                Bar(
                    round(x, 1),
                    round(y, 1),
                    round(slot * 0.7, 1),
                    round(h, 1),
                    COLORS.get(key, "#555"),
                    f"{label}: {n} {name}",
                )
            )
        chart.labels.append((round(LEFT + i * slot + slot / 2, 1), label))
    for frac in (0, 0.5, 1):
        chart.ticks.append((round(HEIGHT - BOTTOM - plot_h * frac, 1), f"{top * frac:g}"))
    return chart


def percent(title: str, columns: Sequence[tuple[str, int, int]], color: str = "rate") -> Chart:
    """One bar per column: answered / asked as a percentage (an empty column when nothing was asked)."""
    chart = Chart(title)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(columns), 1)
    for i, (label, part, whole) in enumerate(columns):
        if whole:
            h = plot_h * part / whole
            chart.bars.append(
                Bar(
                    round(LEFT + i * slot + slot * 0.15, 1),
                    round(HEIGHT - BOTTOM - h, 1),
                    round(slot * 0.7, 1),
                    round(h, 1),
                    COLORS.get(color, color),
                    f"{label}: {part} of {whole} ({100 * part / whole:.0f}%)",
                )
            )
        chart.labels.append((round(LEFT + i * slot + slot / 2, 1), label))
    for frac in (0, 0.5, 1):
        chart.ticks.append((round(HEIGHT - BOTTOM - plot_h * frac, 1), f"{100 * frac:.0f}%"))
    return chart
