"""The candidate table as a plot: latency (by the evidence that decided) against accuracy or fidelity,
marker area = bytes, the chosen one ringed, the rule's floor drawn; then the table itself."""

from __future__ import annotations

import re

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows, texts
from edgekiln.compiler.report.page import Section, esc, figure, fmt, table

# Which latency of a candidate row the rule read (quantization.evidence.kind; host when not recorded).
LATENCY_FIELDS = {"host": "p50_ms", "estimate": "estimate_ms", "device": "device_p50_ms", "emulated": "emulated_ms"}


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
    where = {"host": "host-measured", "estimate": "cost model, not measured", "device": "device-measured",
             "emulated": "executed instructions on an emulated core; not a timing"}.get(kind, kind)
    return key, f"{label} (ms, {where})"


# How far apart quality figures must be to tell candidates apart on a plot (smaller: a size axis instead).
RESOLUTION = {"accuracy": 0.2, "sqnr_db": 1.0, "cosine_p5": 1e-3, "cosine_mean": 1e-3}


def _separates(key: str, values: list[float]) -> bool:
    """Whether the quality figures differ by more than the axis can show apart (RESOLUTION)."""
    return len(values) > 1 and max(values) - min(values) >= RESOLUTION.get(key, 0.0)


def _plot(m: dict, q: dict, candidates: list[dict]) -> str:
    """Latency (by the evidence) against quality, or against size when quality does not tell them apart; each
    marker numbered as the table's # column."""
    x_key, x_label = _latency_axis(q)
    y_key, y_label, floor, floor_label = _quality_axis(m, candidates)
    points, exact = [], []
    for number_, r in enumerate(candidates, 1):
        x, y = number(r.get(x_key)), number(r.get(y_key))
        if x is None:
            continue
        if y is None and y_key == "sqnr_db":  # null SQNR: reproduced exactly (infinite); drawn at the top
            exact.append(r["name"])
        points.append((number_, r, x, y))
    if len(points) < 2:
        return ""
    quality = [y for *_, y in points if y is not None]
    by_size = not _separates(y_key, quality)
    if by_size:
        spread = f"{min(quality):g}-{max(quality):g}" if quality else "not measured"
        note = (f"; {y_label.split(' (')[0]} does not separate them ({spread}), so model size is the y axis"
                if quality else "; model size is the y axis")
        y_label, floor = "model size (kB)", None
    else:
        top = max(quality, default=floor or 0.0)
        note = f"; {', '.join(exact)} reproduce the source exactly (infinite SQNR, drawn at the top)" if exact else ""
    marks = [plots.PlotPoint(x, float(r.get("bytes") or 0) / 1000 if by_size else top if y is None else y,
                             float(r.get("bytes") or 0), str(k), chosen=_chosen(r, q), dimmed=_passed_over(r))
             for k, r, x, y in points]
    svg = plots.scatter(marks, x_label, y_label, "candidates", floor, floor_label,
                        kinds=("chosen (ringed)", "meets the rule", "misses the rule, or not eligible"))
    return figure(svg, f"Each candidate, numbered as in the table: {x_label} against {y_label}; marker area = "
                       f"model bytes{note}.")


MISSES = ("below floor", "over budget", "not accurate enough")  # search/choose.py: short verdicts of a miss


def _passed_over(r: dict) -> bool:
    """A row the rule could not choose: it misses the criterion, or it is not eligible (the baseline, a model the
    target cannot run)."""
    return str(r.get("short") or "").startswith(MISSES) or "not eligible" in str(r.get("verdict") or "")


def _chosen(r: dict, q: dict) -> bool:
    return r.get("verdict") == "chosen" or r.get("name") == q.get("variant")


