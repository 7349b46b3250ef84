"""Size, latency, accuracy and fidelity, measured THROUGH runtime/ so the numbers describe what ships."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.data import Datasets, check_label_range
from edgekiln.compiler.errors import DataError, RecipeError
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.tf_env import quiet_fds
from edgekiln.runtime import Model

if TYPE_CHECKING:
    from edgekiln.compiler.search.select import Selection
    from edgekiln.targets import Target


def open_model(model_format: str, model_bytes: bytes, threads: int | None,
               layouts: dict[str, dict] | None = None) -> Model:
    """The compiled model in the same runtime class the bundle uses on the device."""
    with quiet_fds():  # LiteRT announces its XNNPACK delegate on fd 2 at creation
        return Model(model_format, model_bytes, threads, layouts)


def predict(model: Model, dataset: Dataset) -> list[np.ndarray]:
    """Float outputs for every sample, in the model's output order."""
    return model.predict_list([dataset.inputs[info.name] for info in model.inputs])


def host_latency(model: Model, dataset: Dataset, runs: int) -> dict:
    """Init, first and steady-state latency on this host, labelled as such."""
    result = model.benchmark([dataset.inputs[info.name] for info in model.inputs], runs=runs, warmup=10)
    result.pop("peak_rss_mb", None)  # the compiler's own memory, not the model's: meaningless here
    return {"measured_on": "host", "cpu": host_cpu(), "machine": platform.machine(), "isa": host_isa()["flags"],
            **result}


# The instruction-set features that change int8 results or speed: AVX2 / AVX-512 run U8S8 products with
# VPMADDUBSW (saturating int16 pair sums) unless VNNI is present; ARM dot-product / i8mm are the Pi 5's.
ISA_FLAGS = ("sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
             "asimd", "asimddp", "i8mm")
VNNI = ("avx512_vnni", "avx_vnni")


def host_isa() -> dict:
    """This machine's int8-relevant instruction-set features, as the manifest records them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return {"machine": platform.machine(), "flags": [f for f in ISA_FLAGS if f in flags],
            "int8_dot_product": "vnni" if flags & set(VNNI) else ("none (VPMADDUBSW)" if x86 else "arm")}


def host_cpu() -> str:
    """The CPU model name of this machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accuracy(outputs: list[np.ndarray], labels: np.ndarray, names: list[str] | None = None,
             main: str | None = None) -> float:
    """Top-1 accuracy of the main output against integer labels, in percent: the output named `main`
    (--main-output) when the names list it, else main_output's guess."""
    index = names.index(main) if main and names and main in names else main_output(outputs, labels)
    scores = outputs[index]
    return float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=1) == labels) * 100)


def main_output(outputs: list[np.ndarray], labels: np.ndarray | None = None) -> int:
    """The output labels are scored on: the only one; else the first class vector ([batch, classes]) with a
    class for every label; else the first output. (--main-output names it when this guess is wrong.)"""
    top = -1 if labels is None or not labels.size else int(labels.max())
    vectors = [i for i, o in enumerate(outputs) if o.ndim == 2 and o.shape[-1] > max(1, top)]
    return vectors[0] if vectors else 0


def fidelity(reference: list[np.ndarray], compiled: list[np.ndarray], names: list[str] | None = None) -> dict:
    """How closely the compiled model reproduces the reference, per output and overall.

    sqnr_db = 10 log10(sum(ref^2) / sum((ref - out)^2)) per output; overall the WORST output's (a detector's
    boxes and class scores must both be faithful; None = exact). top1_agreement over the last axis: of the
    only output, or the worst of a multi-output model's class vectors ([batch, classes]); a detector's
    [batch, 4, anchors] has no top-1 to agree on (None). max_abs_diff: the largest over all outputs.
    """
    per_output = [_fidelity_one(r, c) for r, c in zip(reference, compiled, strict=True)]
    if names:
        per_output = [{"name": name, **f} for name, f in zip(names, per_output, strict=True)]
    result = {"sqnr_db": _worst([f["sqnr_db"] for f in per_output]),
              "max_abs_diff": max(f["max_abs_diff"] for f in per_output)}
    vectors = [f for f, r in zip(per_output, reference, strict=True) if len(per_output) == 1 or r.ndim == 2]
    agreements = [f["top1_agreement"] for f in vectors if "top1_agreement" in f]
    if agreements:
        result["top1_agreement"] = min(agreements)
    for key in ("cosine_mean", "cosine_p5"):
        values = [f[key] for f in per_output if key in f]
        if values:
            result[key] = min(values)  # the worst output's, like SQNR
    if len(per_output) > 1:
        result["judged_on"] = "the worst of the outputs (per_output): SQNR of every output, top-1 of class vectors"
    return {**result, "samples": int(reference[0].shape[0]), "per_output": per_output}


