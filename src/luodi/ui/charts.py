"""Line charts as inline SVG drawn on the server: training curves, one line per series (overlaid to compare runs).

No JavaScript and no network: a chart is markup inside the page, so it renders with scripts off and under a CSP
that allows no inline script. Every label is escaped; values that are not finite numbers are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
Series = tuple[str, Sequence[tuple[float, float]]]  # (label, [(x, y), ...])


def number(value: object, digits: int = 4) -> str:
    """A metric as people read it: 4 significant digits, integers whole, '' for missing."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points
            if isinstance(y, int | float) and not isinstance(y, bool) and math.isfinite(y)]


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    return low, high


def line_chart(series: Sequence[Series], title: str = "", x_label: str = "epoch", width: int = 440,
               height: int = 200) -> Markup:
    """An SVG line chart of `series`, with axes, min/max ticks and a legend; empty series draw 'no data'."""
    drawn = [(label, _finite(points)) for label, points in series]
    drawn = [(label, points) for label, points in drawn if points]
    left, right, top, bottom = 56, 12, 24, 36
    widest = max((len(label[:40]) for label, _ in drawn), default=0)
    per_row = max(1, min(3, int((width - 68) // (24 + 6.5 * widest))))  # ~6.5 px per 11 px glyph: labels never overlap
    legend_rows = math.ceil(len(drawn) / per_row)
    total_height = height + 16 * legend_rows
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
             f'viewBox="0 0 {width} {total_height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="15" font-size="13" font-weight="bold">{escape(title)}</text>']
    if not drawn:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">no data yet</text>')
        return Markup("".join(parts) + "</svg>")
    xs = [x for _, points in drawn for x, _ in points]
    ys = [y for _, points in drawn for _, y in points]
    x_low, x_high = _span(xs)
    y_low, y_high = _span(ys)
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> str:
        return (f"{left + (x - x_low) / (x_high - x_low) * plot_w:.1f},"
                f"{top + (1 - (y - y_low) / (y_high - y_low)) * plot_h:.1f}")

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    for value, y in ((y_high, top), (y_low, top + plot_h)):
        parts.append(f'<text x="{left - 4}" y="{y + 4}" font-size="11" text-anchor="end">{escape(number(value))}'
                     "</text>")
    for value, x in ((x_low, left), (x_high, left + plot_w)):
        parts.append(f'<text x="{x}" y="{top + plot_h + 14}" font-size="11" text-anchor="middle">'
                     f"{escape(number(value))}</text>")
    parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 28}" font-size="11" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    for index, (label, points) in enumerate(drawn):
        color = PALETTE[index % len(PALETTE)]
        path = " ".join(at(x, y) for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}">'
                     f"<title>{escape(label)}</title></polyline>")
        if len(points) == 1:
            cx, cy = at(*points[0]).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        row, column = divmod(index, per_row)
        lx, ly = left + column * (plot_w / per_row), height + 4 + row * 16
        parts.append(f'<rect x="{lx:.1f}" y="{ly}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14:.1f}" y="{ly + 9}" font-size="11">{escape(label[:40])}</text>')
    return Markup("".join(parts) + "</svg>")


def sparkline(values: Sequence[float], width: int = 100, height: int = 24) -> Markup:
    """A small line of one series (a run's validation loss in the runs table)."""
    points = _finite(list(enumerate(values)))
    if not points:
        return Markup("")
    low, high = _span([y for _, y in points])
    step = width / max(len(points) - 1, 1)
    path = " ".join(f"{x * step:.1f},{(1 - (y - low) / (high - low)) * (height - 2) + 1:.1f}" for x, y in points)
    return Markup(f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}"><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
                  f'points="{path}"/></svg>')


def curves(histories: Sequence[tuple[str, Sequence[dict[str, float]]]]) -> list[tuple[str, list[Series]]]:
    """Per metric, one series per history: [(metric, [(label, [(epoch, value), ...]), ...]), ...], losses first.

    `histories` are (label, per-epoch metrics) pairs, one for a run's page, several to compare runs."""
    names: list[str] = []
    for _, history in histories:
        for epoch in history:
            names += [name for name, value in epoch.items() if name not in names and name != "epoch"
                      and isinstance(value, int | float) and not isinstance(value, bool)]
    names.sort(key=lambda name: (0 if "loss" in name else 1, name))
    return [(name, [(label, [(float(epoch.get("epoch", index + 1)), epoch[name])
                             for index, epoch in enumerate(history) if name in epoch])
                    for label, history in histories]) for name in names]
