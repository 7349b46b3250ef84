"""What `edgekiln build` shows: progress while it runs, then the build summary and the candidate table."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from edgekiln.compiler.console import console

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import (
        BudgetSplit,
        CandidateRow,
        Fidelity,
        LayerDrop,
        Manifest,
        OutputFidelity,
        Pruning,
        PruningSearch,
        Quantization,
        TargetEstimate,
    )
    from edgekiln.compiler.pipeline import BuildResult


@contextlib.contextmanager
def progress_display() -> Iterator[Callable[[str], None]]:
    """A spinner naming the current stage; each finished stage is printed with its duration."""
    state: dict = {"stage": None, "start": 0.0}
    with console.status("") as status:

        def advance(stage: str) -> None:
            _finish(state)
            state.update(stage=stage, start=time.perf_counter())
            status.update(f"{stage}...")

        yield advance
        _finish(state)


def _finish(state: dict) -> None:
    if state["stage"]:
        console.print(f"[green]✓[/green] {state['stage']} [dim]({time.perf_counter() - state['start']:.1f} s)[/dim]")


def _print_profile(m: Manifest) -> None:
    """The shipped model's five slowest ops; for a pruned build, each layer's time before and after."""
    from edgekiln.compiler.profile.table import print_layers, print_profile

    if m["profile"].get("ops"):
        print_profile(m["profile"], "where the time goes (shipped model, host; manifest.json `profile`)", top=5)
    measured = (m["pruning"] or {}).get("measured")
    per_layer = measured["per_layer_ms"] if measured else None
    if per_layer:
        print_layers(per_layer, "time per layer before and after pruning (host)", ("unpruned", "pruned"))


def print_build_summary(result: BuildResult) -> None:
    m = result.manifest
    table = Table(title=f"edgekiln build -> {result.output}", show_header=True)
    table.add_column("")
    table.add_column("float32 baseline", justify="right")
    table.add_column(f"bundle ({(m['quantization'] or {}).get('mode', 'none')})", justify="right")
    table.add_column("ratio", justify="right")
    base, host = m["baseline"], m["latency"]["host"]
    table.add_row("size", f"{base['bytes']:,} B", f"{m['model']['bytes']:,} B", _opt(m["size"]["ratio"], "{:.3f}x"))
    speedup = m["latency"]["speedup_vs_baseline"]
    table.add_row(f"host p50 latency ({host['threads']} threads, {host['runtime']})",
                  f"{base['latency']['p50_ms']:.3f} ms", f"{host['p50_ms']:.3f} ms",
                  f"{1 / speedup:.3f}x" if speedup else "-")
    _estimate_row(table, m)
    if "accuracy" in m:
        acc = m["accuracy"]
        table.add_row(f"top-1 accuracy ({acc['samples']} samples; source {acc['reference']:.2f}%)",
                      f"{acc['baseline']:.2f}%", f"{acc['compiled']:.2f}%", f"drop {acc['drop']:.2f} pt")
    pruning = m["pruning"]
    if pruning:
        _pruning_rows(table, pruning)
    fid, bfid = m["fidelity"], base["fidelity"]
    outputs = fid.get("per_output", [])
    several = len(outputs) > 1
    kind = "" if several or not outputs or "kind" not in outputs[0] else f"; a {outputs[0]['kind']} output"
    judged = f"{fid['samples']} {fid.get('samples_from', 'held-back')} samples"
    table.add_row(f"fidelity vs source ({judged}{'; worst output' if several else kind})",
                  fidelity_text(bfid), fidelity_text(fid), "")
    if several:  # every output is judged, each by its kind: a detector's boxes and class scores alike
        for ours, theirs in zip(outputs, bfid.get("per_output", outputs), strict=False):
            of = f" ({ours['kind']})" if "kind" in ours else ""
            table.add_row(f"  output {ours.get('name', '?')}{of}", fidelity_text(theirs), fidelity_text(ours), "")
    console.print(table)
    for fixed in m["source"].get("fixed_inputs", []):
        if fixed["origin"] != "batch":
            console.print(f"input '{fixed['name']}' {fixed['declared']} compiled as {fixed['shape']} "
                          f"(from {_origin(fixed['origin'])})", markup=False)
    if "distillation" in m:  # build --distill: the source was replaced by a student before quantization
        d, p = m["distillation"], m["distillation"]["paired"]
        console.print(f"distilled: a student at width {d['width']} ({d['macs_ratio']:.1%} of the source's MACs), "
                      f"{d['metric']} drop {p['drop']:+.2f} points, 95% interval [{p['interval'][0]:+.2f}, "
                      f"{p['interval'][1]:+.2f}] on {d['judged_on']}", markup=False)
    quantization = m["quantization"]
    if quantization and quantization.get("candidates"):
        print_candidates(quantization)
    for key, why in (quantization or {}).get("not_built", {}).items():
        if key.split(":")[-1] == "int8+qat":  # --qat asked for it: say why it is not in the table
            console.print(f"{key} (--qat) not built: {why}", markup=False)
    _print_profile(m)
    by_length = m.get("text", {}).get("latency_by_length")
    if by_length:  # a model taking any sequence length: each sentence runs at its bucket's
        b = by_length
        console.print(f"sentences at their own length (buckets {m['text'].get('buckets')}): host p50 "
                      f"{b['median_p50_ms']:.3f} ms at the median {b['median_tokens']} tokens (bucket "
                      f"{b['median_bucket']}), {b['longest_p50_ms']:.3f} ms at the longest {b['longest_tokens']} "
                      f"(bucket {b['longest_bucket']}), {b['padded_p50_ms']:.3f} ms padded to {m['text']['seq_len']}",
                      markup=False)
    console.print(f"params {m['source']['params']:,}   MACs {m['model']['macs']:,}   target {m['target']['name']} "
                  f"(est. peak memory {m['memory']['estimated_peak_mb']} MB of {m['memory']['budget_mb']} MB)")
    console.print("[dim]latency is measured on this build host (labelled 'host' in manifest.json), "
                  "not on the target[/dim]")
    for warning in m["warnings"]:
        console.print(f"[bold yellow]WARNING:[/bold yellow] {warning}")
    console.print(f"bundle written to [bold]{result.output}[/bold]; on the device: "
                  "pip install -r requirements.txt && python -m runtime validate")


def _estimate_row(table: Table, m: Manifest) -> None:
    """The target estimate beside the host measurement (labelled: it is a model, not a measurement)."""
    est, base_est = m["latency"].get("target_estimate"), m["baseline"].get("target_estimate")
    if not est or not base_est:
        return
    table.add_row(f"{m['target']['name']} p50 ESTIMATE ({est['threads']} threads; {estimate_range(est)})",
                  f"{base_est['p50_ms']:.3f} ms", f"{est['p50_ms']:.3f} ms",
                  f"{est['p50_ms'] / base_est['p50_ms']:.3f}x")


def estimate_range(est: TargetEstimate) -> str:
    """The estimate's cross-validated range, or "band unknown" for a board with no published figure; said to be a
    lower bound when some ops' MACs or bytes were unknown."""
    low, high = est.get("low_ms"), est.get("high_ms")
    bound = "LOWER BOUND, some ops' MACs unknown; " if est.get("lower_bound") else ""
    if low is None or high is None:
        return f"{bound}band unknown"
    return f"{bound}range {low:.3g}-{high:.3g} ms"


