"""`edgekiln inspect PATH`: a bundle's manifest summary, or a model's inputs/outputs, params, MACs and ops."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from edgekiln.compiler.console import console
from edgekiln.compiler.errors import EdgekilnError

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import Manifest, Quantization


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
    from edgekiln import runtime
    from edgekiln.compiler import manifest_schema

    try:  # the runtime's checks (the keys a device relies on), then this schema's
        _print_bundle(path, manifest_schema.checked(runtime.read_manifest(path), str(path / "manifest.json")))
    except runtime.BundleError as exc:
        raise EdgekilnError(str(exc)) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # valid JSON, not the manifest schema
        raise EdgekilnError(f"{path / 'manifest.json'} is not a complete edgekiln manifest "
                            f"({type(exc).__name__}: {exc})", "rebuild the bundle with `edgekiln build`") from None


def _print_bundle(path: Path, m: Manifest) -> None:
    from edgekiln.compiler.deploy.records import describe as describe_devices

    model, host = m["model"], m["latency"]["host"]
    console.print(f"[bold]{path}[/bold]: {m['source']['file_name']} -> {model['file']} for {m['target']['name']}, "
                  f"built {m['created_utc']} by edgekiln {m['compiler']['version']}")
    console.print(f"quantization {_variant_line(m['quantization'] or {})}; size {model['bytes']:,} B "
                  f"({m['size']['ratio']:.3f}x float32 baseline); params {model['params']:,}; "
                  f"MACs {count(model['macs'])}")
    console.print(f"host latency p50 {host['p50_ms']} ms ({host['threads']} threads, {host['runtime']} "
                  f"{host['runtime_version']}, {host['cpu']})  \\[host-measured]")
    estimate = m["latency"].get("target_estimate")
    if estimate:
        known = estimate.get("low_ms") is not None and estimate.get("high_ms") is not None
        band = f"range {estimate['low_ms']}-{estimate['high_ms']} ms" if known else "band unknown"
        console.print(f"{m['target']['name']} estimate p50 {estimate['p50_ms']} ms ({band}; "
                      f"{estimate.get('basis', '')})  \\[{estimate['method']}]")
    _candidate_lines(m["quantization"] or {})
    for line in describe_devices(path, m):  # measurements/*.json and the manifest's latency.device
        console.print(line, markup=False, soft_wrap=True)  # one device, one line, whatever the width
    if "accuracy" in m:
        a = m["accuracy"]
        console.print(f"accuracy {a['compiled']}% vs source {a['reference']}% "
                      f"(drop {a['drop']} pt, {a['samples']} samples)")
    p = m["pruning"]
    if p:
        gain = p.get("measured")
        speed = gain["speedup"] if gain else None
        console.print(f"pruning {p['ratio']} ({p['criterion']}, recovery {p['recovery']['method']}): MACs "
                      f"{count(p['macs_before'])} -> {count(p['macs_after'])}"
                      + (f", {speed}x faster than unpruned" if speed else ""))
    console.print(f"fidelity {json.dumps({k: v for k, v in m['fidelity'].items() if k not in ('per_output', 'how')})}")
    _io_table(model["inputs"], model["outputs"])
    for warning in m.get("warnings", []):
        console.print(f"[bold yellow]WARNING:[/bold yellow] {warning}")


def _candidate_lines(q: Quantization) -> None:
    """Per candidate, the host p50 beside the target's estimate (and device p50), then the decision line."""
    from edgekiln.compiler.summary import decision_line

    if len(q.get("candidates", [])) < 2:
        return
    target = (q.get("evidence") or {}).get("target") or "target"
    for row in q["candidates"]:
        device = f", {target} device p50 {row['device_p50_ms']} ms" if row.get("device_p50_ms") is not None else ""
        console.print(f"  {row['name']}: host p50 {row['p50_ms']} ms, {target} estimate {row.get('estimate_ms')} ms"
                      f"{device}; {row.get('short', row['verdict'])}", markup=False)
    console.print(f"  decided by: {decision_line(q)}", markup=False)


