"""The report's first screen, in words: what ships and why (size, latency on the target with its evidence and
band, accuracy or fidelity with its 95 % interval), what it gained against the float32 baseline, and what to
try next. Every figure is the manifest's; the one computed here (accuracy's interval) says how."""

from __future__ import annotations

from edgekiln.compiler.evaluate import evidence
from edgekiln.compiler.report.inputs import block, dig, number, rows
from edgekiln.compiler.report.page import esc, fmt

# What each evidence kind is, for a reader (quantization.evidence.kind).
KINDS = {"estimate": "estimate: the target's cost model, not measured", "host": "host-measured",
         "device": "device-measured",
         "emulated": "emulated estimate: executed instructions on an emulated core through per-class costs, "
                     "not measured"}


def part(name: str, html: str) -> str:
    """A piece of the answer a test (or a reader's tool) can find: data-part="NAME"."""
    return f'<span data-part="{name}">{html}</span>'


def _kind(m: dict) -> str:
    return str(dig(m, "quantization", "evidence", "kind") or "host")


def latency(m: dict) -> str:
    """The shipped model's latency by the evidence that chose it, with that evidence and its band."""
    kind, label = _kind(m), dig(m, "quantization", "evidence", "label")
    est, host = block(m, "latency", "target_estimate"), block(m, "latency", "host")
    if kind == "estimate" and number(est.get("p50_ms")) is not None:
        band = (f"band {fmt(est['low_ms'])}-{fmt(est['high_ms'])} ms, leave-one-out over the board's published "
                f"figures" if number(est.get("low_ms")) is not None and number(est.get("high_ms")) is not None
                else "band unknown: no published figure for this board")
        figure = f"{esc(label or 'target estimate')} <b>{fmt(est['p50_ms'])} ms</b>"
    elif kind == "emulated" and (counted := _shipped_count(m)) and number(counted.get("estimate_ms")) is not None:
        figure = f"{esc(label or 'emulated estimate')} <b>{fmt(counted['estimate_ms'])} ms</b>"
        band = f"{counted.get('label')}; {dig(m, 'quantization', 'evidence', 'emulated', 'why')}"
    elif kind == "device" and rows(dig(m, "latency", "device")):
        device = rows(dig(m, "latency", "device"))[0]
        figure = f"p50 <b>{fmt(device.get('p50_ms'))} ms</b> on {esc(device.get('device'))}"
        band = f"p90 {fmt(device.get('p90_ms'))} ms"
    elif number(host.get("p50_ms")) is not None:
        figure = f"host p50 <b>{fmt(host['p50_ms'])} ms</b>"
        band = f"p90 {fmt(host.get('p90_ms'))} ms over {fmt(host.get('runs'))} runs, on the build host"
        kind = "host"
    else:
        return ""
    return part("latency", f"{figure} ") + part("evidence", f'<span class="where">{esc(KINDS.get(kind, kind))}'
                                                           f'</span> ({esc(band)})')


def _shipped_count(m: dict) -> dict:
    """The shipped candidate's emulated count (build --emulate-witness), or an empty dict."""
    shipped = dig(m, "quantization", "variant")
    return next((block(r, "emulated") for r in rows(dig(m, "quantization", "candidates")) if r.get("name") == shipped),
                {})


def accuracy_interval(compiled: float, samples: int) -> tuple[float, float]:
    """95 % exact binomial interval of a labelled accuracy (percent) from its count of correct samples."""
    errors = samples - round(compiled * samples / 100)
    low, high = evidence.flip_interval(errors, samples)
    return round(100 * (1 - high), 2), round(100 * (1 - low), 2)


def quality(m: dict) -> str:
    """Accuracy with labels (and its interval), then the fidelity measure that judged the outputs (its interval)."""
    said = []
    acc = block(m, "accuracy")
    if number(acc.get("compiled")) is not None and isinstance(acc.get("samples"), int) and acc["samples"] > 0:
        low, high = accuracy_interval(float(acc["compiled"]), acc["samples"])
        said.append(f"accuracy <b>{fmt(acc['compiled'])} %</b> (95 % interval {fmt(low)}-{fmt(high)} %, exact "
                    f"binomial on {fmt(acc['samples'])} labelled samples; source model {fmt(acc.get('reference'))} %)")
    fid = block(m, "fidelity")
    intervals = block(fid, "intervals")
    for key, name in (("top1_agreement", "top-1 agreement with the source"), ("cosine_p5", "cosine p5 to the source"),
                      ("cosine_mean", "cosine mean to the source"), ("values_sqnr_db", "SQNR of values (dB)")):
        bounds = intervals.get(key)
        if number(fid.get(key)) is not None and isinstance(bounds, list) and len(bounds) == 2:
            flips = f", {fid['flips']} of {fmt(fid.get('samples'))} changed class" if key == "top1_agreement" \
                and isinstance(fid.get("flips"), int) else f", {fmt(fid.get('samples'))} samples judged"
            said.append(f"{name} <b>{fmt(fid[key])}</b> (95 % interval {fmt(bounds[0])}-{fmt(bounds[1])}{flips})")
            break
    else:
        if number(fid.get("top1_agreement")) is not None:
            said.append(f"top-1 agreement with the source <b>{fmt(fid['top1_agreement'])}</b> on "
                        f"{fmt(fid.get('samples'))} samples (no interval recorded)")
    return part("quality", "; ".join(said)) if said else ""


