"""The headline: size, host latency, target estimate, device latency and accuracy / fidelity, each
against the float32 baseline and labelled with where it was measured."""

from __future__ import annotations

from edgekiln.compiler.report.answer import answer
from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows
from edgekiln.compiler.report.page import Section, esc, fmt, num, where


def _card(title: str, big: str, lines: list[str], label: str) -> str:
    detail = "".join(f'<span class="label">{line}</span>' for line in lines if line)
    return f'<div class="card"><span class="label">{esc(title)} {where(label)}</span><div class="big">{big}</div>' \
           f"{detail}</div>"


def _size(m: dict) -> str | None:
    size = m.get("size")
    if not isinstance(size, dict) or number(size.get("model_bytes")) is None:
        return None
    lines = [f"{num(size['ratio'], 'size.ratio')}x the float32 baseline "
             f"({num(size.get('baseline_bytes'), 'size.baseline_bytes')} B)" if number(size.get("ratio")) else "",
             f"source file {fmt(size.get('source_bytes'))} B" if size.get("source_bytes") else ""]
    return _card("Model size", f"{num(size['model_bytes'], 'size.model_bytes')} B", lines, "file")


def _host(m: dict) -> str | None:
    host = dig(m, "latency", "host")
    if number(dig(host, "p50_ms")) is None:
        return None
    base = dig(m, "baseline", "latency", "p50_ms")
    speed = dig(m, "latency", "speedup_vs_baseline")
    lines = [f"float32 baseline {num(base, 'baseline.latency.p50_ms')} ms" if base is not None else "",
             f"{num(speed, 'latency.speedup_vs_baseline')}x the float32 speed" if speed is not None else "",
             esc(f"{host.get('threads')} threads, {host.get('runtime')} {host.get('runtime_version')}, "
                 f"{host.get('cpu')}")]
    return _card("Host latency p50", f"{num(host['p50_ms'], 'latency.host.p50_ms')} ms", lines, "host-measured")


def _estimate(m: dict) -> str | None:
    est = dig(m, "latency", "target_estimate")
    if number(dig(est, "p50_ms")) is None:
        return None
    base = dig(m, "baseline", "target_estimate", "p50_ms")
    known = number(est.get("low_ms")) is not None and number(est.get("high_ms")) is not None
    band = f"range {fmt(est.get('low_ms'))} - {fmt(est.get('high_ms'))} ms (leave-one-out band)" if known \
        else "band unknown: no published figure for this board"
    lines = [esc(f"{band}, {est.get('threads')} threads"),
             f"float32 baseline {num(base, 'baseline.target_estimate.p50_ms')} ms" if base is not None else "",
             esc(est.get("basis", ""))]
    target = dig(m, "target", "name") or "target"
    return _card(f"{target} estimate p50", f"{num(est['p50_ms'], 'latency.target_estimate.p50_ms')} ms", lines,
                 "estimate")


def _devices(m: dict, measurements: list[dict]) -> list[str]:
    """One card per device: measurements/*.json first, then manifest entries without a file."""
    cards, seen = [], set()
    for r in measurements:
        p50 = dig(r, "latency", "p50_ms")
        if r.get("status") == "ok" and number(p50) is not None:
            seen.add(r.get("device_id"))
            device = block(r, "device")
            lines = [esc(", ".join(str(x) for x in (device.get("board"), device.get("cpu")) if x)),
                     esc(f"measured {r.get('measured_utc')}")]
            cards.append(_card(f"Device {r.get('device_id')} p50", f"{num(p50, 'device.p50_ms')} ms", lines,
                               "device-measured"))
    for entry in rows(dig(m, "latency", "device")):
        if entry.get("device") not in seen and number(entry.get("p50_ms")) is not None:
            cards.append(_card(f"Device {entry.get('device')} p50", f"{num(entry['p50_ms'], 'device.p50_ms')} ms",
                               [esc(entry.get("board") or "")], "device-measured"))
    return cards


def _quality(m: dict) -> str | None:
    acc = m.get("accuracy")
    if isinstance(acc, dict) and number(acc.get("compiled")) is not None:
        lines = [f"source model {num(acc['reference'], 'accuracy.reference')} %" if "reference" in acc else "",
                 f"float32 baseline {num(acc['baseline'], 'accuracy.baseline')} %" if "baseline" in acc else "",
                 f"drop {num(acc.get('drop'), 'accuracy.drop')} points on {fmt(acc.get('samples'))} labelled samples"]
        return _card(f"Accuracy ({acc.get('metric', 'top-1')})", f"{num(acc['compiled'], 'accuracy.compiled')} %",
                     lines, "host-measured")
    fid = m.get("fidelity")
    if not isinstance(fid, dict) or "top1_agreement" not in fid and "sqnr_db" not in fid:
        return None
    base = dig(m, "baseline", "fidelity", "sqnr_db")
    lines = [f"SQNR {num(fid.get('sqnr_db'), 'fidelity.sqnr_db')} dB vs the source model",
             f"float32 baseline SQNR {num(base, 'baseline.fidelity.sqnr_db')} dB" if base is not None else "",
             f"on {fmt(fid.get('samples'))} {fid.get('samples_from', 'held-back')} samples"]
    agreement = fid.get("top1_agreement")
    big = num(agreement, "fidelity.top1_agreement") if agreement is not None else "–"
    return _card("Top-1 agreement with the source", big, lines, "host-measured")


def headline(inputs: ReportInputs) -> Section | None:
    m = inputs.manifest
    cards = [c for c in (_size(m), _host(m), _estimate(m)) if c] + _devices(m, inputs.measurements)
    quality = _quality(m)
    cards += [quality] if quality else []
    if not cards:
        return None
    return Section("headline", "What ships, and why", _what(m) + f'<div class="cards">{"".join(cards)}</div>'
                   + _why(m))


def _what(m: dict) -> str:
    """Which variant ships, what it gained and what to try next; a whole int8 family failing comes first."""
    failed = dig(m, "quantization", "no_int8")  # a whole candidate family failed (search/failures.py): not a footnote
    loud = f'<p class="warn"><b>{esc(failed)}</b></p>' if isinstance(failed, str) and failed else ""
    return loud + answer(m)


def _why(m: dict) -> str:
    """The rule's reason in the build's own words (long: every candidate's verdict), folded."""
    q = m["quantization"] if isinstance(m.get("quantization"), dict) else {}
    evidence = dig(q, "evidence", "label")
    chosen = f" Chosen by the {esc(evidence)}." if evidence else ""
    reason = q.get("reason")
    return f'<details><summary>Why this one: the rule, candidate by candidate</summary><p>{esc(reason)}</p></details>' \
        f'<p class="note">{chosen}</p>' if reason else (f'<p class="note">{chosen}</p>' if chosen else "")
