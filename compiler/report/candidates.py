"""The candidate table as a plot: latency (by the evidence that decided) against accuracy or fidelity,
marker area = bytes, the chosen one ringed, the rule's floor drawn; then the table itself."""

from __future__ import annotations

import re

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, dig, number, rows, texts
from edgekiln.compiler.report.page import Section, esc, figure, table

# Which latency of a candidate row the rule read (quantization.evidence.kind; host when not recorded).
LATENCY_FIELDS = {"host": "p50_ms", "estimate": "estimate_ms", "device": "device_p50_ms"}


def _quality_axis(m: dict, candidates: list[dict]) -> tuple[str, str, float | None, str]:
    """(row key, axis label, floor, floor label): accuracy with labelled data, else the cosine floor's figure
    (its 5th percentile, or its mean when only that was given), else SQNR."""
    criterion = str(dig(m, "quantization", "criterion") or "")
    if any(number(r.get("accuracy")) is not None for r in candidates):
        reference, max_drop = dig(m, "accuracy", "reference"), dig(m, "recipe", "max_drop")
        floor = reference - max_drop if number(reference) is not None and number(max_drop) is not None else None
        return "accuracy", "accuracy (%)", floor, f"floor: source {reference} % - {max_drop} points"
    for key, field, name in (("cosine_p5", "min_cosine_p5", "cosine p5"), ("cosine_mean", "min_cosine", "cosine mean")):
        floor = number(dig(m, "recipe", field))
        if floor is not None:
            return key, f"{name} vs the source model", floor, f"floor: {name} {floor:g}"
    found = re.search(r"SQNR >= ([0-9.]+) dB", criterion)
    floor = float(found.group(1)) if found else None
    return "sqnr_db", "SQNR vs the source model (dB)", floor, f"floor: SQNR {found.group(1)} dB" if found else ""


def _latency_axis(q: dict) -> tuple[str, str]:
    kind = dig(q, "evidence", "kind") or "host"
    key = LATENCY_FIELDS.get(kind, "p50_ms")
    label = dig(q, "evidence", "label") or "host p50"
    where = {"host": "host-measured", "estimate": "estimate", "device": "device-measured"}.get(kind, kind)
    return key, f"{label} (ms, {where})"


def _plot(m: dict, q: dict, candidates: list[dict]) -> str:
    x_key, x_label = _latency_axis(q)
    y_key, y_label, floor, floor_label = _quality_axis(m, candidates)
    points, exact = [], []
    for r in candidates:
        x, y = number(r.get(x_key)), number(r.get(y_key))
        if x is None:
            continue
        if y is None and y_key == "sqnr_db":  # null SQNR: reproduced exactly (infinite); drawn at the top
            exact.append(r["name"])
        points.append((r, x, y))
    top = max((y for _, _, y in points if y is not None), default=floor or 0.0)
    marks = [plots.PlotPoint(x, top if y is None else y, float(r.get("bytes") or 0), str(r.get("name")),
                         chosen=r.get("verdict") == "chosen" or r.get("name") == q.get("variant"),
                         dimmed=str(r.get("verdict", "")).startswith("not eligible"))
             for r, x, y in points]
    if len(marks) < 2:
        return ""
    note = f"; {', '.join(exact)} reproduce the source exactly (infinite SQNR, drawn at the top)" if exact else ""
    svg = plots.scatter(marks, x_label, y_label, "candidates", floor, floor_label)
    return figure(svg, f"Each candidate: {x_label} against {y_label}; marker area = model bytes; the chosen one "
                       f"is ringed; dashed: the accuracy floor of the rule{note}.")


def candidates(inputs: ReportInputs) -> Section | None:
    m = inputs.manifest
    q = m["quantization"] if isinstance(m.get("quantization"), dict) else {}
    found = [r for r in rows(q.get("candidates")) if r.get("name")]
    if not found:
        return None
    extra = [(key, label) for key, label in (("estimate_ms", "estimate ms"), ("device_p50_ms", "device p50 ms"),
                                              ("accuracy", "accuracy %"), ("accuracy_drop", "drop pt"))
             if any(r.get(key) is not None for r in found)]
    cosines = [(key, label) for key, label in (("cosine_mean", "cosine mean"), ("cosine_p5", "cosine p5"))
               if any(r.get(key) is not None for r in found)]  # outputs with a vector axis
    headers = ["candidate", "format", "bytes", "host p50 ms", *[label for _, label in extra], "SQNR dB",
               "top-1 agreement", *[label for _, label in cosines], "pieces", "verdict", "notes"]
    body = [[r["name"], r.get("format"), r.get("bytes"), r.get("p50_ms"), *[r.get(key) for key, _ in extra],
             r.get("sqnr_db"), r.get("agreement"), *[r.get(key) for key, _ in cosines], r.get("pieces"),
             r.get("verdict"), "; ".join(texts(r.get("notes")))]
            for r in found]
    chosen = [r.get("verdict") == "chosen" for r in found]
    numeric = list(range(2, 7 + len(extra) + len(cosines)))
    rule = f'<p class="note">Rule: {esc(q["criterion"])}.</p>' if q.get("criterion") else ""
    left_out = _left_out(q)
    return Section("candidates", "Candidates", _plot(m, q, found) + rule + table(headers, body, numeric, chosen)
                   + left_out)


def _left_out(q: dict) -> str:
    """Candidates that were not built or failed, with their reasons."""
    items = []
    for key in ("not_built", "failed"):
        for name, why in (q.get(key) or {}).items() if isinstance(q.get(key), dict) else []:
            items.append(f"<li>{esc(name)} ({key.replace('_', ' ')}): {esc(why)}</li>")
    return f'<ul class="note">{"".join(items)}</ul>' if items else ""