def _pruning_rows(table: Table, p: Pruning) -> None:
    """Pruning's own effect: the unpruned model compiled the same way vs this bundle, measured in this run."""
    measured = p.get("measured")
    kind = p.get("kind")
    encoder = kind in ("attention heads", "encoder layers")
    drop: Pruning | LayerDrop | None = p if kind == "encoder layers" else p.get("layer_drop")
    if drop:
        table.add_row(f"encoder blocks (drop the last {drop['count']})", f"{drop['layers_before']}",
                      f"{drop['layers_after']}", f"{drop['layers_after'] / drop['layers_before']:.3f}x")
    if p.get("kind") == "attention heads":
        before = sum(layer["heads_before"] for layer in p["layers"])
        after = sum(layer["heads_after"] for layer in p["layers"])
        table.add_row(f"attention heads ({len(p['layers'])} layers, prune {p['ratio']:g})", f"{before}", f"{after}",
                      f"{after / before:.3f}x")
    if "macs_before" in p:
        setting = p.get("ratio", p.get("count"))
        table.add_row(f"pruning ({setting}, {p['recovery']['method']}): MACs", f"{p['macs_before']:,}",
                      f"{p['macs_after']:,}", f"{p['macs_ratio']:.3f}x")
    if measured:
        table.add_row("  unpruned vs pruned bundle: size", f"{measured['unpruned_model_bytes']:,} B",
                      f"{measured['model_bytes']:,} B", f"{measured['size_ratio']:.3f}x")
        table.add_row("  unpruned vs pruned bundle: host p50", f"{measured['unpruned_p50_ms']:.3f} ms",
                      f"{measured['p50_ms']:.3f} ms", f"{measured['latency_ratio']:.3f}x")
    if encoder:
        rec = p["recovery"]
        table.add_row(f"  output cosine before / after recovery ({rec['method']})",
                      f"{rec['output_cosine_before']:.4f}", f"{rec['output_cosine_after']:.4f}",
                      f"{rec['samples']} calibration samples")
        _encoder_search_row(table, p.get("search"))
        _budget_split_row(table, p.get("budget_split"))
        return
    acc = p["accuracy"]
    table.add_row(f"  {acc['metric']} before / after recovery (float)", f"{acc['before_recovery']:.2f}%",
                  f"{acc['after_recovery']:.2f}%", f"source {acc['reference']:.2f}%")
    paired = acc.get("paired")
    if paired:
        low, high = paired["interval"]
        table.add_row(f"  paired drop on {paired['samples']} samples (lost / gained)",
                      f"{paired['lost']} / {paired['gained']}", f"{paired['drop']:+.2f} pt",
                      f"95% [{low:+.2f}, {high:+.2f}]")
    _budget_split_row(table, p.get("budget_split"))


