"""What the CLI shows: build progress, the build summary, the target table, `inspect` output."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import EdgekilnError

# Piped output (logs, CI) gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


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


def print_build_summary(result: object) -> None:
    m = result.manifest  # type: ignore[attr-defined]
    table = Table(title=f"edgekiln build -> {result.output}", show_header=True)  # type: ignore[attr-defined]
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
    if m.get("pruning"):
        _pruning_rows(table, m)
    fid, bfid = m["fidelity"], base["fidelity"]
    several = len(fid.get("per_output", [])) > 1
    table.add_row(f"fidelity vs source ({fid['samples']} held-back samples{'; worst output' if several else ''})",
                  _fid(bfid), _fid(fid), "")
    if several:  # every output is judged: a detector's boxes and class scores alike
        for ours, theirs in zip(fid["per_output"], bfid.get("per_output", fid["per_output"]), strict=False):
            table.add_row(f"  output {ours.get('name', '?')}", _fid(theirs), _fid(ours), "")
    console.print(table)
    for fixed in m["source"].get("fixed_inputs", []):
        if fixed["origin"] != "batch":
            console.print(f"input '{fixed['name']}' {fixed['declared']} compiled as {fixed['shape']} "
                          f"(from {_origin(fixed['origin'])})", markup=False)
    if (m["quantization"] or {}).get("candidates"):
        print_candidates(m["quantization"])
    console.print(f"params {m['source']['params']:,}   MACs {m['model']['macs']:,}   target {m['target']['name']} "
                  f"(est. peak memory {m['memory']['estimated_peak_mb']} MB of {m['memory']['budget_mb']} MB)")
    console.print("[dim]latency is measured on this build host (labelled 'host' in manifest.json), "
                  "not on the target[/dim]")
    for warning in m["warnings"]:
        console.print(f"[bold yellow]WARNING:[/bold yellow] {warning}")
    console.print(f"bundle written to [bold]{result.output}[/bold]; on the device: "  # type: ignore[attr-defined]
                  "pip install -r requirements.txt && python -m runtime validate")


def _estimate_row(table: Table, m: dict) -> None:
    """The target estimate beside the host measurement (labelled: it is a model, not a measurement)."""
    est, base_est = m["latency"].get("target_estimate"), m["baseline"].get("target_estimate")
    if not est or not base_est:
        return
    table.add_row(f"{m['target']['name']} p50 ESTIMATE ({est['threads']} threads; range {est['low_ms']:.3g}-"
                  f"{est['high_ms']:.3g} ms)", f"{base_est['p50_ms']:.3f} ms", f"{est['p50_ms']:.3f} ms",
                  f"{est['p50_ms'] / base_est['p50_ms']:.3f}x")


def estimate_error(t: object) -> str:
    """The targets table's cell: the anchor error of a target's estimate, or why there is none."""
    e = t.estimate  # type: ignore[attr-defined]
    if e is None:
        return "no estimate"
    if not e.anchors:
        return f"no anchor (derived from {e.derived_from})"
    held = [a for a in e.anchors if not a.fitted]
    worst = max(abs(a.error) for a in held) if held else 0.0
    return (f"{e.error_band[0] * 100:+.0f}%..{e.error_band[1] * 100:+.0f}% on {len(e.anchors)} anchors "
            f"({len(held)} held out: max {worst * 100:.0f}%)")


def _pruning_rows(table: Table, m: dict) -> None:
    """Pruning's own effect: the unpruned model compiled the same way vs this bundle, measured in this run."""
    p = m["pruning"]
    measured = p["measured"]
    table.add_row(f"pruning ({p['ratio']}, {p['recovery']['method']}): MACs", f"{p['macs_before']:,}",
                  f"{p['macs_after']:,}", f"{p['macs_ratio']:.3f}x")
    if measured:
        table.add_row("  unpruned vs pruned bundle: size", f"{measured['unpruned_model_bytes']:,} B",
                      f"{measured['model_bytes']:,} B", f"{measured['size_ratio']:.3f}x")
        table.add_row("  unpruned vs pruned bundle: host p50", f"{measured['unpruned_p50_ms']:.3f} ms",
                      f"{measured['p50_ms']:.3f} ms", f"{measured['latency_ratio']:.3f}x")
    acc = p["accuracy"]
    table.add_row(f"  {acc['metric']} before / after recovery (float)", f"{acc['before_recovery']:.2f}%",
                  f"{acc['after_recovery']:.2f}%", f"source {acc['reference']:.2f}%")