def candidates(inputs: ReportInputs) -> Section | None:
    m = inputs.manifest
    q = m["quantization"] if isinstance(m.get("quantization"), dict) else {}
    found = [_flat(r) for r in rows(q.get("candidates")) if r.get("name")]
    if not found:
        return None
    extra = [(key, label) for key, label in (("estimate_ms", f"{dig(q, 'evidence', 'target') or 'target'} estimate ms"),
                                              ("emulated_minstr", "emulated M instructions"),
                                              ("emulated_ms", "emulated estimate ms"),
                                              ("device_p50_ms", "device p50 ms"), ("accuracy", "accuracy %"),
                                              ("accuracy_drop", "drop pt"))
             if any(r.get(key) is not None for r in found)]
    cosines = [(key, label) for key, label in (("cosine_mean", "cosine mean"), ("cosine_p5", "cosine p5"))
               if any(r.get(key) is not None for r in found)]  # outputs with a vector axis
    headers = ["#", "candidate", "bytes", "host p50 ms", *[label for _, label in extra], "SQNR dB",
               "top-1 agree", *[label for _, label in cosines], "verdict"]
    body = [[k, r["name"], r.get("bytes"), r.get("p50_ms"), *[r.get(key) for key, _ in extra], r.get("sqnr_db"),
             r.get("agreement"), *[r.get(key) for key, _ in cosines], r.get("short") or r.get("verdict")]
            for k, r in enumerate(found, 1)]
    details = [_details(r) for r in found]
    numeric = list(range(0, 7 + len(extra) + len(cosines) - 1))
    numeric.remove(1)
    rule = f'<p class="note">Rule: {esc(q["criterion"])}.</p>' if q.get("criterion") else ""
    return Section("candidates", "Candidates", _plot(m, q, found) + rule + _emulated_note(q, found)
                   + table(headers, body, numeric, [_chosen(r, q) for r in found], details) + _left_out(q))


def _flat(r: dict) -> dict:
    """A row with its emulated count (build --emulate-witness) as plain columns: millions of instructions, ms."""
    counted = block(r, "emulated")
    if not counted:
        return r
    instructions = number(counted.get("instructions"))
    return {**r, "emulated_minstr": None if instructions is None else round(instructions / 1e6, 3),
            "emulated_ms": number(counted.get("estimate_ms"))}


def _emulated_note(q: dict, found: list[dict]) -> str:
    """What the emulated columns are (the count's own label) and whether they ranked the candidates."""
    counted = next((block(r, "emulated") for r in found if block(r, "emulated")), None)
    if not counted:
        return ""
    why = dig(q, "evidence", "emulated", "why")
    return (f'<p class="note">Emulated: {esc(str(counted.get("label", "")))} (one warm invoke, one thread, '
            f'{esc(str(counted.get("runtime", "")))}); the estimate is those counts through the target\'s '
            f'per-class cycle costs{"; " + esc(str(why)) if why else ""}.</p>')


def _details(r: dict) -> str:
    """The row's second line: its verdict in full, how it is stored and run, its notes and intervals."""
    parts = [str(r.get("verdict") or "")] if r.get("verdict") != r.get("short") else []
    parts += [f"{r.get('format')}, {r.get('quantize')}" if r.get("quantize") else str(r.get("format") or "")]
    if r.get("pieces") is not None:
        parts.append(f"{r['pieces']} fast-path piece(s)")
    intervals = block(r, "intervals")
    for name, bounds in intervals.items():
        if isinstance(bounds, list) and len(bounds) == 2:
            parts.append(f"{name} 95 % [{fmt(bounds[0])}, {fmt(bounds[1])}] on {fmt(r.get('samples'))} samples")
    parts += texts(r.get("notes"))
    return esc("; ".join(p for p in parts if p))


def _left_out(q: dict) -> str:
    """Candidates that were not built or failed, with their reasons."""
    items = []
    for key in ("not_built", "failed"):
        for name, why in (q.get(key) or {}).items() if isinstance(q.get(key), dict) else []:
            items.append(f"<li>{esc(name)} ({key.replace('_', ' ')}): {esc(why)}</li>")
    return f'<ul class="note">{"".join(items)}</ul>' if items else ""