def _budget_split_row(table: Table, split: BudgetSplit | None) -> None:
    if split:
        table.add_row("  budget: pruning / quantization / unused", f"{split['pruning_drop']:+.2f} pt",
                      f"{split['quantization_drop']:+.2f} pt", f"{split['unused']:g} of {split['max_drop']:g}")


def _encoder_search_row(table: Table, search: PruningSearch | None) -> None:
    """--drop-layers auto / --prune-heads auto: the probes made, and the setting chosen (manifest: search)."""
    if not search:
        return
    probes, chosen = search["probes"], search["chosen"]
    within = sum(1 for q in probes if q["within_budget"])
    pick = "nothing (none within)" if chosen is None else \
        f"drop {probes[chosen]['drop_layers']}, heads {probes[chosen]['prune_heads']:g}"
    table.add_row(f"  auto: {len(probes)} probes, {within} within budget", pick, "", search["rule"])


COSINE_LEGEND = " cos / cos p5 = cosine to the source per output vector, mean / 5th percentile;"


def _emulated_cells(row: CandidateRow) -> tuple[str, str]:
    counted = row.get("emulated")
    if counted is None:
        return "-", "-"
    return f"{counted['instructions'] / 1e6:.2f}", _opt(counted["estimate_ms"], "{:.3f}")


def emulated_note(q: Quantization) -> str:
    """What the emulated columns are, and whether they decided (quantization.evidence.emulated)."""
    counted = next(row["emulated"] for row in q["candidates"] if "emulated" in row)
    standing = (q.get("evidence") or {}).get("emulated")
    why = f"; {standing['why']}" if standing else ""
    return (f"emul. Minstr = {counted['label']} (one warm invoke, 1 thread, {counted['runtime']}, on "
            f"{counted['board']}); emul. ms = those counts through the target's per-class cycle costs{why}")


