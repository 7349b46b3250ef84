"""Pruning: filters per layer before and after, the sensitivity curves of the scan (`--prune auto`),
accuracy before and after recovery, and the measured effect on size and latency."""

from __future__ import annotations

from collections.abc import Sequence

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows
from edgekiln.compiler.report.page import Section, esc, figure, fmt, table

MAX_CURVES = 10  # more lines than this are a tangle (and the colour cycle has 10); the scan's table has them all


def _filters(per_layer: list[dict]) -> str:
    shown = per_layer[:40]
    labels = [str(r.get("layer")) for r in shown]
    svg = plots.hbars(labels, [plots.Bars("filters before pruning", [number(r.get("filters_before")) for r in shown],
                                          plots.GREY),
                               plots.Bars("filters after pruning", [number(r.get("filters_after")) for r in shown],
                                          plots.BLUE)],
                      "filters (output channels)", "layer", "pruning-filters")
    return figure(svg, "Filters per layer before (grey) and after (blue) pruning")


def _curves(scan: dict) -> str:
    ratios = [number(r) for r in scan.get("ratios") or []]
    scan_rows = rows(scan.get("rows"))
    if not scan_rows or not ratios or None in ratios:
        return ""
    series: dict[str, tuple[Sequence[float], Sequence[float]]] = {}
    for r in scan_rows[:MAX_CURVES]:
        drops = [number(d) for d in r.get("drops") or []]
        if len(drops) == len(ratios) and None not in drops:
            series[str(r.get("label"))] = ([float(x) for x in ratios if x is not None],
                                           [float(d) for d in drops if d is not None])
    if not series:
        return ""
    metric = scan.get("metric", "accuracy")
    svg = plots.lines(series, "fraction of the group's channels removed", f"{metric} drop (points, host-measured)",
                      "pruning-sensitivity")
    return figure(svg, f"Sensitivity: each channel group pruned alone, no recovery ({fmt(scan.get('samples'))} "
                       f"samples; {metric} of the source {fmt(scan.get('reference'))} %)")


def _facts(m: dict, p: dict) -> str:
    acc, rec = block(p, "accuracy"), block(p, "recovery")
    lat = block(m, "latency", "pruning")
    items = [f"ratio {esc(p.get('ratio'))}, criterion {esc(p.get('criterion'))}, recovery {esc(rec.get('method'))}",
             f"params {esc(fmt(p.get('params_before')))} -> {esc(fmt(p.get('params_after')))}; MACs "
             f"{esc(fmt(p.get('macs_before')))} -> {esc(fmt(p.get('macs_after')))}"]
    if acc:
        items.append(f"{esc(acc.get('metric', 'accuracy'))}: source {esc(fmt(acc.get('reference')))}, pruned "
                     f"{esc(fmt(acc.get('before_recovery')))} before recovery, {esc(fmt(acc.get('after_recovery')))}"
                     f" after ({esc(fmt(acc.get('samples')))} samples)")
    if lat.get("speedup") is not None:
        items.append(f"host p50 {esc(fmt(lat.get('unpruned_p50_ms')))} ms unpruned -> {esc(fmt(lat.get('p50_ms')))}"
                     f' ms pruned: {esc(fmt(lat.get("speedup")))}x <span class="where">host-measured</span>')
    blocked = rows(p.get("blocked"))
    if blocked:
        items.append(f"{len(blocked)} group(s) blocked: " + esc("; ".join(
            f"{', '.join(map(str, b.get('layers') or []))} ({', '.join(map(str, b.get('reasons') or []))})"
            for b in blocked[:5])))
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def pruning(inputs: ReportInputs) -> Section | None:
    m = inputs.manifest
    p = m.get("pruning")
    if not isinstance(p, dict):
        return None
    if p.get("kind") == "attention heads":
        return _heads(p)
    if p.get("kind") == "encoder layers":
        return Section("pruning", "Pruning: encoder layers", _layers(p))
    per_layer = rows(p.get("per_layer"))
    body = _facts(m, p)
    if per_layer:
        body += _filters(per_layer)
        body += table(["layer", "filters before", "filters after"],
                      [[r.get("layer"), r.get("filters_before"), r.get("filters_after")] for r in per_layer], [1, 2])
    scan = dig(p, "search", "scan")
    if isinstance(scan, dict):
        body += _curves(scan)
    return Section("pruning", "Pruning", body)


def _heads(p: dict) -> Section:
    """Attention-head pruning: heads per layer before / after (which stayed), and the re-fit's effect."""
    rec = block(p, "recovery")
    note = (f'<p class="note">Criterion: {esc(p.get("criterion"))}. Recovery: {esc(rec.get("what"))}; output '
            f'cosine to the source model {esc(rec.get("output_cosine_before"))} before, '
            f'{esc(rec.get("output_cosine_after"))} after, on {esc(rec.get("samples"))} calibration samples. '
            f'Parameters {esc(p.get("params_before"))} -> {esc(p.get("params_after"))}.</p>')
    layers = rows(p.get("layers"))
    body = note + table(["layer", "heads before", "heads after", "heads kept"],
                        [[r.get("layer"), r.get("heads_before"), r.get("heads_after"),
                          ", ".join(map(str, r.get("kept") or []))] for r in layers], [1, 2])
    if isinstance(p.get("layer_drop"), dict):
        body = _layers(p["layer_drop"]) + body
    return Section("pruning", "Pruning: attention heads", body)


def _layers(p: dict) -> str:
    """Layer dropping: which encoder blocks stayed, and the head re-fit's effect."""
    rec = block(p, "recovery")
    note = (f'<p class="note">Dropped the last {esc(p.get("count"))} of {esc(p.get("layers_before"))} encoder '
            f'blocks ({esc(p.get("criterion"))}). Recovery: {esc(rec.get("what"))}; output cosine to the source '
            f'model {esc(rec.get("output_cosine_before"))} before, {esc(rec.get("output_cosine_after"))} after, '
            f'on {esc(rec.get("samples"))} calibration samples. Parameters {esc(p.get("params_before"))} -> '
            f'{esc(p.get("params_after"))}.</p>')
    blocks = rows(p.get("blocks"))
    return note + table(["block", "kept", "layers"],
                        [[r.get("block"), "yes" if r.get("kept") else "dropped", ", ".join(r.get("layers") or [])]
                         for r in blocks], [0])
