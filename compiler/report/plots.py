"""The report's plots: matplotlib figures rendered to inline SVG whose text stays text.

matplotlib is imported only inside `_mpl` (it costs ~0.5 s). Figures are made without pyplot, so no
global backend is switched (an `edgekiln.build` in a notebook leaves its plotting alone), and saved as
SVG with `svg.fonttype = 'none'` (labels are <text>, searchable and crisp in print) and a fixed
`svg.hashsalt` per plot, so the same manifest gives the same bytes and no two plots of one page share
an element id. The SVG gets a viewBox and width 100%, so it scales to any screen.

Every plot has both axes labelled and a legend naming each colour it draws (what it measures, and where:
host / estimate / device); its parts carry ids a test can find: `{salt}-xlabel`, `{salt}-ylabel`,
`{salt}-legend`, and `{salt}-data-K` on each drawn series (bars, markers, lines).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgekiln.compiler.report.page import shorten

# Colour-blind-safe (Okabe-Ito): the chosen / fast-path series first.
BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#888888", "#CC79A7"
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
    import matplotlib.lines
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
            floor_label: str = "", front: Sequence[tuple[float, float]] = (),
            kinds: tuple[str, str, str] = ("chosen", "other", "dimmed")) -> str:
    """Markers sized by `size` (area), the chosen one ringed, each named by its `label` (a short number: the
    table beside the plot names it) placed where it overlaps no other label and no marker; a horizontal floor
    line, `front` (e.g. a Pareto front) joined by a line, and a legend naming each colour by `kinds`
    (chosen, other, dimmed)."""
    fig, ax = _figure(3.6)
    mpl = _mpl()
    if front:  # the colour of the points it joins ("other": on the front)
        ax.plot(*zip(*sorted(front), strict=True), color=ORANGE, linewidth=1, alpha=0.6, zorder=2,
                gid=f"{salt}-data-front")
    largest = max((p.size for p in points), default=1) or 1
    colors = {"chosen": BLUE, "other": ORANGE, "dimmed": GREY}
    for k, p in enumerate(points):
        ax.scatter([p.x], [p.y], s=_area(p, largest), color=colors[_kind(p)], alpha=0.75,
                   edgecolors="black" if p.chosen else "none", linewidths=1.5, zorder=3, gid=f"{salt}-data-{k}")
    xs = [p.x for p in points if p.x > 0]
    if xs and max(xs) > 8 * min(xs):  # latencies an order of magnitude apart: equal ratios, equal distances
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    handles, names = [], []
    for kind, name in zip(("chosen", "other", "dimmed"), kinds, strict=True):
        if any(_kind(p) == kind for p in points):
            handles.append(mpl.lines.Line2D([], [], marker="o", linestyle="", color=colors[kind], markersize=7,
                                            markeredgecolor="black" if kind == "chosen" else colors[kind]))
            names.append(name)
    if floor is not None:
        ax.axhline(floor, color=RED, linestyle="--", linewidth=1, gid=f"{salt}-data-floor")
        handles.append(mpl.lines.Line2D([], [], color=RED, linestyle="--"))
        names.append(floor_label or "floor")
    _axes_labels(ax, xlabel, ylabel, salt)
    ax.margins(0.15)
    _min_span(ax, [p.x for p in points], [p.y for p in points] + ([floor] if floor is not None else []))
    _legend(fig, handles, names, salt)
    _label(ax, points, largest, salt)
    return to_svg(fig, salt)


MIN_SPAN = 0.2  # an axis spans at least 20 % of its largest value: noise-sized gaps are not stretched apart


def _min_span(ax: Any, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Widen a linear axis whose data differ by less than MIN_SPAN of their size, around their middle: figures
    within a timing margin of each other should look close, not spread over the whole plot."""
    for values, get, set_ in ((xs, ax.get_xlim, ax.set_xlim), (ys, ax.get_ylim, ax.set_ylim)):
        low, high = get()
        scale = max((abs(v) for v in values), default=0.0)
        if values and high - low < MIN_SPAN * scale and (set_ != ax.set_xlim or ax.get_xscale() == "linear"):
            middle = (max(values) + min(values)) / 2
            set_(middle - MIN_SPAN * scale / 2, middle + MIN_SPAN * scale / 2)


def _kind(p: PlotPoint) -> str:
    return "chosen" if p.chosen else "dimmed" if p.dimmed else "other"


def _area(p: PlotPoint, largest: float) -> float:
    return 40 + 360 * p.size / largest  # points^2


LABEL_FONT = 8.0
LABEL_CHARS = 36  # a bar's label, longer ones cut at a separator (page.shorten)
RINGS = (9, 15, 23, 33, 46, 62)  # distances (points) from a marker's centre at which its label is tried


