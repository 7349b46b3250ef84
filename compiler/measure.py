"""The measurement stage: the shipped model beside its float32 baseline, measured THROUGH runtime/ so the
numbers describe what ships: fidelity and accuracy against the source model (evaluate/), host latency side by
side, golden vectors and their tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.data import Datasets, SourceGraph, check_label_range
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.metrics import (
    Fidelity,
    accuracy,
    fidelity,
    golden_tolerance,
    has_vector_axis,
    main_output,
)
from edgekiln.compiler.evaluate.output_kinds import KindRule
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.evaluate.runner import open_model, predict
from edgekiln.compiler.evaluate.timing import HostLatency, side_by_side, threads_for
from edgekiln.compiler.manifest_schema import Accuracy, Layout, Provenance, provenance
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.text_bundle import Pooler
from edgekiln.runtime import Model
from edgekiln.runtime.backends import TensorInfo

if TYPE_CHECKING:
    from edgekiln.compiler.search.select import Selection
    from edgekiln.targets import Target


def check_cosine_floor(graph: SourceGraph, data: Datasets, recipe: Recipe) -> None:
    """A cosine floor needs an output with a vector axis; refused before any conversion (the source model
    runs one sample), since no candidate could ever be shown to meet it."""
    if recipe.min_cosine is None and recipe.min_cosine_p5 is None:
        return
    outputs = graph.run(data.fidelity_set.take(0, 1).inputs)
    if not any(has_vector_axis(out) for out in outputs):
        shapes = ", ".join(f"{name} {list(out.shape[1:])}" for name, out in zip(graph.output_names, outputs,
                                                                               strict=True))
        raise RecipeError(f"--min-cosine / --min-cosine-p5 need an output of vectors ([batch, N] or [batch, "
                          f"tokens, N]); the model's outputs per sample: {shapes}",
                          "leave them out: the SQNR floor judges such outputs")


@dataclass(frozen=True)
class Measured:
    """Everything measured through the runtime on this host."""

    latency: HostLatency
    baseline_latency: HostLatency
    fidelity: Fidelity
    baseline_fidelity: Fidelity
    accuracy: Accuracy | None
    golden: dict[str, np.ndarray]
    atol: float
    rtol: float
    inputs: list[dict]
    outputs: list[dict]


def measure_all(source: Reference, selection: Selection, data: Datasets, recipe: Recipe, target: Target,
                pooler: Pooler | None = None) -> Measured:
    """Fidelity, accuracy, latency and golden vectors of the compiled model beside its float baseline, against
    the source model's outputs (`source`, computed once per build). A build from sentences (`pooler`) is validated
    from text, on its sentence embeddings: their error, not the token states', sizes a dynamic int8 tolerance."""
    threads = threads_for(recipe, target)
    compiled = open_model(selection.format, selection.model, threads, selection.layouts)
    baseline = open_model(selection.format, selection.baseline, threads, selection.layouts)
    check = data.fidelity_set
    reference = source.ordered(check, compiled)
    names = [info.name for info in compiled.outputs]
    kinds = KindRule.of_build(recipe, source.graph).of(names, reference)
    how = fidelity_how(data, check, threads)
    # A cross-fitted model is judged as the table judged it: each sample by the fold model that held it out.
    outputs = selection.judged_outputs if selection.judged_outputs is not None else predict(compiled, check)
    compiled_fidelity: Fidelity = {**fidelity(reference, outputs, names, kinds), "how": how}
    baseline_fidelity: Fidelity = {**fidelity(reference, predict(baseline, check), names, kinds), "how": how}
    compiled_fidelity["samples_from"] = baseline_fidelity["samples_from"] = data.judged_by
    latency, baseline_latency = side_by_side([compiled, baseline], data.golden_set, recipe.bench_runs)
    golden_in = data.golden_set.take(0, recipe.golden_samples)
    golden_out = predict(compiled, golden_in)
    golden = {f"input_{k}": golden_in.inputs[info.name] for k, info in enumerate(compiled.inputs)}
    golden.update({f"output_{k}": out for k, out in enumerate(golden_out)})
    errors = [f["max_abs_diff"] for f in compiled_fidelity["per_output"]] if pooler is None else \
        [float(np.abs(pooler.embeddings(outputs, check.inputs) - pooler.embeddings(reference, check.inputs)).max())]
    atol, rtol = _tolerance(compiled, selection, errors)
    return Measured(latency, baseline_latency, compiled_fidelity, baseline_fidelity,
                    _accuracy(source, compiled, baseline, data.evaluation, recipe, threads), golden, atol, rtol,
                    _io(compiled.inputs, selection.layouts), _io(compiled.outputs, selection.layouts))


