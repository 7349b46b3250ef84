"""The data and measurement stages of a build, and the values they hand on (all frozen)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime import Model
from targets import Target

from . import measure
from .analyze import GraphStats
from .data import Dataset, InputSpec, as_float32, check_label_range, load_data
from .errors import DataError
from .recipe import Quantize, Recipe

CALIBRATED = (Quantize.int8, Quantize.auto)  # modes that calibrate int8 activation ranges

MIN_CALIBRATION_SAMPLES = 10  # fewer gives activation ranges that are mostly noise
MIN_SPLIT_HOLDOUT = 8         # held-back samples below which tuning and judging share them


@dataclass(frozen=True)
class Datasets:
    """calib feeds the quantizer; holdout (held back from it) measures fidelity; evaluation may be labelled.

    tuning: other held-back samples on which the candidate search makes its own decisions (calibration
    method, which layers or nodes stay float), so the samples that judge the candidates did not also
    shape them; None when too few were held back to split (the search then tunes on holdout).
    """

    calib: Dataset | None
    holdout: Dataset | None
    evaluation: Dataset | None
    tuning: Dataset | None = None

    @property
    def fidelity_set(self) -> Dataset:
        return next(d for d in (self.holdout, self.evaluation, self.calib) if d is not None)

    @property
    def tuning_set(self) -> Dataset:
        """Never the evaluation data: the search must not fit what the manifest reports."""
        return next(d for d in (self.tuning, self.holdout, self.calib, self.evaluation) if d is not None)

    @property
    def golden_set(self) -> Dataset:
        return next(d for d in (self.evaluation, self.holdout, self.calib) if d is not None)


@dataclass(frozen=True)
class Artifacts:
    """The compiled model and its float32 baseline, as bytes, with their static stats.

    layouts: tensor name -> layout change made by the converter (see emit.Emitted); details:
    converter facts for the manifest's quantization section.
    """

    format: str
    model: bytes
    baseline: bytes
    model_stats: GraphStats
    baseline_stats: GraphStats
    layouts: dict[str, dict] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    quantize: Quantize | None = None  # the mode of `model` (with --quantize auto: the chosen one)
    choice: dict | None = None        # the candidate table, the reason and the diagnosis (manifest)


@dataclass(frozen=True)
class Measured:
    """Everything measured through the runtime on this host."""

    latency: dict
    baseline_latency: dict
    fidelity: dict
    baseline_fidelity: dict
    accuracy: dict | None
    golden: dict[str, np.ndarray]
    atol: float
    rtol: float
    inputs: list[dict]
    outputs: list[dict]


def load_datasets(recipe: Recipe, specs: list[InputSpec]) -> Datasets:
    """Read --calib and --eval, and hold back the tail of the calibration data: half to tune the candidate
    search, half to measure fidelity."""
    options: dict[str, Any] = {"mean": recipe.mean, "std": recipe.std}
    calib = holdout = evaluation = tuning = None
    if recipe.calib:
        needed = MIN_CALIBRATION_SAMPLES if recipe.quantize in CALIBRATED else 1
        calib = as_float32(load_data(recipe.calib, specs, role="calibration", min_samples=needed, **options))
        held = min(recipe.holdout_samples, calib.size // 4)
        if held:
            holdout = calib.take(calib.size - held)
            calib = calib.take(0, min(recipe.calib_samples, calib.size - held))
        if held >= MIN_SPLIT_HOLDOUT:  # first half tunes the search, the second half judges it
            tuning, holdout = holdout.take(0, held // 2), holdout.take(held // 2)
    if recipe.eval:
        evaluation = as_float32(load_data(recipe.eval, specs, role="evaluation", **options))
    return Datasets(calib, holdout, evaluation, tuning)


def check_labels(graph: Any, data: Datasets) -> None:
    """Labels against the classes the model scores, before any conversion: the source model runs one
    sample and its widest output bounds the labels (the exact first output is checked in _accuracy)."""
    labelled = [(d, role) for d, role in ((data.evaluation, "evaluation"), (data.calib, "calibration"))
                if d is not None and d.labels is not None]
    if not labelled:
        return
    outputs = graph.run(labelled[0][0].take(0, 1).inputs)
    classes = max(int(np.prod(out.shape[1:])) for out in outputs)
    for dataset, role in labelled:
        check_label_range(dataset, classes, role)


def measure_all(graph: Any, artifacts: Artifacts, data: Datasets, recipe: Recipe, target: Target) -> Measured:
    """Fidelity, accuracy, latency and golden vectors of the compiled model beside its float baseline."""
    threads = recipe.threads or host_threads(target)
    compiled = measure.open_model(artifacts.format, artifacts.model, threads, artifacts.layouts)
    baseline = measure.open_model(artifacts.format, artifacts.baseline, threads, artifacts.layouts)
    check = data.fidelity_set
    reference = _reference(graph, compiled, check)
    names = [info.name for info in compiled.outputs]
    fidelity = measure.fidelity(reference, measure.predict(compiled, check), names)
    baseline_fidelity = measure.fidelity(reference, measure.predict(baseline, check), names)
    latency, baseline_latency = _latencies(compiled, baseline, data.golden_set, recipe.bench_runs)
    golden_in = data.golden_set.take(0, recipe.golden_samples)
    golden_out = measure.predict(compiled, golden_in)
    golden = {f"input_{k}": golden_in.inputs[info.name] for k, info in enumerate(compiled.inputs)}
    golden.update({f"output_{k}": out for k, out in enumerate(golden_out)})
    atol, rtol = _tolerance(compiled, artifacts)
    return Measured(latency, baseline_latency, fidelity, baseline_fidelity,
                    _accuracy(graph, compiled, baseline, data.evaluation, recipe), golden, atol, rtol,
                    _io(compiled.inputs, artifacts.layouts), _io(compiled.outputs, artifacts.layouts))


def _io(tensors: list, layouts: dict[str, dict]) -> list[dict]:
    """Manifest entries of inputs/outputs, with the layout change where the converter made one."""
    return [{**t.to_dict(), **({"layout": layouts[t.name]} if t.name in layouts else {})} for t in tensors]


def host_threads(target: Target) -> int:
    """The target's default thread count, capped at this host's cores (more only oversubscribes)."""
    return max(1, min(target.default_threads, os.cpu_count() or 1))


def _reference(graph: Any, model: Model, dataset: Dataset) -> list[np.ndarray]:
    """The source model's outputs, in the compiled model's output order (matched by signature name)."""
    outputs = dict(zip(graph.output_names, graph.run(dataset.inputs), strict=True))
    if all(info.name in outputs for info in model.outputs):
        return [outputs[info.name] for info in model.outputs]
    if len(outputs) != len(model.outputs):
        raise DataError("the compiled model's outputs do not correspond to the source model's")
    return list(outputs.values())


def _latencies(compiled: Model, baseline: Model, dataset: Dataset, runs: int) -> tuple[dict, dict]:
    """Two alternating rounds; each model keeps its better round (the host is shared and noisy)."""
    rounds = [(measure.host_latency(compiled, dataset, runs), measure.host_latency(baseline, dataset, runs))
              for _ in range(2)]
    best_compiled = min((r[0] for r in rounds), key=lambda r: r["p50_ms"])
    best_baseline = min((r[1] for r in rounds), key=lambda r: r["p50_ms"])
    return best_compiled, best_baseline


def _accuracy(graph: Any, compiled: Model, baseline: Model, evaluation: Dataset | None,
              recipe: Recipe) -> dict | None:
    if evaluation is None or evaluation.labels is None:
        return None
    labels, names, main = evaluation.labels, [info.name for info in compiled.outputs], recipe.main_output
    compiled_out = measure.predict(compiled, evaluation)
    index = names.index(main) if main and main in names else measure.main_output(compiled_out, labels)
    check_label_range(evaluation, int(np.prod(compiled_out[index].shape[1:])), "evaluation")  # the scored output
    scored = _reference(graph, compiled, evaluation)
    reference = measure.accuracy(scored, labels, names, main)
    ours = measure.accuracy(compiled_out, labels, names, main)
    base = measure.accuracy(measure.predict(baseline, evaluation), labels, names, main)
    drop = round(reference - ours, 3)
    output = main if main in names else names[measure.main_output(scored, labels)]
    return {"metric": "top1_percent", "output": output, "reference": round(reference, 3), "compiled": round(ours, 3),
            "baseline": round(base, 3), "drop": drop, "budget": recipe.max_drop,
            "within_budget": drop <= recipe.max_drop, "samples": int(labels.shape[0])}


def _tolerance(model: Model, artifacts: Artifacts) -> tuple[float, float]:
    """Golden tolerance: 2 quantization steps for int8 outputs; tight float bounds otherwise.

    LiteRT's int8 kernels matched x86 bit for bit under ARM emulation; 2 steps leave room for
    the rounding of other interpreter builds without hiding a real mismatch. ONNX QDQ models
    have float outputs on an int8 grid: their step comes from the final DequantizeLinear.
    """
    steps = [2 * o.scale for o in model.outputs if o.scale > 0]
    if not steps and artifacts.format == "onnx" and artifacts.model != artifacts.baseline:
        from .analyze_onnx import output_steps

        steps = [2 * step for step in output_steps(artifacts.model).values()]
    if steps:
        return float(max(steps)), 0.0
    return 1e-4, 1e-3
