"""Monthly charts as SVG drawn on the server: no script to load, readable by a screen
reader (a title and a description with every value), and as sharp on a phone as on a
desk. One column per month; a month with nothing to count has no column and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH = 640
HEIGHT = 240
LEFT = 44
RIGHT = 8
TOP = 12
BOTTOM = 40


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None


def _ticks(low: float, high: float) -> list[float]:
    step = (high - low) / 4
    return [low + step * i for i in range(5)]


def column_chart(
    key: str,
    title: str,
    points: Sequence[Point],
    *,
    low: float,
    high: float,
    unit: str,
) -> Markup:
    """``points`` as columns between ``low`` and ``high`` (a value below ``low``, as an
    NPS under zero is, grows down from the zero line)."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    n = max(1, len(points))
    slot = plot_w / n
    bar = max(2.0, slot * 0.6)

    def y(value: float) -> float:
        value = min(high, max(low, value))
        return TOP + plot_h * (1 - (value - low) / (high - low))

    zero = y(0.0 if low < 0 < high else low)
    parts: list[str] = []
    for tick in _ticks(low, high):
        ty = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" class="tick">'
            f"{tick:.0f}</text>"
        )
    every = max(1, round(n / 6))
    described = []
    for i, point in enumerate(points):
        x = LEFT + slot * i + (slot - bar) / 2
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle"'
                f' class="tick">{escape(point.label)}</text>'
            )
        if point.value is None:
            described.append(f"{point.label}: nothing to count")
            continue
        top = y(point.value)
        y0, y1 = sorted((top, zero))
        parts.append(
            f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bar:.1f}" height="{max(1.0, y1 - y0):.1f}"'
            f' class="bar{" below" if point.value < 0 else ""}">'
            f"<title>{escape(point.label)}: {point.value:.1f}{escape(unit)}</title></rect>"
        )
        described.append(f"{point.label}: {point.value:.1f}{unit}")
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" class="axis"/>'
    )
    title_id, desc_id = f"chart-{key}-title", f"chart-{key}-desc"
    svg = (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img"'
        f' aria-labelledby="{title_id} {desc_id}" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{title_id}">{escape(title)} by month</title>'
        f'<desc id="{desc_id}">{escape("; ".join(described) or "no months in the range")}</desc>'
        + "".join(parts)
        + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- built from escaped text and numbers only