def _label(ax: Any, points: Sequence[PlotPoint], largest: float, salt: str) -> None:
    """Number the markers: markers that sit on one another share one label ("2,5"); each label goes to the first
    place, ring by ring around its marker (a leader line beyond the first rings), where its box overlaps no
    other label, no marker and stays inside the axes. Every label is an SVG group `{salt}-label-K`."""
    ax.figure.draw_without_rendering()  # fixes the axes' limits and layout, so data map to final positions
    scale = 72 / ax.figure.dpi
    where = [tuple(ax.transData.transform((p.x, p.y)) * scale) for p in points]
    radius = [math.sqrt(_area(p, largest) / math.pi) for p in points]
    frame = tuple(v * scale for v in ax.bbox.bounds)
    taken = [(x - r, y - r, 2 * r, 2 * r) for (x, y), r in zip(where, radius, strict=True)]  # the markers
    for k, group in enumerate(_stacked(where, points)):
        text = ",".join(points[i].label for i in group)
        x0, y0 = where[group[0]]
        width, height = 0.62 * LABEL_FONT * len(text) + 2, LABEL_FONT * 1.3
        reach = max(radius[i] for i in group)
        for dx, dy in _spots(reach):
            box = (x0 + dx - width / 2, y0 + dy - height / 2, width, height)
            if _inside(box, frame) and not any(_overlap(box, other) for other in taken):
                taken.append(box)
                far = math.hypot(dx, dy) > reach + 10
                first = points[group[0]]  # the group's markers are within 4 points of it
                ax.annotate(text, (first.x, first.y), xytext=(dx, dy), textcoords="offset points",
                            fontsize=LABEL_FONT, ha="center", va="center",
                            fontweight="bold" if any(points[i].chosen for i in group) else "normal",
                            arrowprops={"arrowstyle": "-", "color": GREY, "linewidth": 0.6} if far else None,
                            gid=f"{salt}-label-{k}")
                break


def _stacked(where: Sequence[tuple[float, ...]], points: Sequence[PlotPoint]) -> list[list[int]]:
    """Markers whose centres are within a few points of each other, as groups (the chosen one's first)."""
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(where):
        near = next((g for g in groups if math.hypot(x - where[g[0]][0], y - where[g[0]][1]) < 4), None)
        if near is None:
            groups.append([i])
        else:
            near.append(i)
    return sorted(groups, key=lambda g: not any(points[i].chosen for i in g))


def _spots(reach: float) -> list[tuple[float, float]]:
    """Offsets from a marker's centre, nearest first: 12 directions on each ring beyond the marker's edge."""
    spots = []
    for ring in RINGS:
        r = reach + ring
        spots += [(r * math.cos(a * math.pi / 6), r * math.sin(a * math.pi / 6)) for a in (0, 1, 11, 3, 9, 2, 10,
                                                                                          6, 5, 7, 4, 8)]
    return spots


def _inside(box: tuple[float, ...], frame: tuple[float, ...]) -> bool:
    return box[0] >= frame[0] and box[1] >= frame[1] and box[0] + box[2] <= frame[0] + frame[2] and \
        box[1] + box[3] <= frame[1] + frame[3]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def hbars(labels: Sequence[str], series: Sequence[Bars], xlabel: str, ylabel: str, salt: str,
          legend: Sequence[tuple[str, str]] = ()) -> str:
    """Grouped horizontal bars, first label on top; `legend`: (colour, text) entries for bars coloured per bar,
    else each series' name is its legend entry."""
    # tall enough for the bars, and for the y axis's label written along it (9-point characters, ~0.075 in each)
    fig, ax = _figure(max(1.6, 0.6 + 0.28 * len(labels) * max(1, len(series)), 1.0 + 0.075 * len(ylabel)))
    height = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        ys = [row + (i - (len(series) - 1) / 2) * height for row in range(len(labels))]
        values = [0.0 if v is None else v for v in s.values]
        bars = ax.barh(ys, values, height=height * 0.9, color=s.colors, label=s.name)
        for j, bar in enumerate(bars):
            bar.set_gid(f"{salt}-data-{i}-{j}")
    ax.set_yticks(range(len(labels)), labels=[shorten(t, LABEL_CHARS) for t in labels], fontsize=8)
    ax.invert_yaxis()
    _axes_labels(ax, xlabel, ylabel, salt)
    used = {c for s in series for c in ([s.colors] if isinstance(s.colors, str) else s.colors)}
    legend = [(c, t) for c, t in legend if c in used]  # only the colours that were drawn
    if legend:
        _legend(fig, [_mpl().patches.Rectangle((0, 0), 1, 1, color=c) for c, _ in legend], [t for _, t in legend],
                salt)
    else:
        _legend(fig, *_drawn(ax), salt)
    return to_svg(fig, salt)


def _axes_labels(ax: Any, xlabel: str, ylabel: str, salt: str) -> None:
    ax.set_xlabel(xlabel, gid=f"{salt}-xlabel")
    ax.set_ylabel(ylabel, gid=f"{salt}-ylabel")


LEGEND_CHARS = 76  # characters of 8-point text across the figure (WIDTH_IN), handles and gaps included


def _legend(fig: Any, handles: Sequence[Any], labels: Sequence[str], salt: str) -> None:
    """Below the axes, never over the data (constrained layout makes room), in as many columns as the longest
    entry leaves room for: a legend wider than the figure would be cut at the SVG's edge."""
    longest = max((len(t) for t in labels), default=1)
    columns = max(1, min(3, len(labels), LEGEND_CHARS // (longest + 6)))
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=8,
               frameon=False).set_gid(f"{salt}-legend")


def lines(series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str, salt: str) -> str:
    """One line with markers per series (e.g. accuracy drop against pruning ratio, per layer)."""
    fig, ax = _figure(3.2)
    for k, (name, (xs, ys)) in enumerate(series.items()):
        ax.plot(list(xs), list(ys), marker="o", markersize=3, linewidth=1.2, label=name, gid=f"{salt}-data-{k}")
    _axes_labels(ax, xlabel, ylabel, salt)
    _legend(fig, *_drawn(ax), salt)
    return to_svg(fig, salt)


def _drawn(ax: Any) -> tuple[list[Any], list[str]]:
    """The axes' labelled series and their names, as a legend takes them."""
    handles, names = ax.get_legend_handles_labels()
    return handles, names