def _worst(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return min(finite) if finite else None


def _fidelity_one(ref: np.ndarray, out: np.ndarray) -> dict:
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64**2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    result = {"sqnr_db": round(sqnr, 2) if np.isfinite(sqnr) else None,
              "max_abs_diff": float(np.max(np.abs(ref64 - out64)))}
    if has_vector_axis(ref):
        flat_ref, flat_out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
        result["top1_agreement"] = round(float(np.mean(flat_ref.argmax(1) == flat_out.argmax(1))), 4)
        result.update(cosine(flat_ref, flat_out))
    return result


def has_vector_axis(output: np.ndarray) -> bool:
    """Whether an output is made of vectors along its last axis ([batch, N], [batch, tokens, N]): what top-1
    agreement and cosine are measured on."""
    return output.ndim >= 2 and output.shape[-1] > 1


def check_cosine_floor(graph: Any, data: Datasets, recipe: Recipe) -> None:
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


def cosine(ref: np.ndarray, out: np.ndarray) -> dict:
    """Cosine similarity of each output vector (a row over the last axis: a sentence embedding, a token's state)
    to the reference's: the mean and the 5th percentile, what search over embeddings depends on. A zero
    reference vector is similar only to a zero vector."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    norms = np.linalg.norm(ref64, axis=1) * np.linalg.norm(out64, axis=1)
    both_zero = (np.linalg.norm(ref64, axis=1) == 0) & (np.linalg.norm(out64, axis=1) == 0)
    cos = np.where(norms > 0, np.sum(ref64 * out64, axis=1) / np.where(norms > 0, norms, 1.0),
                   np.where(both_zero, 1.0, 0.0))
    return {"cosine_mean": round(float(np.mean(cos)), 6), "cosine_p5": round(float(np.percentile(cos, 5)), 6)}


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


def measure_all(graph: Any, selection: Selection, data: Datasets, recipe: Recipe, target: Target) -> Measured:
    """Fidelity, accuracy, latency and golden vectors of the compiled model beside its float baseline."""
    threads = threads_for(recipe, target)
    compiled = open_model(selection.format, selection.model, threads, selection.layouts)
    baseline = open_model(selection.format, selection.baseline, threads, selection.layouts)
    check = data.fidelity_set
    reference = _reference(graph, compiled, check)
    names = [info.name for info in compiled.outputs]
    compiled_fidelity = fidelity(reference, predict(compiled, check), names)
    baseline_fidelity = fidelity(reference, predict(baseline, check), names)
    latency, baseline_latency = side_by_side([compiled, baseline], data.golden_set, recipe.bench_runs)
    golden_in = data.golden_set.take(0, recipe.golden_samples)
    golden_out = predict(compiled, golden_in)
    golden = {f"input_{k}": golden_in.inputs[info.name] for k, info in enumerate(compiled.inputs)}
    golden.update({f"output_{k}": out for k, out in enumerate(golden_out)})
    atol, rtol = _tolerance(compiled, selection, compiled_fidelity)
    return Measured(latency, baseline_latency, compiled_fidelity, baseline_fidelity,
                    _accuracy(graph, compiled, baseline, data.evaluation, recipe), golden, atol, rtol,
                    _io(compiled.inputs, selection.layouts), _io(compiled.outputs, selection.layouts))


def _io(tensors: list, layouts: dict[str, dict]) -> list[dict]:
    """Manifest entries of inputs/outputs, with the layout change where the converter made one."""
    return [{**t.to_dict(), **({"layout": layouts[t.name]} if t.name in layouts else {})} for t in tensors]


def threads_for(recipe: Recipe, target: Target) -> int:
    """--threads, else the target's default thread count capped at this host's cores (more only
    oversubscribes): every host measurement of a build uses this."""
    return recipe.threads or max(1, min(target.default_threads, os.cpu_count() or 1))


def _reference(graph: Any, model: Model, dataset: Dataset) -> list[np.ndarray]:
    """The source model's outputs, in the compiled model's output order (matched by signature name)."""
    outputs = dict(zip(graph.output_names, graph.run(dataset.inputs), strict=True))
    if all(info.name in outputs for info in model.outputs):
        return [outputs[info.name] for info in model.outputs]
    if len(outputs) != len(model.outputs):
        raise DataError("the compiled model's outputs do not correspond to the source model's")
    return list(outputs.values())


SIDE_BY_SIDE_ROUNDS = 3  # alternating rounds of host_latency; each model keeps its best


def side_by_side(models: list[Model], dataset: Dataset, runs: int, rounds: int = SIDE_BY_SIDE_ROUNDS) -> list[dict]:
    """Host latency of each model, timed in alternating rounds, each keeping its best round: drift on a
    shared, noisy host hits every model alike, and one burst of load does not decide a ratio."""
    timed = [[host_latency(m, dataset, runs) for m in models] for _ in range(rounds)]
    return [min((r[k] for r in timed), key=lambda lat: lat["p50_ms"]) for k in range(len(models))]


def _accuracy(graph: Any, compiled: Model, baseline: Model, evaluation: Dataset | None,
              recipe: Recipe) -> dict | None:
    if evaluation is None or evaluation.labels is None:
        return None
    labels, names, main = evaluation.labels, [info.name for info in compiled.outputs], recipe.main_output
    compiled_out = predict(compiled, evaluation)
    index = names.index(main) if main and main in names else main_output(compiled_out, labels)
    check_label_range(evaluation, int(np.prod(compiled_out[index].shape[1:])), "evaluation")  # the scored output
    scored = _reference(graph, compiled, evaluation)
    reference = accuracy(scored, labels, names, main)
    ours = accuracy(compiled_out, labels, names, main)
    base = accuracy(predict(baseline, evaluation), labels, names, main)
    drop = round(reference - ours, 3)
    output = main if main in names else names[main_output(scored, labels)]
    return {"metric": "top1_percent", "output": output, "reference": round(reference, 3), "compiled": round(ours, 3),
            "baseline": round(base, 3), "drop": drop, "budget": recipe.max_drop,
            "within_budget": drop <= recipe.max_drop, "samples": int(labels.shape[0])}


def _tolerance(model: Model, selection: Selection, quality: dict) -> tuple[float, float]:
    """Golden tolerance: 2 quantization steps for int8 outputs; a share of the quantization error for dynamic
    int8; tight float bounds otherwise.

    LiteRT's int8 kernels matched x86 bit for bit under ARM emulation; 2 steps leave room for
    the rounding of other interpreter builds without hiding a real mismatch. ONNX QDQ models
    have float outputs on an int8 grid: their step comes from the final DequantizeLinear.
    """
    steps = [2 * o.scale for o in model.outputs if o.scale > 0]
    if not steps and selection.format == "onnx" and selection.model != selection.baseline:
        from edgekiln.compiler.analyze.onnx import output_steps

        steps = [2 * step for step in output_steps(selection.model).values()]
    dynamic = selection.shipped.candidate.quantize is Quantize.dynamic
    return golden_tolerance(steps, [f["max_abs_diff"] for f in quality.get("per_output", [quality])], dynamic)


FLOAT_TOLERANCE = (1e-4, 1e-3)  # atol, rtol: float kernels of other CPUs sum in another order
DYNAMIC_SHARE = 0.5  # of the largest quantization error of an output: what another CPU may add to it


def golden_tolerance(steps: list[float], quantization_errors: list[float], dynamic: bool) -> tuple[float, float]:
    """(atol, rtol) for golden.npz from the outputs' int8 steps, or, for dynamic int8, from each output's
    largest |compiled - source| on the held-back samples (quantization_errors).

    Dynamic int8 quantizes activations at run time from their own min / max: where another CPU's float kernels
    sum in another order, an activation can round to the neighbouring int8 step, and the outputs move by a
    fraction of the quantization error. Measured on paraphrase-MiniLM-L3-v2 (`fused+dynamic`, emulated
    Cortex-A72 vs this x86 host): 5 of 8 samples within 1.7e-6, the others 0.0011, 0.0059 and 0.034, where
    |compiled - float| reaches 0.243 (token states) and 0.098 (sentence embedding). One tolerance serves every
    output (runtime/ compares with one atol): DYNAMIC_SHARE of the largest error allows such rounding and still
    refuses a device as far off as quantization itself (a wrong model, a broken kernel).
    """
    if steps:
        return float(max(steps)), 0.0
    errors = [e for e in quantization_errors if e > 0]
    if dynamic and errors:
        return max(FLOAT_TOLERANCE[0], DYNAMIC_SHARE * float(max(errors))), FLOAT_TOLERANCE[1]
    return FLOAT_TOLERANCE
