"""The manifest (schema_version 1): a build's measurements as the versioned sections of manifest.json.

`build` assembles every section from the stages' values; `assemble` checks the contract keys; `dumps`
writes JSON that any reader accepts (no NaN, no Infinity).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgekiln._version import __version__
from edgekiln.compiler.data import NOT_HELD_BACK
from edgekiln.compiler.device import compat, estimate
from edgekiln.compiler.manifest_schema import (
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    Baseline,
    CoverageFacts,
    Golden,
    HostLatency,
    Latency,
    Manifest,
    MeasuredGain,
    Memory,
    Model,
    Provenance,
    Quantization,
    Size,
    Source,
    TargetEstimate,
    TensorEntry,
    provenance,
)
from edgekiln.compiler.recipe import Calibration, Quantize, Recipe
from edgekiln.compiler.search.choose import SLOWER_MARGIN
from edgekiln.runtime import jsonsafe
from edgekiln.targets import Target

if TYPE_CHECKING:
    from edgekiln.compiler.analyze.graph_stats import GraphStats, OpRecord
    from edgekiln.compiler.build_state import BuildState
    from edgekiln.compiler.data import Datasets
    from edgekiln.compiler.measure import Measured
    from edgekiln.compiler.search.select import Selection

MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}  # the model's file name in a bundle, per format

_TOOLS = {"tensorflow": "tensorflow-cpu", "keras": "keras", "onnx": "onnx", "onnxruntime": "onnxruntime",
          "ai_edge_litert": "ai-edge-litert", "numpy": "numpy", "tf2onnx": "tf2onnx",
          "onnx2tf": "onnx2tf"}


def compiler_versions() -> dict[str, str]:
    """edgekiln's version and the versions of the tools a build may use."""
    versions = {"name": "edgekiln", "version": __version__}
    for key, dist in _TOOLS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions


def assemble(sections: dict[str, Any]) -> Manifest:
    """The manifest: schema header + the build's sections, checked for the contract keys."""
    manifest = {"schema_version": SCHEMA_VERSION, "compiler": compiler_versions(),
                "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **sections,
                "null_values": jsonsafe.NULL_MEANINGS}
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"manifest lacks contract keys {missing}")  # a compiler bug, not a user error
    return cast(Manifest, manifest)


def dumps(manifest: Manifest) -> str:
    """Strict JSON: a non-finite figure is null, and `non_finite` says what each one was (runtime/jsonsafe.py)."""
    return jsonsafe.dumps(manifest, indent=2, sort_keys=False) + "\n"


def build(state: BuildState) -> Manifest:
    """The whole manifest of a build, written from its state: each section by its own function."""
    recipe, target, selection, measured = state.recipe, state.target, state.selection, state.measured
    source_bytes, source_sha = file_facts(Path(recipe.source))
    sections: dict[str, Any] = {
        "recipe": recipe.to_dict(),
        "target": target.to_dict(),
        "source": _source(state, source_bytes, source_sha),
        "model": _model(selection, measured),
        "baseline": _baseline(target, selection, measured),
        "size": _size(selection, source_bytes),
        "pruning": state.pruning,
        "quantization": _quantization(recipe, selection, state.loaded.data, measured),
        "fidelity": measured.fidelity,
        "latency": _latency(target, selection, measured),
        "profile": state.profile,
        "memory": _memory(state),
        "golden": Golden(file="golden.npz", samples=int(measured.golden["input_0"].shape[0]),
                         atol=measured.atol, rtol=measured.rtol),
    }
    if state.pruning and state.pruning["measured"]:
        _add_pruning_measurements(sections, state.pruning["measured"])
    if state.vocabulary is not None:
        sections["vocabulary"] = state.vocabulary
    if state.text is not None:
        sections["text"] = state.text
    if state.distillation is not None:
        sections["distillation"] = state.distillation
    if measured.accuracy is not None:
        sections["accuracy"] = measured.accuracy
        sections["baseline"]["accuracy"] = measured.accuracy["baseline"]
    sections["warnings"] = (warnings(recipe, measured, selection) + list(state.notes)
                            + (state.pruning or {}).get("warnings", []))
    return assemble(sections)


