"""Per-layer sections: where the time goes (the manifest's `profile` block) and where the int8 error
comes from (`quantization.diagnosis`), with its causes in words."""

from __future__ import annotations

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows, texts
from edgekiln.compiler.report.page import Section, abbr, esc, figure, fmt, shorten, table

FAST_COLORS = {True: plots.BLUE, False: plots.RED, None: plots.GREY}
MAX_BARS = 20  # a plot of more layers is unreadable on a phone; the table lists them all


def _layer(op: dict) -> str:
    """The source (Keras / ONNX) layers an op comes from, as the profile joined them ("bn_11+conv2d_11"), else the
    op's own name (a TFLite tensor name, several fused ops' names joined by ';')."""
    return str(op.get("layer") or op.get("name") or "?")


def _op_label(op: dict) -> str:
    """A plot label: the op's main layer (the last one a fusion names) and how many more were fused into it."""
    layers = _layer(op).split("+")
    more = f" +{len(layers) - 1}" if len(layers) > 1 else ""
    return _with_kind(shorten(layers[-1], 28) + more, op.get("op"))


def _with_kind(name: str, op: object) -> str:
    """A bar's label: the name, and the op's kind where it fits; hbars cuts a longer label from the left, which
    would drop the name ("ra_DequantizeLinear (DequantizeLinear)" drawn as "…(DequantizeLinear)", bars alike)."""
    kind = f" ({op})" if op else ""
    return name + kind if len(name + kind) <= plots.LABEL_CHARS else name


def _profile_plot(ops: list[dict], before: dict[str, float], target: str) -> str:
    shown = ops[:MAX_BARS]
    labels = [_op_label(o) for o in shown]
    series = [plots.Bars("host ms", [number(o.get("ms")) for o in shown],
                         [FAST_COLORS.get(o.get("fast_path"), plots.GREY) for o in shown])]
    legend = [(plots.BLUE, "host ms, in the fast path"), (plots.RED, "host ms, outside the fast path"),
              (plots.GREY, "host ms, fast path unknown")]
    if any(number(o.get("estimate_ms")) is not None for o in shown):
        series.append(plots.Bars(f"{target} estimate ms", [number(o.get("estimate_ms")) for o in shown],
                                 plots.ORANGE))
        legend.append((plots.ORANGE, f"{target} estimate ms (cost model, not measured)"))
    if before:
        series.insert(0, plots.Bars("before pruning", [before.get(str(o.get("layer"))) for o in shown], plots.PURPLE))
        legend.insert(0, (plots.PURPLE, "host ms before pruning"))
    svg = plots.hbars(labels, series, "time per op (ms)", "layer (op)", "profile", legend)
    return figure(svg, "Time per op of the shipped model, slowest first, labelled by the layer it comes from (+N: "
                       "N more layers fused into it): measured on the build host, coloured by whether it runs in "
                       "the interpreter's fast path" + (f"; beside it, the {target} estimate" if len(series) > 1
                                                        else ""))


def _by_layer(profile: dict | None) -> dict[str, float]:
    """ms per source layer of a profile (several ops of one layer add up)."""
    totals: dict[str, float] = {}
    for o in rows(dig(profile, "ops")):
        ms = number(o.get("ms"))
        if ms is not None and o.get("layer"):
            totals[str(o["layer"])] = totals.get(str(o["layer"]), 0.0) + ms
    return totals


def _unpruned_by_layer(manifest: dict) -> dict[str, float]:
    """ms per layer of the unpruned model, as a pruned build measured it (pruning.measured.per_layer_ms)."""
    per_layer = rows(dig(manifest, "pruning", "measured", "per_layer_ms"))
    return {str(r["layer"]): float(ms) for r in per_layer
            if r.get("layer") and (ms := number(r.get("unpruned_ms"))) is not None}


def profile(inputs: ReportInputs) -> Section | None:
    p = inputs.manifest.get("profile")
    ops = [o for o in rows(dig(p, "ops")) if number(o.get("ms")) is not None]
    if not isinstance(p, dict) or not ops:
        return None
    ops.sort(key=lambda o: -float(o["ms"]))
    before = _by_layer(p.get("unpruned")) or _unpruned_by_layer(inputs.manifest)
    target = str(dig(inputs.manifest, "target", "name") or "target")
    headers = ["layer", "type", "host ms", "share", "MACs", "params", "weight bytes", "dtype",
               "fast path", *([f"{target} estimate ms"] if any("estimate_ms" in o for o in ops) else [])]
    body = [[abbr(o.get("name") or _layer(o), shorten(_layer(o), 40)), o.get("op"), o.get("ms"), o.get("share"),
             o.get("macs"), o.get("params"), o.get("weight_bytes"), o.get("dtype"), o.get("fast_path"),
             *([o.get("estimate_ms")] if len(headers) > 9 else [])] for o in ops]
    summary = (f'<p>Measured by {esc(p.get("method", "?"))} with {esc(fmt(p.get("threads")))} threads: the ops add '
               f'up to {esc(fmt(p.get("sum_ms")))} ms against {esc(fmt(p.get("total_ms")))} ms measured for the '
               f'whole model <span class="where">host-measured</span>. Layers are your model\'s own (several '
               "joined by + when the converter fused them into one op); hover one for its op's name in the "
               "compiled model.</p>")
    return Section("profile", "Where the time goes", summary + _profile_plot(ops, before, target)
                   + table(headers, body, [2, 3, 4, 5, 6, 9]))


def diagnosis(inputs: ReportInputs) -> Section | None:
    d = dig(inputs.manifest, "quantization", "diagnosis")
    layers = rows(dig(d, "layers")) or rows(dig(d, "nodes"))  # TFLite: per layer; ONNX: per node
    causes = texts(dig(d, "causes"))
    if not layers and not causes:
        return None
    body = f'<p class="note">Of {esc(d.get("of", "int8"))}; {esc(d.get("method", ""))}.</p>' if d.get("of") else ""
    if causes:
        body += "<p>Likely causes, worst first:</p><ol>" + "".join(f"<li>{esc(c)}</li>" for c in causes) + "</ol>"
    shares = [number(r.get("share")) for r in layers]
    if layers and any(s is not None for s in shares):
        shown = layers[:MAX_BARS]
        labels = [_with_kind(shorten(str(r.get("layer") or r.get("name")), 28), r.get("op")) for r in shown]
        series = plots.Bars("share of plain int8's error (host, on the calibration samples)",
                            [number(r.get("share")) for r in shown], plots.RED)
        svg = plots.hbars(labels, [series], "share of the int8 error", "layer (op)", "diagnosis")
        body += figure(svg, "Each layer's share of plain int8's error (what keeping it in float would remove), "
                            "worst first")
    body += table(["layer", "op", "SQNR dB", "share"],
                  [[abbr(r.get("name") or r.get("layer"), shorten(str(r.get("layer") or r.get("name")), 40)),
                    r.get("op"), r.get("sqnr_db"), r.get("share")] for r in layers],
                  [2, 3])
    cover = dig(d, "coverage")
    if isinstance(cover, dict) and cover.get("outside_fast_path") is not None:
        outside = ", ".join(f"{k} x{v}" for k, v in block(cover, "outside_fast_path").items()) or "none"
        body += (f'<p class="note">{esc(cover.get("library", "fast path"))}: {esc(fmt(cover.get("fast_path_nodes")))}'
                 f' of {esc(fmt(cover.get("nodes")))} ops in {esc(fmt(cover.get("fast_path_pieces")))} piece(s); '
                 f"outside: {esc(outside)}.</p>")
    return Section("diagnosis", "Per-layer int8 error", body)
