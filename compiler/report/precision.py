"""Precision per layer of the shipped model, when it is not one precision throughout: int8+mixed (layers promoted to
16-bit activations, Concat outputs kept apart), int8+fallback (ops and layers kept in float32) and 16x8 (every
layer's activations 16-bit). A strip of the layers in graph order, coloured by precision (at a glance), then a
table of each layer with why it was promoted or kept and what the int8 diagnosis measured at its output."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows
from edgekiln.compiler.report.page import Raw, Section, abbr, esc, fmt, shorten, table

# Each precision and what it means to a reader: the legend says it in words beside its colour (page.py's CSS
# .prec-KIND, the plots' blue / orange / grey), so the colour is a help, never the only sign.
KINDS = {"int8": "int8 activations and weights: the int8 kernels",
         "int16": "16-bit activations, int8 weights: more faithful, run outside the int8 kernels",
         "float32": "float32: kept out of quantization"}


@dataclass(frozen=True)
class LayerPrecision:
    """One layer of the shipped model: its op, precision (a KINDS key), why (empty for plain int8), and the int8
    diagnosis's SQNR at its output and share of the int8 error (None when the diagnosis did not measure it)."""

    layer: str
    op: str
    precision: str
    why: str
    sqnr_db: float | None
    share: float | None


def precision(inputs: ReportInputs) -> Section | None:
    q = block(inputs.manifest, "quantization")
    found = _in_graph_order(_layers(q), inputs.manifest)
    if not found:
        return None
    counts = {kind: sum(layer.precision == kind for layer in found) for kind in KINDS}
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    body = (f'<p>{esc(q.get("variant", "The shipped model"))} runs its {len(found)} layer(s) as {esc(summary)}. '
            "In graph order:</p>" + _strip(found) + _legend(counts) + _apart(q)
            + _plain_note(q)
            + table(["layer", "op", "precision", "plain int8: SQNR dB at its output", "plain int8: share of error",
                     "why"],
                    [[abbr(layer.layer, shorten(layer.layer, 40)), layer.op,
                      _badge(layer.precision), layer.sqnr_db, layer.share, layer.why] for layer in found], [3, 4]))
    return Section("precision", "Precision per layer", body)


def _layers(q: dict) -> list[LayerPrecision]:
    """Every layer the diagnosis names (and any promoted or kept layer it does not), with its precision; empty when
    the shipped model is one precision throughout (or nothing says which layers it has)."""
    mixed, fallback = block(q, "mixed"), block(q, "fallback")
    sixteen = q.get("variant") == "16x8" or q.get("activation_type") == "int16"
    if not (mixed or fallback or sixteen):
        return []
    diagnosed = rows(dig(q, "diagnosis", "layers")) or rows(dig(q, "diagnosis", "nodes"))
    special = {str(p.get("layer")): ("int16", _promoted_why(p)) for p in rows(mixed.get("promoted"))}
    special |= {str(f.get("layer")): ("float32", f"kept in float32: {f.get('reason', '')}")
                for f in rows(fallback.get("float_layers"))}
    float_ops = block(fallback, "float_ops")
    named = {str(r.get("layer") or r.get("name")): r for r in diagnosed}
    for name, extra in [*((str(p.get("layer")), p) for p in rows(mixed.get("promoted"))),
                        *((str(f.get("layer")), f) for f in rows(fallback.get("float_layers")))]:
        named.setdefault(name, extra)
    found = []
    for name, r in named.items():
        op = str(r.get("op") or "")
        probed = number(block(mixed, "probe_gain_db").get(name))
        plain = f"promoting it alone gained {fmt(probed)} dB (measured)" if probed is not None else ""
        kind, why = special.get(name, ("int16", "16x8: every layer's activations") if sixteen else ("int8", plain))
        if op in float_ops and kind == "int8":
            kind, why = "float32", f"{op} kept in float32: {float_ops[op]}"
        found.append(LayerPrecision(name, op, kind, why, number(r.get("sqnr_db")), number(r.get("share"))))
    return found


def _promoted_why(p: dict) -> str:
    gain = number(p.get("gain_db"))
    measured = f"promoted alone it gained {fmt(gain)} dB (measured)" if gain is not None else "promoted"
    return f"{measured}; the int8 diagnosis: {p.get('reason', '')}"


def _in_graph_order(found: list[LayerPrecision], manifest: dict) -> list[LayerPrecision]:
    """By the profile's op index where the layer is profiled (its place in the graph), then the rest as the
    diagnosis listed them (worst first)."""
    first: dict[str, float] = {}
    for op in rows(dig(manifest, "profile", "ops")):
        index = number(op.get("index"))
        for part in str(op.get("layer") or op.get("name") or "").split("+"):
            if index is not None:
                first[part] = min(first.get(part, index), index)
    return sorted(found, key=lambda layer: first.get(layer.layer, float("inf")))


def _plain_note(q: dict) -> str:
    """What the table's SQNR and share are: plain int8's, not the shipped model's."""
    if not (block(q, "mixed") or block(q, "fallback")):
        return '<p class="note">SQNR and share: plain int8\'s at each layer, which 16x8 ships instead of.</p>'
    return ('<p class="note">SQNR and share are plain int8\'s, measured before any layer was promoted or kept in '
            "float32: a layer's error may come from the layer before it, so what changes is chosen by measurement "
            "(the why column).</p>")


def _badge(kind: str) -> Raw:
    return Raw(f'<span class="prec prec-{esc(kind)}" data-precision="{esc(kind)}">{esc(kind)}</span>')


def _strip(found: list[LayerPrecision]) -> str:
    cells = "".join(f'<li class="prec prec-{esc(layer.precision)}" data-precision="{esc(layer.precision)}" '
                    f'title="{esc(layer.layer)} ({esc(layer.op)}): {esc(layer.precision)}">'
                    f"{esc(shorten(layer.layer, 28))}</li>" for layer in found)
    return f'<ol class="strip" aria-label="layers by precision, in graph order">{cells}</ol>'


def _legend(counts: dict[str, int]) -> str:
    keys = "".join(f'<li><span class="prec prec-{kind}" data-precision="{kind}">{kind}</span> {esc(KINDS[kind])}'
                   f" ({n} layer(s))</li>" for kind, n in counts.items() if n)
    return f'<ul class="legend">{keys}</ul>'


def _apart(q: dict) -> str:
    apart = rows(dig(q, "mixed", "concats_apart"))
    if not apart:
        return ""
    items = "".join(f"<li>{esc(a.get('node'))} ({esc(a.get('op'))}): output in int16, each input keeps its own "
                    f"scale; {esc(a.get('reason', ''))}</li>" for a in apart)
    return f'<p class="note">Kept apart before any layer was promoted:</p><ul class="note">{items}</ul>'