def gains(m: dict) -> list[str]:
    """Against the float32 baseline built and measured in the same run: size, latency by the evidence, accuracy."""
    said = []
    ratio = number(dig(m, "size", "ratio"))
    if ratio:
        said.append(f"{fmt(1 / ratio, 3)}x smaller ({fmt(dig(m, 'size', 'baseline_bytes'))} B float32)")
    kind = _kind(m)
    est, base_est = number(dig(m, "latency", "target_estimate", "p50_ms")), \
        number(dig(m, "baseline", "target_estimate", "p50_ms"))
    if kind == "estimate" and est and base_est:
        said.append(f"{fmt(base_est / est, 3)}x {'faster' if base_est >= est else 'as fast'} by the "
                    f"{esc(dig(m, 'quantization', 'evidence', 'label') or 'estimate')} ({fmt(base_est)} ms float32)")
    speed = number(dig(m, "latency", "speedup_vs_baseline"))
    if speed:
        said.append(f"{fmt(speed, 3)}x the float32 speed on the build host")
    acc = block(m, "accuracy")
    if number(acc.get("compiled")) is not None and number(acc.get("baseline")) is not None:
        said.append(f"accuracy {float(acc['compiled']) - float(acc['baseline']):+.2f} points against float32")
    return said


def next_steps(m: dict) -> list[str]:
    """What to try next, from what this build shows: the device, why int8 hurt, room in the budget, evidence."""
    q, source = block(m, "quantization"), esc(dig(m, "recipe", "source") or "MODEL")
    calib, target = esc(dig(m, "recipe", "calib") or "DATA"), esc(dig(m, "target", "name") or "TARGET")
    steps = []
    if q.get("no_int8") or (q.get("mode") not in (None, "int8") and q.get("diagnosis")):
        steps.append(f"see why int8 hurts this model: <code>edgekiln explain {source} --target {target} --calib "
                     f"{calib}</code> (the per-layer int8 error is below)")
    acc, budget = block(m, "accuracy"), number(dig(m, "accuracy", "budget"))
    drop = number(acc.get("drop"))
    if budget and drop is not None and drop >= 0.5 * budget:
        steps.append(f"the accuracy budget is tight (drop {fmt(drop)} of {fmt(budget)} points): "
                     f"<code>edgekiln explain</code> shows which layers lose it")
    elif not m.get("pruning"):
        steps.append(f"smaller and faster within the budget: <code>edgekiln sweep {source} --target {target} "
                     f"--calib {calib} --prune 0,0.25,0.5 -o sweep/</code> (or <code>--prune auto</code>)")
    if "weak evidence" in str(q.get("reason") or ""):
        steps.append("the judging samples are few for the floor: pass more calibration data")
    if _kind(m) != "device":
        steps.append("measure it on the board: <code>edgekiln deploy BUNDLE --host pi@raspberrypi.local</code> "
                     "(or <code>build --device</code> to choose by timing there)")
    return steps


def answer(m: dict) -> str:
    """The first screen's paragraphs."""
    q = block(m, "quantization")
    variant = esc(q.get("variant") or q.get("mode") or "float32")
    size = number(dig(m, "size", "model_bytes"))
    facts = [f"{fmt(int(size))} B" if size is not None else "", latency(m), quality(m)]
    shipped = part("variant", f"<b>{variant}</b>")
    lead = f'<p class="lead">Ships {shipped}: ' + "; ".join(f for f in facts if f) + ".</p>"
    gained = gains(m)
    lead += f'<p><b>Against float32:</b> {"; ".join(gained)}.</p>' if gained else ""
    steps = next_steps(m)
    return lead + ('<p><b>Try next:</b></p><ul class="next">' + "".join(f"<li>{s}</li>" for s in steps) + "</ul>"
                   if steps else "")