def print_candidates(q: dict) -> None:
    """The candidate table of a build: every variant measured side by side, the verdict, the reason."""
    from rich import box

    labelled = any(row["accuracy"] is not None for row in q["candidates"])
    table = Table(title=f"candidates (--quantize {q['requested']})", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("variant", "kB", "p50 ms", "SQNR", "top-1", *(("acc %",) if labelled else ()), "parts", "verdict")
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "verdict") else "right",
                         no_wrap=column != "verdict")
    for row in q["candidates"]:
        cells = [row["name"], f"{row['bytes'] / 1000:.1f}", f"{row['p50_ms']:.3f}",
                 "inf" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}", _opt(row["agreement"], "{:.3f}"),
                 *((_opt(row["accuracy"], "{:.2f}"),) if labelled else ()), _opt(row["pieces"], "{}"),
                 row.get("short", row["verdict"])]
        table.add_row(*cells, style="bold" if row["verdict"] == "chosen" else None)
    console.print(table)
    runs = q["timing"]["runs_per_candidate"]
    console.print(f"[dim]accurate enough = {q['criterion']}; p50 on this host, {q['timing']['threads']} thread(s), "
                  f"candidates timed in turn over {q['timing']['rounds']} rounds ({min(runs.values())}-"
                  f"{max(runs.values())} runs each); SQNR in dB; parts = XNNPACK partitions; "
                  f"Nx = N times {q.get('yardstick', 'float32')}'s p50[/dim]")
    if q.get("data"):
        console.print(f"[dim]tuned on {q['data']['tuned_on']}; judged on {q['data']['judged_on']}[/dim]")
    compared = q.get("formats") or {}
    if compared.get("note"):
        console.print(f"[dim]{compared['note']}[/dim]")
    for model_format, why in {**compared.get("left_out", {}), **compared.get("failed", {})}.items():
        console.print(f"[dim]{model_format} not compared: {why}[/dim]")
    for variant, why in q.get("failed", {}).items():  # a candidate that failed dropped out of the table
        console.print(f"[yellow]{variant} failed and is not in the table:[/yellow] {escape(why)}")
    console.print(f"chosen: {q['reason']}")
    diagnosis = q.get("diagnosis") or {}
    of = f"plain {diagnosis['format']} int8" if compared.get("note") and diagnosis.get("format") else "plain int8"
    for cause in diagnosis.get("causes", []):
        console.print(f"[dim]{of}:[/dim] {cause}")


def _origin(origin: str) -> str:
    return "--input-shape" if origin == "input_shape" else f"the {origin}'s sample shape; --input-shape sets it"