def _memory(state: BuildState) -> Memory:
    target = state.target
    return {"estimated_peak_mb": round(state.memory.mb, 1), "budget_mb": target.ram_budget_mb,
            **compat.memory_basis(target, state.selection.format), "how": compat.memory_how(state.memory)}


def _source(state: BuildState, source_bytes: int, source_sha: str) -> Source:
    graph = state.loaded.graph
    stats = state.selection.baseline_stats
    source: Source = {"file_name": Path(state.recipe.source).name, "format": state.loaded.source_format,
                      "sha256": source_sha, "bytes": source_bytes, "params": graph.params, "macs": stats.macs,
                      "how": counted(stats, "MACs of the float32 baseline compiled from it")}
    return _with_fixed_inputs(source, graph)


def _model(selection: Selection, measured: Measured) -> Model:
    stats = selection.model_stats
    return {"file": MODEL_FILES[selection.format], "format": selection.format,
            "sha256": hashlib.sha256(selection.model).hexdigest(), "bytes": len(selection.model),
            "params": stats.params, "macs": stats.macs, "ops": stats.ops,
            "inputs": cast(list[TensorEntry], measured.inputs), "outputs": cast(list[TensorEntry], measured.outputs),
            "how": counted(stats, "MACs of the compiled model")}


def counted(stats: GraphStats, what: str) -> Provenance:
    """How a model's MACs were made: counted from its graph (conv, FC and matmul at the compiled batch), or
    null and why."""
    return provenance("static", f"{what}: conv, FC and matmul multiply-accumulates at the compiled batch",
                      unknown=stats.unknown)


def _baseline(target: Target, selection: Selection, measured: Measured) -> Baseline:
    return {"format": selection.format, "quantization": "none", "bytes": len(selection.baseline),
            "latency": measured.baseline_latency, "fidelity": measured.baseline_fidelity,
            "target_estimate": _estimate(target, selection.baseline_stats.records, selection.format,
                                         selection.reference.details.get("coverage"))}


def _size(selection: Selection, source_bytes: int) -> Size:
    model, baseline = len(selection.model), len(selection.baseline)
    return {"source_bytes": source_bytes, "baseline_bytes": baseline,
            "model_bytes": model, "ratio": _ratio(model, baseline, 4)}


def _latency(target: Target, selection: Selection, measured: Measured) -> Latency:
    host: HostLatency = {**measured.latency, "target_threads": target.default_threads}
    return {"host": host,
            "speedup_vs_baseline": _ratio(measured.baseline_latency["p50_ms"], measured.latency["p50_ms"], 3),
            "target_estimate": _estimate(target, selection.model_stats.records, selection.format,
                                         selection.block.get("coverage")),
            "device": []}


def _estimate(target: Target, records: tuple[OpRecord, ...], model_format: str,
              coverage: CoverageFacts | None) -> TargetEstimate | None:
    return estimate.target_estimate(target, records, model_format, coverage)


def _add_pruning_measurements(sections: dict[str, Any], measured: MeasuredGain) -> None:
    """The source's MACs are the unpruned model's; size and latency show the measured effect of pruning."""
    sections["source"]["macs"] = measured["unpruned_macs"]
    sections["source"]["how"] = {**sections["source"]["how"], "statistic": "MACs of the unpruned model compiled as "
                                 "the shipped variant: conv, FC and matmul multiply-accumulates at the compiled batch"}
    sections["size"].update(unpruned_model_bytes=measured["unpruned_model_bytes"],
                            pruning_ratio=measured["size_ratio"])
    sections["latency"]["pruning"] = {key: measured[key] for key in
                                      ("unpruned_p50_ms", "p50_ms", "speedup", "latency_ratio", "macs_ratio")}


def _quantization(recipe: Recipe, selection: Selection, data: Datasets, measured: Measured) -> Quantization | None:
    mode = _mode(recipe, selection)
    if recipe.quantize is Quantize.none:
        return None
    calibrated = mode is Quantize.int8
    details = selection.block.get("details", {})
    per_tensor = mode is Quantize.int8 and details.get("opset", {}).get("weights") == "per-tensor"  # an old opset
    return {"mode": str(mode), "per_channel": mode in (Quantize.int8, Quantize.dynamic) and not per_tensor,
            "io_dtype": measured.inputs[0]["dtype"],
            "calibration_samples": data.calib.size if calibrated and data.calib else 0,
            "calibration_method": details.get("calibration", _calibration_used(recipe)) if calibrated else None,
            "float_ops": list(selection.model_stats.float_ops) if calibrated else [],
            **selection.block["details"], **selection.block}  # the chosen candidate's details, then the search's