def print_candidates(q: Quantization) -> None:
    """The candidate table of a build: every variant measured side by side, the verdict, the reason."""
    from rich import box

    labelled = any(row["accuracy"] is not None for row in q["candidates"])
    evidence = q.get("evidence") or {}
    estimated = any(row.get("estimate_ms") is not None for row in q["candidates"])
    on_device = any(row.get("device_p50_ms") is not None for row in q["candidates"])
    emulated = any("emulated" in row for row in q["candidates"])  # build --emulate-witness: counts beside it
    cosine = any(row.get("cosine_mean") is not None for row in q["candidates"])  # vector outputs
    target = evidence.get("target") or "target"
    table = Table(title=f"candidates (--quantize {q['requested']})", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("variant", "kB", "host p50 ms", *((f"{target} est. ms",) if estimated else ()),
               *(("emul. Minstr", "emul. ms") if emulated else ()),
               *(("device p50 ms",) if on_device else ()), "SQNR", "top-1", *(("cos", "cos p5") if cosine else ()),
               *(("acc %",) if labelled else ()), "parts", "verdict")
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right",
                         no_wrap=column != "verdict")
    for row in q["candidates"]:
        cells = [row["name"], f"{row['bytes'] / 1000:.1f}", _opt(row["p50_ms"], "{:.3f}"),
                 *((_opt(row.get("estimate_ms"), "{:.3f}"),) if estimated else ()),
                 *(_emulated_cells(row) if emulated else ()),
                 *((_opt(row.get("device_p50_ms"), "{:.3f}"),) if on_device else ()),
                 "inf" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}", _opt(row["agreement"], "{:.3f}"),
                 *((_opt(row.get("cosine_mean"), "{:.6f}"), _opt(row.get("cosine_p5"), "{:.6f}")) if cosine else ()),
                 *((_opt(row["accuracy"], "{:.2f}"),) if labelled else ()), _opt(row["pieces"], "{}"),
                 row.get("short", row["verdict"])]
        table.add_row(*cells, style="bold" if row["verdict"] == "chosen" else None)
    console.print(table)
    runs = q["timing"]["runs_per_candidate"]
    console.print(f"[dim]accurate enough = {q['criterion']}; p50 on this host, {q['timing']['threads']} thread(s), "
                  f"candidates timed in turn over {q['timing']['rounds']} rounds ({min(runs.values())}-"
                  f"{max(runs.values())} runs each); SQNR in dB;{COSINE_LEGEND if cosine else ''} parts = XNNPACK "
                  f"partitions; "
                  f"Nx = N times {q.get('yardstick', 'float32')}'s {evidence.get('label', 'host p50')}[/dim]")
    if evidence.get("warning"):
        console.print(f"[bold yellow]WARNING:[/bold yellow] {evidence['warning']}")
    if emulated:
        console.print(f"[dim]{escape(emulated_note(q))}[/dim]")
    raced = q["timing"].get("device")
    if raced:  # build --device: where and how the device column was timed
        console.print(f"[dim]device p50 on {raced['device']} ({raced['cpu']}, {raced['machine']}, {raced['runtime']}, "
                      f"{raced['threads']} thread(s)): timed in turn over {raced['rounds']} rounds[/dim]")
    if q.get("data"):
        console.print(f"[dim]tuned on {q['data']['tuned_on']}; judged on {q['data']['judged_on']}[/dim]")
    kinds = q["candidates"][0].get("kinds") if q["candidates"] else None
    if kinds:  # judged by output kind (evaluate/output_kinds.py): each figure's 95 % interval is in manifest.json
        decided = "; ".join(f"{o['name']} {o['kind']} ({o['decided_by']})" for o in q.get("output_kinds", []))
        console.print(f"[dim]outputs judged as {escape(decided) or ', '.join(kinds)} (--output-kind NAME=KIND "
                      "overrides); 95 % intervals of every figure in manifest.json[/dim]")
    compared = q.get("formats") or {}
    if compared.get("note"):
        console.print(f"[dim]{compared['note']}[/dim]")
    for model_format, why in {**compared.get("left_out", {}), **compared.get("failed", {})}.items():
        console.print(f"[dim]{model_format} not compared: {why}[/dim]")
    for variant, why in q.get("failed", {}).items():  # a candidate that failed dropped out of the table
        console.print(f"[yellow]{variant} failed and is not in the table:[/yellow] {escape(why)}")
    console.print(f"chosen: {q['reason']}")
    style = "bold yellow" if q.get("no_int8") else "default"
    console.print(f"[{style}]decided by:[/{style}] {escape(decision_line(q))}")
    if q.get("opset"):  # an old ONNX model: its opset raised for per-channel int8, or weights per tensor
        facts = q["opset"]
        console.print(f"[dim]int8 of this opset-{facts['source']} model: {facts['weights']} weights at opset "
                      f"{facts['quantized']} ({escape(facts['why'])})[/dim]")
    for row in q["candidates"]:  # what a refinement that changes no op did (_what_it_did)
        for note in _what_it_did(row["name"].split(":")[-1], row.get("notes") or []):
            console.print(f"[dim]{row['name']}: {escape(note)}[/dim]")
    diagnosis = q.get("diagnosis") or {}
    of = f"plain {diagnosis['format']} int8" if compared.get("note") and diagnosis.get("format") else "plain int8"
    for cause in diagnosis.get("causes", []):
        console.print(f"[dim]{of}:[/dim] {cause}")


