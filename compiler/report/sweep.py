"""The sweep front (`edgekiln sweep`, DIR/sweep.json): latency x accuracy with size, front points linked
to their recipes.

What is read from sweep.json, each key optional: `points: [{name, prune, quantize (or variant), format,
bytes, p50_ms, accuracy or sqnr_db / agreement / cosine_mean / cosine_p5, params, macs, on_front, recipe
(a path relative to DIR, default points/<name>.toml), error}]`, `chosen` (a point's name), `max_drop`,
`quality` (the points' key of the quality axis: cosine_p5 or cosine_mean under a cosine floor).
"""

from __future__ import annotations

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, dig, number, rows
from edgekiln.compiler.report.page import Raw, Section, esc, figure, table

COSINE_AXES = {"cosine_p5": "cosine p5 vs the source model", "cosine_mean": "cosine mean vs the source model"}


def _quality_key(points: list[dict], recorded: object = None) -> tuple[str, str]:
    """Accuracy with labels, else the cosine the sweep's floor read (sweep.json `quality`), else SQNR."""
    if any(number(p.get("accuracy")) is not None for p in points):
        return "accuracy", "accuracy (%)"
    if isinstance(recorded, str) and recorded in COSINE_AXES:
        return recorded, COSINE_AXES[recorded]
    return "sqnr_db", "SQNR vs the source model (dB)"


def _latency_axis(sweep: dict) -> tuple[str, str]:
    """The latency the sweep's front and choice used (sweep.json `latency`): the target's estimate when the host is
    not the target's kind of machine, else the host's p50; with its honest label."""
    if sweep.get("latency") == "estimate_ms":
        target = dig(sweep, "evidence", "target") or "target"
        return "estimate_ms", f"{target} estimate (ms, cost model, not measured)"
    return "p50_ms", "host p50 (ms, host-measured, one machine, side by side)"


def _plot(points: list[dict], chosen: str | None, axis: tuple[str, str], quality: tuple[str, str]) -> str:
    key, label = quality
    numbered = [(p, number(p.get(axis[0])), number(p.get(key))) for p in points]
    placed = [(p, x, y) for p, x, y in numbered if x is not None and y is not None]
    if len(placed) < 2:
        return ""
    numbers = {id(p): k for k, p in enumerate(points, 1)}  # as the table's # column
    marks = [plots.PlotPoint(x, y, float(p.get("bytes") or 0), str(numbers[id(p)]), chosen=p.get("name") == chosen,
                             dimmed=not p.get("on_front")) for p, x, y in placed]
    front = [(x, y) for p, x, y in placed if p.get("on_front")]
    svg = plots.scatter(marks, axis[1], label, "sweep", front=front, kinds=("chosen (ringed)", "on the front",
                                                                          "not on the front"))
    return figure(svg, "Every sweep point, numbered as in the table: latency against quality, marker area = model "
                       "bytes; the front "
                       "(not beaten on latency, quality and size at once) joined and coloured, the rest grey; the "
                       "chosen point ringed")


def _link(p: dict) -> Raw:
    recipe = p.get("recipe") or f"points/{p.get('name')}.toml"
    return Raw(f'<a href="{esc(recipe)}">{esc(p.get("name"))}</a>')


def sweep(inputs: ReportInputs) -> Section | None:
    s = inputs.sweep
    points = [p for p in rows((s or {}).get("points")) if p.get("name")]
    if not points:
        return None
    chosen = (s or {}).get("chosen")
    chosen = chosen.get("name") if isinstance(chosen, dict) else chosen
    key, label = _quality_key(points, (s or {}).get("quality"))
    axis = _latency_axis(s or {})
    estimated = axis[0] == "estimate_ms"
    order = sorted(points, key=lambda p: (not p.get("on_front"), number(p.get(axis[0])) or float("inf")))
    body = [[k, _link(p), p.get("prune"), p.get("quantize") or p.get("variant"), p.get("format"), p.get("bytes"),
             p.get("p50_ms"), *([p.get("estimate_ms")] if estimated else []), p.get(key), p.get("params"),
             p.get("macs"), bool(p.get("on_front")), p.get("error") or ("chosen" if p.get("name") == chosen else "")]
            for k, p in enumerate(order, 1)]
    headers = ["#", "point (recipe)", "prune", "quantize", "format", "bytes", "host p50 ms",
               *([axis[1].split(" (")[0] + " ms"] if estimated else []), label, "params", "MACs", "on front", ""]
    numeric = [0, 5, 6, 7, 8, 9, 10] if estimated else [0, 5, 6, 7, 8, 9]
    note = f'<p class="note">Chosen: {esc(chosen)}, the fastest within the accuracy budget' \
           f'{" of " + esc(s.get("max_drop")) + " points" if s and s.get("max_drop") is not None else ""}.</p>' \
        if chosen else ""
    return Section("sweep", "Sweep front", _plot(order, chosen, axis, (key, label)) + note
                   + table(headers, body, numeric, [p.get("name") == chosen for p in order]))
