"""Turns a build's measurements into the manifest sections, the warnings, and the bundle's files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from targets import Target

from . import compat, estimate
from . import manifest as manifest_schema
from .bundle import MODEL_FILES, BundleContents
from .recipe import Calibration, Quantize, Recipe
from .stages import Artifacts, Datasets, Measured

SLOWER_MARGIN = 1.05  # below 5% the two p50s are within this host's run-to-run noise


def manifest(recipe: Recipe, target: Target, source_format: str, graph: Any, artifacts: Artifacts,
             data: Datasets, measured: Measured, memory_mb: float, notes: list[str] | None = None,
             pruning: dict | None = None) -> dict[str, Any]:
    """The whole manifest of a build; `notes` are target checks that --force overrode."""
    source_bytes, source_sha = _file_facts(Path(recipe.source))
    model_sha = hashlib.sha256(artifacts.model).hexdigest()
    sections = {
        "recipe": recipe.to_dict(),
        "target": target.to_dict(),
        "source": {"file_name": Path(recipe.source).name, "format": source_format, "sha256": source_sha,
                   "bytes": source_bytes, "params": graph.params, "macs": artifacts.baseline_stats.macs,
                   **_fixed_inputs(graph)},
        "model": {"file": MODEL_FILES[artifacts.format], "format": artifacts.format, "sha256": model_sha,
                  "bytes": len(artifacts.model), "params": artifacts.model_stats.params,
                  "macs": artifacts.model_stats.macs, "ops": artifacts.model_stats.ops,
                  "inputs": measured.inputs, "outputs": measured.outputs},
        "baseline": {"format": artifacts.format, "quantization": "none", "bytes": len(artifacts.baseline),
                     "latency": measured.baseline_latency, "fidelity": measured.baseline_fidelity,
                     "target_estimate": estimate.target_estimate(target, artifacts.baseline_stats.records)},
        "size": {"source_bytes": source_bytes, "baseline_bytes": len(artifacts.baseline),
                 "model_bytes": len(artifacts.model),
                 "ratio": _ratio(len(artifacts.model), len(artifacts.baseline), 4)},
        "pruning": pruning,
        "quantization": _quantization(recipe, artifacts, data, measured),
        "fidelity": measured.fidelity,
        "latency": {"host": {**measured.latency, "target_threads": target.default_threads},
                    "speedup_vs_baseline": _ratio(measured.baseline_latency["p50_ms"], measured.latency["p50_ms"], 3),
                    "target_estimate": estimate.target_estimate(target, artifacts.model_stats.records),
                    "device": []},
        "memory": {"estimated_peak_mb": round(memory_mb, 1), "budget_mb": target.ram_budget_mb,
                   **compat.memory_basis(target, artifacts.format)},
        "golden": {"file": "golden.npz", "samples": int(measured.golden["input_0"].shape[0]),
                   "atol": measured.atol, "rtol": measured.rtol},
    }
    if pruning and pruning["measured"]:
        _add_pruning_measurements(sections, pruning["measured"])
    if measured.accuracy is not None:
        sections["accuracy"] = measured.accuracy
        sections["baseline"]["accuracy"] = measured.accuracy["baseline"]
    sections["warnings"] = (warnings(recipe, measured, artifacts) + list(notes or [])
                            + (pruning or {}).get("warnings", []))
    return manifest_schema.assemble(sections)


def _add_pruning_measurements(sections: dict[str, Any], measured: dict) -> None:
    """The source's MACs are the unpruned model's; size and latency show the measured effect of pruning."""
    sections["source"]["macs"] = measured["unpruned_macs"]
    sections["size"].update(unpruned_model_bytes=measured["unpruned_model_bytes"],
                            pruning_ratio=measured["size_ratio"])
    sections["latency"]["pruning"] = {key: measured[key] for key in
                                      ("unpruned_p50_ms", "p50_ms", "speedup", "latency_ratio", "macs_ratio")}


def _quantization(recipe: Recipe, artifacts: Artifacts, data: Datasets, measured: Measured) -> dict | None:
    mode = _mode(recipe, artifacts)
    if recipe.quantize is Quantize.none:
        return None
    calibrated = mode is Quantize.int8
    details = (artifacts.choice or {}).get("details", {})
    return {"mode": str(mode), "per_channel": mode in (Quantize.int8, Quantize.dynamic),
            "io_dtype": measured.inputs[0]["dtype"],
            "calibration_samples": data.calib.size if calibrated and data.calib else 0,
            "calibration_method": details.get("calibration", _calibration_used(recipe)) if calibrated else None,
            "float_ops": list(artifacts.model_stats.float_ops) if calibrated else [],
            **artifacts.details, **(artifacts.choice or {})}


def _calibration_used(recipe: Recipe) -> str:
    """Outside the TFLite candidate search, `auto` calibration means min/max (see pipeline._emit)."""
    return "minmax" if recipe.calibration is Calibration.auto else str(recipe.calibration)


def _mode(recipe: Recipe, artifacts: Artifacts) -> Quantize:
    """The mode of the shipped model (with --quantize auto, the chosen candidate's)."""
    return artifacts.quantize if artifacts.quantize is not None else recipe.quantize


def _ratio(numerator: float, denominator: float, digits: int) -> float:
    """numerator / denominator, rounded; infinite over zero (written as null, with its meaning, in JSON)."""
    return round(numerator / denominator, digits) if denominator else float("inf")


def _fixed_inputs(graph: Any) -> dict:
    """How an ONNX source's dynamic axes were fixed (graph/onnx_shapes.py), when any were."""
    fixed = getattr(graph, "fixed_inputs", [])
    if not fixed:
        return {}
    return {"fixed_inputs": [f.to_dict() for f in fixed],
            "shape_nodes_folded": getattr(graph, "shape_nodes_folded", 0)}


def warnings(recipe: Recipe, measured: Measured, artifacts: Artifacts) -> list[str]:
    """What the user must see prominently: a slower or less accurate result than they asked for."""
    notes = []
    mode = _mode(recipe, artifacts)
    deliberate = "fallback" in (artifacts.choice or {}).get("details", {})  # kept in float on purpose, and said so
    if mode is Quantize.int8 and artifacts.model_stats.float_ops and not deliberate:
        notes.append(f"op(s) {', '.join(artifacts.model_stats.float_ops)} have no int8 kernel: the converter left "
                     "them in float32 between DEQUANTIZE/QUANTIZE, so the model is not fully integer")
    compiled, base = measured.latency["p50_ms"], measured.baseline_latency["p50_ms"]
    if mode is not Quantize.none and compiled > base * SLOWER_MARGIN:
        notes.append(f"{mode} is SLOWER than the float32 baseline on this host "
                     f"(p50 {compiled:.3f} ms vs {base:.3f} ms); consider --quantize auto or none"
                     + (" or float16" if artifacts.format == "tflite" else ""))
    accuracy = measured.accuracy
    if accuracy is not None and not accuracy["within_budget"]:
        notes.append(f"accuracy drops by {accuracy['drop']:.2f} points, over the budget of {recipe.max_drop:.2f} "
                     f"(reference {accuracy['reference']:.2f}%, compiled {accuracy['compiled']:.2f}%)")
    agreement = measured.fidelity.get("top1_agreement")
    if agreement is not None and agreement < 0.99:
        notes.append(f"top-1 agreement with the source model is only {agreement:.3f} on "
                     f"{measured.fidelity['samples']} held-back samples")
    return notes


def _file_facts(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, or of a directory's files in sorted order (SavedModel)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return sum(f.stat().st_size for f in files), digest.hexdigest()


def contents(artifacts: Artifacts, manifest: dict, measured: Measured, target: Target) -> BundleContents:
    return BundleContents(artifacts.model, artifacts.format, manifest, measured.golden,
                          compat.requirements(target, artifacts.format), device_readme(manifest, target))


def _venv_lines(target: Target) -> str:
    """Create the venv; a target whose numpy comes from apt needs the system's site-packages in it."""
    if not target.apt_packages:
        return "python3 -m venv .venv && . .venv/bin/activate"
    return (f"sudo apt install {' '.join(target.apt_packages)}   # PyPI has no {target.arch} wheel of these\n"
            "python3 -m venv --system-site-packages .venv && . .venv/bin/activate")


def device_readme(manifest: dict, target: Target) -> str:
    """The README that travels with the bundle: install and run on the device."""
    model, size = manifest["model"], manifest["size"]
    return f"""# {manifest['source']['file_name']} for {target.description}

Compiled by edgekiln {manifest['compiler']['version']} on {manifest['created_utc']}:
`{model['file']}` ({model['bytes']:,} bytes, {size['ratio']:.2f}x the float32 baseline),
quantization: {(manifest['quantization'] or {}).get('mode', 'none')}.

## On the device ({target.os}, Python {target.python})

```
{_venv_lines(target)}
pip install -r requirements.txt
python -m runtime validate   # checks the model's sha256 and the golden outputs; exit 0 = all match
python -m runtime bench      # init, first inference, p50/p90/p99 latency, peak memory
```

## In Python

```
import runtime
model = runtime.load(".")          # refuses a model whose sha256 differs from manifest.json
y = model.predict(x)               # float32 in and out; batch > 1 runs sample by sample
```

Inputs: {', '.join(_tensor_text(i) for i in model['inputs'])}.
Outputs: {', '.join(_tensor_text(o) for o in model['outputs'])}.
`manifest.json` records how this bundle was built and what was measured, and where
(latency.host is measured on the build machine, not on this device).
"""


def _tensor_text(t: dict) -> str:
    """name, shape, dtype; with the shape predict() takes when the converter changed the layout."""
    if "layout" in t:
        lay = t["layout"]
        return (f"{t['name']} {lay['source_shape']} {lay['source']} for predict() "
                f"(compiled {t['shape']} {lay['compiled']} {t['dtype']})")
    return f"{t['name']} {t['shape']} {t['dtype']}"
