"""The report's plots: matplotlib figures rendered to inline SVG whose text stays text.

matplotlib is imported only inside `_mpl` (it costs ~0.5 s). Figures are made without pyplot, so no
global backend is switched (an `edgekiln.build` in a notebook leaves its plotting alone), and saved as
SVG with `svg.fonttype = 'none'` (labels are <text>, searchable and crisp in print) and a fixed
`svg.hashsalt` per plot, so the same manifest gives the same bytes and no two plots of one page share
an element id. The SVG gets a viewBox and width 100%, so it scales to any screen.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Colour-blind-safe (Okabe-Ito): the chosen / fast-path series first.
BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#888888", "#CC79A7"
# Where a marker's name may go (points from the marker), tried in turn: right, above, below, left.
LABEL_OFFSETS = ((7, 3), (7, 12), (7, -12), (-7, 3), (7, 21), (7, -21), (-7, 12), (-7, -12))
WIDTH_IN = 5.2  # inches; at 400 px wide the 9-point labels still render at ~9 px


@dataclass(frozen=True)
class PlotPoint:
    """One marker of a scatter plot: position, area (e.g. bytes), label, and whether it is the chosen one."""

    x: float
    y: float
    size: float
    label: str
    chosen: bool = False
    dimmed: bool = False


@dataclass(frozen=True)
class Bars:
    """One series of horizontal bars: a value per label (None: no bar), and one colour per bar."""

    name: str
    values: Sequence[float | None]
    colors: Sequence[str] | str = BLUE


def _mpl() -> Any:
    import matplotlib
    import matplotlib.figure
    import matplotlib.patches
    import matplotlib.ticker

    return matplotlib


def to_svg(fig: Any, salt: str) -> str:
    """The figure as an <svg> element for inline HTML (no XML header, width 100%, viewBox kept)."""
    buffer = io.StringIO()
    with _mpl().rc_context({"svg.fonttype": "none", "svg.hashsalt": f"edgekiln-{salt}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', svg, count=1)
    return svg.replace("<svg", f'<svg class="plot" role="img" aria-label="{salt}"', 1)


def _figure(height_in: float) -> tuple[Any, Any]:
    mpl = _mpl()
    with mpl.rc_context({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}):
        fig = mpl.figure.Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        ax = fig.subplots()
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def scatter(points: Sequence[PlotPoint], xlabel: str, ylabel: str, salt: str, floor: float | None = None,
            floor_label: str = "", front: Sequence[tuple[float, float]] = ()) -> str:
    """Markers sized by `size` (area), the chosen one ringed and labelled, a horizontal floor line, and
    `front` (e.g. a Pareto front) joined by a line."""
    fig, ax = _figure(3.6)
    if front:
        ax.plot(*zip(*sorted(front), strict=True), color=BLUE, linewidth=1, alpha=0.6, zorder=2)
    largest = max((p.size for p in points), default=1) or 1
    for p in points:
        area = 40 + 360 * p.size / largest
        color = BLUE if p.chosen else (GREY if p.dimmed else ORANGE)
        ax.scatter([p.x], [p.y], s=area, color=color, alpha=0.75, edgecolors="black" if p.chosen else "none",
                   linewidths=1.5, zorder=3)
    xs = [p.x for p in points if p.x > 0]
    if xs and max(xs) > 8 * min(xs):  # latencies an order of magnitude apart: equal ratios, equal distances
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_mpl().ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if floor is not None:
        ax.axhline(floor, color=RED, linestyle="--", linewidth=1)
        ax.annotate(floor_label, (0.99, floor), xycoords=("axes fraction", "data"), xytext=(0, -10),
                    textcoords="offset points", color=RED, fontsize=8, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(0.15)
    _label(ax, points)
    return to_svg(fig, salt)


def _label(ax: Any, points: Sequence[PlotPoint]) -> None:
    """Name the markers, the chosen one first, each at the first offset where its text overlaps no other
    label; a name that fits nowhere is left out (the table below the plot has every row)."""
    ax.figure.draw_without_rendering()  # fixes the axes' limits and layout, so data map to final positions
    placed: list[tuple[float, float, float, float]] = []
    for p in sorted(points, key=lambda p: not p.chosen):
        text = p.label + (" (chosen)" if p.chosen else "")
        x0, y0 = ax.transData.transform((p.x, p.y)) * 72 / ax.figure.dpi  # in points
        width, height = 8 * 0.56 * len(text), 9.0
        for dx, dy in LABEL_OFFSETS:
            box = (x0 + dx if dx > 0 else x0 + dx - width, y0 + dy, width, height)
            if not any(_overlap(box, other) for other in placed):
                placed.append(box)
                ax.annotate(text, (p.x, p.y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                            ha="left" if dx > 0 else "right", fontweight="bold" if p.chosen else "normal")
                break


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def hbars(labels: Sequence[str], series: Sequence[Bars], xlabel: str, salt: str,
          legend: Sequence[tuple[str, str]] = ()) -> str:
    """Grouped horizontal bars, first label on top; `legend` adds (colour, text) entries."""
    fig, ax = _figure(max(1.6, 0.6 + 0.28 * len(labels) * max(1, len(series))))
    height = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        ys = [row + (i - (len(series) - 1) / 2) * height for row in range(len(labels))]
        values = [0.0 if v is None else v for v in s.values]
        ax.barh(ys, values, height=height * 0.9, color=s.colors, label=s.name)
    ax.set_yticks(range(len(labels)), labels=[_short(t) for t in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    used = {c for s in series for c in ([s.colors] if isinstance(s.colors, str) else s.colors)}
    legend = [(c, t) for c, t in legend if c in used]  # only the colours that were drawn
    if legend:
        _legend(fig, [_mpl().patches.Rectangle((0, 0), 1, 1, color=c) for c, _ in legend], [t for _, t in legend])
    elif len(series) > 1:
        _legend(fig, *ax.get_legend_handles_labels())
    return to_svg(fig, salt)


def _legend(fig: Any, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """Below the axes, never over the data (constrained layout makes room)."""
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8, frameon=False)


def _short(label: str, limit: int = 32) -> str:
    """A long layer name cut in the middle (its start and its end tell layers apart); tables hold the rest."""
    return label if len(label) <= limit else f"{label[:limit // 2 - 1]}…{label[-(limit // 2 - 1):]}"


def lines(series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str, salt: str) -> str:
    """One line with markers per series (e.g. accuracy drop against pruning ratio, per layer)."""
    fig, ax = _figure(3.2)
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", markersize=3, linewidth=1.2, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        _legend(fig, *ax.get_legend_handles_labels())
    return to_svg(fig, salt)