def data_name(data: Datasets, dataset: Dataset) -> str:
    """Which of the build's sets a dataset is, as a figure's `how.data` names it."""
    named = [("held-back calibration samples", data.holdout), ("evaluation samples", data.evaluation),
             ("calibration samples (the quantizer's own)", data.calib)]
    return next((name for name, d in named if d is dataset), "samples")


def fidelity_how(data: Datasets, check: Dataset, threads: int) -> Provenance:
    """How the fidelity figures were made: through the runtime here, the worst output's figure over the set."""
    return provenance("host", "each figure: the worst output's over every sample, against the source model's "
                      "outputs", threads=threads, samples=check.size, data=data_name(data, check))


def _io(tensors: list[TensorInfo], layouts: dict[str, Layout]) -> list[dict]:
    """Manifest entries of inputs/outputs, with the layout change where the converter made one."""
    return [{**t.to_dict(), **({"layout": layouts[t.name]} if t.name in layouts else {})} for t in tensors]


def _accuracy(source: Reference, compiled: Model, baseline: Model, evaluation: Dataset | None,
              recipe: Recipe, threads: int) -> Accuracy | None:
    if evaluation is None or evaluation.labels is None:
        return None
    labels, names, main = evaluation.labels, [info.name for info in compiled.outputs], recipe.main_output
    compiled_out = predict(compiled, evaluation)
    index = names.index(main) if main and main in names else main_output(compiled_out, labels)
    check_label_range(evaluation, int(np.prod(compiled_out[index].shape[1:])), "evaluation")  # the scored output
    scored = source.ordered(evaluation, compiled)
    reference = accuracy(scored, labels, names, main)
    ours = accuracy(compiled_out, labels, names, main)
    base = accuracy(predict(baseline, evaluation), labels, names, main)
    drop = round(reference - ours, 3)
    output = main if main in names else names[main_output(scored, labels)]
    return {"metric": "top1_percent", "output": output, "reference": round(reference, 3), "compiled": round(ours, 3),
            "baseline": round(base, 3), "drop": drop, "budget": recipe.max_drop,
            "within_budget": drop <= recipe.max_drop, "samples": int(labels.shape[0]),
            "how": provenance("host", f"top-1 accuracy of output {output} against the labels", threads=threads,
                              samples=int(labels.shape[0]), data="evaluation samples")}


def _tolerance(model: Model, selection: Selection, errors: list[float]) -> tuple[float, float]:
    """Golden tolerance: 2 quantization steps for int8 outputs; a share of the quantization error (`errors`: each
    checked output's largest |compiled - source|) for dynamic int8; tight float bounds otherwise.

    LiteRT's int8 kernels matched x86 bit for bit under ARM emulation; 2 steps leave room for
    the rounding of other interpreter builds without hiding a real mismatch. ONNX QDQ models
    have float outputs on an int8 grid: their step comes from the final DequantizeLinear.
    """
    steps = [2 * o.scale for o in model.outputs if o.scale > 0]
    if not steps and selection.format == "onnx" and selection.model != selection.baseline:
        from edgekiln.compiler.analyze.onnx_stats import output_steps

        steps = [2 * step for step in output_steps(selection.model).values()]
    dynamic = selection.shipped.variant.quantize is Quantize.dynamic
    return golden_tolerance(steps, errors, dynamic)