def _calibration_used(recipe: Recipe) -> str:
    """`auto` calibration of a candidate that records none (the plain int8 yardstick) means min/max."""
    return "minmax" if recipe.calibration is Calibration.auto else str(recipe.calibration)


def _mode(recipe: Recipe, selection: Selection) -> Quantize:
    """The mode of the shipped model (with --quantize auto, the chosen candidate's)."""
    return selection.quantize


def _ratio(numerator: float, denominator: float, digits: int) -> float:
    """numerator / denominator, rounded; infinite over zero (written as null, with its meaning, in JSON)."""
    return round(numerator / denominator, digits) if denominator else float("inf")


def _with_fixed_inputs(source: Source, graph: object) -> Source:
    """The source section with how an ONNX source's dynamic axes were fixed (graph/onnx_shapes.py), when any were."""
    fixed = getattr(graph, "fixed_inputs", [])
    if not fixed:
        return source
    return {**source, "fixed_inputs": [f.to_dict() for f in fixed],
            "shape_nodes_folded": getattr(graph, "shape_nodes_folded", 0)}


def warnings(recipe: Recipe, measured: Measured, selection: Selection) -> list[str]:
    """What the user must see prominently: a slower or less accurate result than they asked for."""
    notes = [no_int8] if (no_int8 := selection.block.get("no_int8")) else []  # a whole family failed: first
    mode = _mode(recipe, selection)
    deliberate = "fallback" in selection.block.get("details", {})  # kept in float on purpose, and said so
    if mode is Quantize.int8 and selection.model_stats.float_ops and not deliberate:
        notes.append(f"op(s) {', '.join(selection.model_stats.float_ops)} have no int8 kernel: the converter left "
                     "them in float32 between DEQUANTIZE/QUANTIZE, so the model is not fully integer")
    compiled, base = measured.latency["p50_ms"], measured.baseline_latency["p50_ms"]
    evidence = selection.block.get("evidence") or {"kind": "host"}
    shipped = selection.block.get("variant") or mode  # "int8+mixed", not "int8": the row the user will find
    if mode is not Quantize.none and compiled > base * SLOWER_MARGIN and evidence["kind"] != "host":
        notes.append(f"{shipped} is slower than the float32 baseline on this host (p50 {compiled:.3f} ms vs "
                     f"{base:.3f} ms); it was chosen by the {evidence['label']}, which this host does not measure")
    elif mode is not Quantize.none and compiled > base * SLOWER_MARGIN:
        notes.append(f"{shipped} is SLOWER than the float32 baseline on this host "
                     f"(p50 {compiled:.3f} ms vs {base:.3f} ms); consider --quantize auto or none"
                     + (" or float16" if selection.format == "tflite" else ""))
    if warning := evidence.get("warning"):
        notes.append(warning)
    accuracy = measured.accuracy
    if accuracy is not None and not accuracy["within_budget"]:
        notes.append(f"accuracy drops by {accuracy['drop']:.2f} points, over the budget of {recipe.max_drop:.2f} "
                     f"(reference {accuracy['reference']:.2f}%, compiled {accuracy['compiled']:.2f}%)")
    if measured.fidelity.get("samples_from") == NOT_HELD_BACK and mode is Quantize.int8:
        notes.append(f"fidelity was judged on the {measured.fidelity['samples']} calibration samples the int8 model "
                     "was calibrated on (too few to hold any back, or holdout_samples 0), which flatters it; pass "
                     "--eval DATA or more calibration samples")
    agreement = measured.fidelity.get("top1_agreement")
    if agreement is not None and agreement < 0.99:
        notes.append(f"top-1 agreement with the source model is only {agreement:.3f} on "
                     f"{measured.fidelity['samples']} {measured.fidelity.get('samples_from', 'held-back')} samples")
    return notes


def file_facts(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, or of a directory's files in sorted order (SavedModel)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return sum(f.stat().st_size for f in files), digest.hexdigest()