def decision_line(q: Quantization) -> str:
    """Which evidence decided, and what host timing alone would have chosen; first, a format none of whose int8
    candidates could be built (search/failures.py)."""
    failed = q.get("no_int8")
    return f"{failed} {_evidence_line(q)}" if failed else _evidence_line(q)


def _evidence_line(q: Quantization) -> str:
    from edgekiln.compiler.search.choose import margin_text

    evidence = q.get("evidence") or {"kind": "host", "label": "host p50"}
    warning = evidence.get("warning")
    if evidence["kind"] == "host":
        return "host timing: " + warning if warning else \
            "host timing (the target shares this host's arch, or has no estimate)"
    host = evidence.get("host_would_choose")
    agrees = "" if host is None else ("; host timing agrees" if host == q["variant"] else
                                      f"; host timing would have chosen {host}")
    counted = next((row["emulated"] for row in q["candidates"] if "emulated" in row), None)
    what = f": {counted['label']}" if evidence["kind"] == "emulated" and counted else ""
    return f"chosen by the {evidence['label']}{what} (margin {margin_text(evidence['margin'])}){agrees}"


def _origin(origin: str) -> str:
    return "--input-shape" if origin == "input_shape" else f"the {origin}'s sample shape; --input-shape sets it"


def _opt(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def fidelity_text(f: Fidelity | OutputFidelity) -> str:
    """SQNR and top-1 agreement in a few words."""
    return figures_text(f.get("sqnr_db"), f.get("top1_agreement"), f.get("cosine_mean"), f.get("cosine_p5"))


def figures_text(sqnr_db: float | None, agreement: float | None, cosine_mean: float | None = None,
                 cosine_p5: float | None = None) -> str:
    """'SQNR 31.2 dB top-1 0.990 cosine 0.9991 (p5 0.998)': the figures a model has (SQNR None: exact)."""
    sqnr = "inf" if sqnr_db is None else f"{sqnr_db:.1f} dB"
    agree = "" if agreement is None else f" top-1 {agreement:.3f}"
    cos = "" if cosine_mean is None or cosine_p5 is None else f" cosine {cosine_mean:.6g} (p5 {cosine_p5:.6g})"
    return f"SQNR {sqnr}{agree}{cos}"


def _what_it_did(variant: str, notes: list[str]) -> list[str]:
    """The notes of a row the summary repeats under the table: int8+fastpath's first (what it respelled, the
    XNNPACK pieces before and after), int8+adaround's AdaRound line (the weights it moved, and whether any judged
    output changed), and any row's cross-fitting stand-ins (a fold that did not build the variant judged another
    in its place, search/crossfit.py): figures equal to another row's are then explained, not puzzling."""
    said = notes[:1] if variant == "int8+fastpath" else \
        [n for n in notes if n.startswith("AdaRound: ")] if variant == "int8+adaround" else []
    stand_ins = [n.split("; ", 1)[1] for n in notes if n.startswith("cross-fitted: ") and "; " in n]
    return said + [f"held-back figures partly another variant's: {s}" for s in stand_ins]