def _opt(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def print_explanation(result: dict) -> None:
    """`edgekiln explain`: the likely causes first, then the ranked layers, coverage and rewrites."""
    d, measured = result["diagnosis"], result["measured"]
    console.print(f"[bold]{result['source']}[/bold] on {result['target']}: plain int8 ({d['of']})")
    base, q = measured["float32"], measured["int8"]
    console.print(f"int8 vs float32 on this host ({result['threads']} thread(s)): p50 {q['p50_ms']:.3f} ms vs "
                  f"{base['p50_ms']:.3f} ms ({q['p50_ms'] / base['p50_ms']:.2f}x), size {q['bytes']:,} B vs "
                  f"{base['bytes']:,} B; fidelity "
                  f"{_fid({'sqnr_db': q['sqnr_db'], 'top1_agreement': q['agreement']})}")
    console.print("[bold]likely causes, worst first:[/bold]")
    for k, cause in enumerate(d["causes"], 1):
        console.print(f"  {k}. {cause}")
    if "nodes" in d:  # ONNX: nodes ranked by the error they add; no XNNPACK, no Keras rewrites
        _print_nodes(d, q)
        return
    table = Table(title=f"per-layer int8 error ({d['samples']} samples; each op against its float op, same input)")
    for column in ("layer", "op", "share", "channel noise/signal", "SQNR", "RMSE / step"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for e in d["layers"]:
        table.add_row(e["layer"], e["op"], f"{e['share']:.0%}", f"{e['channel_nsr']:.4f}",
                      "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f} dB", f"{e['rmse_over_scale']:.2f}")
    console.print(table)
    c = d["coverage"]
    outside = ", ".join(f"{op} x{n}" for op, n in c["outside_fast_path"].items()) or "none"
    console.print(f"fast path ({c['library']}): {c['fast_path_nodes']}/{c['nodes']} nodes in "
                  f"{c['fast_path_pieces']} piece(s); outside it: {outside}")
    applied = (result["rewrites"] or {}).get("applied", [])
    console.print("rewrites that apply: " + ("; ".join(applied) if applied else "none"))
    console.print("`edgekiln build` (--quantize auto) builds and measures the variants that address these.")


def _print_nodes(d: dict, int8: dict) -> None:
    table = Table(title=f"per-node int8 error ({d['samples']} samples; {d['method']})")
    for column in ("node", "op", "share", "SQNR at its output"):
        table.add_column(column, justify="left" if column in ("node", "op") else "right")
    for e in d["nodes"]:
        table.add_row(e["name"], e["op"], f"{e['share']:.0%}",
                      "exact" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f} dB")
    console.print(table)
    for note in int8.get("notes", []):
        console.print(f"[dim]int8: {note}[/dim]")
    console.print("`edgekiln build` (--quantize auto) builds and measures the variants that address these "
                  "(calibration methods, nodes kept in float, and the TFLite variants where the target runs both).")


def _fid(f: dict) -> str:
    sqnr = "inf" if f.get("sqnr_db") is None else f"{f['sqnr_db']:.1f} dB"
    agree = f" top-1 {f['top1_agreement']:.3f}" if "top1_agreement" in f else ""
    return f"SQNR {sqnr}{agree}"


def print_targets() -> None:
    import targets

    table = Table(title="edgekiln targets")
    for column in ("name", "arch", "cpu", "RAM MB (budget)", "Python", "tflite interpreter", "estimate error"):
        table.add_column(column, no_wrap=column in ("name", "arch", "Python", "estimate error"))
    for name in targets.names():
        t = targets.load(name)
        table.add_row(t.name, t.arch, t.cpu, f"{t.ram_mb} ({t.ram_budget_mb})", t.python, t.tflite_interpreter,
                      estimate_error(t))
    console.print(table)
    console.print("[dim]estimate error: (estimate - published) / published on each target's anchors "
                  "(XNNPACK README MobileNets; bench/fit_estimate.py)[/dim]")


def inspect_path(path: Path, unsafe: bool, input_shapes: dict | None = None) -> None:
    """Dispatch on what `path` is."""
    if path.is_dir() and (path / "manifest.json").is_file():
        _inspect_bundle(path)
    elif path.suffix == ".tflite" and path.is_file():
        _inspect_model_bytes(path.name, path.read_bytes())
    elif path.suffix.lower() == ".onnx" and path.is_file():
        _inspect_onnx(path, input_shapes)
    else:
        _inspect_source(path, unsafe)


def _inspect_bundle(path: Path) -> None:
    import runtime

    try:
        _print_bundle(path, runtime.read_manifest(path))
    except runtime.BundleError as exc:
        raise EdgekilnError(str(exc)) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # valid JSON, not the manifest schema
        raise EdgekilnError(f"{path / 'manifest.json'} is not a complete edgekiln manifest "
                            f"({type(exc).__name__}: {exc})", "rebuild the bundle with `edgekiln build`") from None


def _print_bundle(path: Path, m: dict) -> None:
    from .deploy.records import describe as describe_devices

    model, host = m["model"], m["latency"]["host"]
    console.print(f"[bold]{path}[/bold]: {m['source']['file_name']} -> {model['file']} for {m['target']['name']}, "
                  f"built {m['created_utc']} by edgekiln {m['compiler']['version']}")
    console.print(f"quantization {_variant_line(m['quantization'] or {})}; size {model['bytes']:,} B "
                  f"({m['size']['ratio']:.3f}x float32 baseline); params {model['params']:,}; MACs {model['macs']:,}")
    console.print(f"host latency p50 {host['p50_ms']} ms ({host['threads']} threads, {host['runtime']} "
                  f"{host['runtime_version']}, {host['cpu']})  \\[host-measured]")
    estimate = m["latency"].get("target_estimate")
    if estimate:
        console.print(f"{m['target']['name']} estimate p50 {estimate['p50_ms']} ms (range {estimate['low_ms']}-"
                      f"{estimate['high_ms']} ms; {estimate.get('basis', '')})  \\[{estimate['method']}]")
    for line in describe_devices(path, m):  # measurements/*.json and the manifest's latency.device
        console.print(line, markup=False, soft_wrap=True)  # one device, one line, whatever the width
    if "accuracy" in m:
        a = m["accuracy"]
        console.print(f"accuracy {a['compiled']}% vs source {a['reference']}% "
                      f"(drop {a['drop']} pt, {a['samples']} samples)")
    if m.get("pruning"):
        p = m["pruning"]
        speed = (p.get("measured") or {}).get("speedup")
        console.print(f"pruning {p['ratio']} ({p['criterion']}, recovery {p['recovery']['method']}): MACs "
                      f"{p['macs_before']:,} -> {p['macs_after']:,}" + (f", {speed}x faster than unpruned" if speed
                                                                          else ""))
    console.print(f"fidelity {json.dumps({k: v for k, v in m['fidelity'].items() if k != 'per_output'})}")
    _io_table(model["inputs"], model["outputs"])
    for warning in m.get("warnings", []):
        console.print(f"[bold yellow]WARNING:[/bold yellow] {warning}")


def _variant_line(q: dict) -> str:
    """The mode, and with a candidate search the shipped variant and what it was chosen from."""
    text = q.get("mode", "none")
    if q.get("variant"):
        compared = (q.get("formats") or {}).get("compared")
        among = f" from {len(q['candidates'])} candidates" + (f", formats {' and '.join(compared)} compared on the "
                                                             "build host" if compared else "")
        text += f" (variant {q['variant']}, chosen{among})"
    return text


def _inspect_model_bytes(name: str, model_bytes: bytes) -> None:
    from runtime import Model

    from .analyze import tflite_stats

    try:
        model = Model("tflite", model_bytes)
    except ValueError as exc:
        raise EdgekilnError(f"{name} is not a readable .tflite model: {exc}") from exc
    stats = tflite_stats(model_bytes)
    console.print(f"[bold]{name}[/bold]: {len(model_bytes):,} B, params {stats.params:,}, MACs {stats.macs:,}")
    _io_table([i.to_dict() for i in model.inputs], [o.to_dict() for o in model.outputs])
    console.print("ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(stats.ops.items())))


def _inspect_onnx(path: Path, input_shapes: dict | None = None) -> None:
    """An ONNX model as the compiler loads it (checked, batch fixed to 1, --input-shape applied), with its
    static facts."""
    import tempfile

    from runtime import Model

    from .analyze_onnx import onnx_stats
    from .graph import onnx as onnx_graph

    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = onnx_graph.load(path, Path(work), input_shapes=input_shapes or None)
    model_bytes = graph.model.SerializeToString()
    stats, model = onnx_stats(model_bytes), Model("onnx", model_bytes)
    opset = next(o.version for o in graph.model.opset_import if o.domain in ("", "ai.onnx"))
    console.print(f"[bold]{path.name}[/bold]: ONNX opset {opset}, {path.stat().st_size:,} B, "
                  f"params {stats.params:,}, MACs {stats.macs:,} (batch 1)")
    if graph.constants_normalised:
        console.print(f"{graph.constants_normalised} Constant nodes hold tensors (moved to initializers)")
    for fixed in graph.fixed_inputs:
        if fixed.origin != "batch":
            console.print(fixed.describe(), markup=False)
    _io_table([i.to_dict() for i in model.inputs], [o.to_dict() for o in model.outputs])
    console.print("ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(stats.ops.items())))


def _inspect_source(path: Path, unsafe: bool) -> None:
    import tempfile

    from .emit import tflite
    from .graph import detect_format
    from .graph import keras as keras_graph
    from .recipe import Quantize

    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = keras_graph.load(path, detect_format(path), Path(work), unsafe=unsafe)
        float_bytes = tflite.convert(graph.saved_model_dir, Quantize.none, None)
    console.print(f"source {path} ({graph.source_format}), {graph.params:,} params; as float32 TFLite:")
    _inspect_model_bytes(path.name, float_bytes)


def _io_table(inputs: list[dict], outputs: list[dict]) -> None:
    table = Table(show_header=True)
    for column in ("", "name", "shape", "dtype", "scale", "zero point"):
        table.add_column(column)
    for kind, items in (("input", inputs), ("output", outputs)):
        for t in items:
            table.add_row(kind, t["name"], str(t["shape"]), t["dtype"], f"{t['scale']:.6g}", str(t["zero_point"]))
    console.print(table)