def _variant_line(q: Quantization) -> str:
    """The mode, and with a candidate search the shipped variant and what it was chosen from."""
    text = q.get("mode", "none")
    if q.get("variant"):
        compared = (q.get("formats") or {}).get("compared")
        among = f" from {len(q['candidates'])} candidates" + (f", formats {' and '.join(compared)} compared on the "
                                                             "build host" if compared else "")
        text += f" (variant {q['variant']}, chosen{among})"
    return text


def _inspect_model_bytes(name: str, model_bytes: bytes) -> None:
    from edgekiln.compiler.analyze.tflite_stats import tflite_stats
    from edgekiln.runtime import Model

    try:
        model = Model("tflite", model_bytes)
    except ValueError as exc:
        raise EdgekilnError(f"{name} is not a readable .tflite model: {exc}") from exc
    stats = tflite_stats(model_bytes)
    console.print(f"[bold]{name}[/bold]: {len(model_bytes):,} B, params {stats.params:,}, MACs {count(stats.macs)}")
    _io_table([i.to_dict() for i in model.inputs], [o.to_dict() for o in model.outputs])
    console.print("ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(stats.ops.items())))


def _inspect_onnx(path: Path, input_shapes: dict | None = None) -> None:
    """An ONNX model as the compiler loads it (checked, batch fixed to 1, --input-shape applied), with its
    static facts."""
    import tempfile

    from edgekiln.compiler.analyze.onnx_stats import onnx_stats
    from edgekiln.compiler.graph import onnx_graph
    from edgekiln.runtime import Model

    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = onnx_graph.load(path, Path(work), input_shapes=input_shapes or None)
    model_bytes = graph.model.SerializeToString()
    stats, model = onnx_stats(model_bytes), Model("onnx", model_bytes)
    opset = next(o.version for o in graph.model.opset_import if o.domain in ("", "ai.onnx"))
    console.print(f"[bold]{path.name}[/bold]: ONNX opset {opset}, {path.stat().st_size:,} B, "
                  f"params {stats.params:,}, MACs {count(stats.macs)} (batch 1)")
    if graph.constants_normalised:
        console.print(f"{graph.constants_normalised} Constant nodes hold tensors (moved to initializers)")
    for fixed in graph.fixed_inputs:
        if fixed.origin != "batch":
            console.print(fixed.describe(), markup=False)
    _io_table([i.to_dict() for i in model.inputs], [o.to_dict() for o in model.outputs])
    console.print("ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(stats.ops.items())))


def _inspect_source(path: Path, unsafe: bool) -> None:
    import tempfile

    from edgekiln.compiler.emit import tflite_convert
    from edgekiln.compiler.graph import detect_format, keras_graph
    from edgekiln.compiler.recipe import Quantize

    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = keras_graph.load(path, detect_format(path), Path(work), unsafe=unsafe)
        float_bytes = tflite_convert.convert(graph.saved_model_dir, Quantize.none, None)
    console.print(f"source {path} ({graph.source_format}), {graph.params:,} params; as float32 TFLite:")
    _inspect_model_bytes(path.name, float_bytes)


def _io_table(inputs: Sequence[Mapping[str, object]], outputs: Sequence[Mapping[str, object]]) -> None:
    table = Table(show_header=True)
    for column in ("", "name", "shape", "dtype", "scale", "zero point"):
        table.add_column(column)
    for kind, items in (("input", inputs), ("output", outputs)):
        for t in items:
            table.add_row(kind, str(t["name"]), str(t["shape"]), str(t["dtype"]), f"{t['scale']:.6g}",
                          str(t["zero_point"]))
    console.print(table)


def count(value: int | None) -> str:
    """A count with thousands separators, or "unknown" (a figure the analysis could not make: how.unknown)."""
    return "unknown" if value is None else f"{value:,}"
