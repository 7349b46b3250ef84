"""The metric primitives of evaluation, pure numpy: accuracy, fidelity (SQNR, top-1 agreement, cosine), the
golden tolerance. Every stage that judges a model (the candidate search, pruning, the encoder search, the sweep,
measurement) computes its figures here, so one figure means one thing wherever it is printed."""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from edgekiln.compiler.evaluate import evidence, output_kinds
from edgekiln.compiler.manifest_schema import Fidelity, OutputFidelity


class Cosine(TypedDict):
    """Per-vector cosine to the reference's vectors: the mean and the 5th percentile."""

    cosine_mean: float
    cosine_p5: float


class _Overall(TypedDict, total=False):
    """The overall figures only some models have, each the worst output's of the kind it measures
    (evaluate/output_kinds.py): top-1 agreement and its flips of the class outputs, the cosines of the
    embeddings (of every vector output when there is no embedding), SQNR of the value outputs; their 95 %
    intervals (evaluate/evidence.py); and of several outputs, how the overall figures were taken."""

    top1_agreement: float
    flips: int
    cosine_mean: float
    cosine_p5: float
    values_sqnr_db: float | None
    intervals: dict[str, list[float]]
    judged_on: str


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


def fidelity(reference: list[np.ndarray], compiled: list[np.ndarray], names: list[str] | None = None,
             kinds: list[str] | None = None) -> Fidelity:
    """How closely the compiled model reproduces the reference, per output and overall.

    Each output is judged by the measure of its kind (`kinds`, inferred from the reference when not given:
    evaluate/output_kinds.py): a class output by top-1 agreement (flips counted), an embedding by cosine, values
    by SQNR, each with its 95 % interval. sqnr_db = 10 log10(sum(ref^2) / sum((ref - out)^2)) per output;
    overall the WORST output's (None = exact). Overall, each measure is the worst output's of its kind
    (_overall). max_abs_diff: the largest over all outputs.
    """
    kinds = kinds or [output_kinds.infer(r) for r in reference]
    per_output = [_fidelity_one(r, c, kind) for r, c, kind in zip(reference, compiled, kinds, strict=True)]
    if names:
        per_output = [{"name": name, **f} for name, f in zip(names, per_output, strict=True)]
    worst = _overall(per_output)
    if len(per_output) > 1:
        worst["judged_on"] = ("the worst of the outputs (per_output), each by its kind: top-1 agreement of class "
                              "outputs, cosine of embeddings, SQNR of values")
    return {"sqnr_db": _worst([f["sqnr_db"] for f in per_output]),
            "max_abs_diff": max(f["max_abs_diff"] for f in per_output), **worst,
            "samples": int(reference[0].shape[0]), "per_output": per_output}


def _overall(per_output: list[OutputFidelity]) -> _Overall:
    """The worst output's figure of each measure, with its interval."""
    worst: _Overall = {}
    intervals: dict[str, list[float]] = {}
    of_kind = {kind: [f for f in per_output if f.get("kind") == kind] for kind in output_kinds.KINDS}
    classes = [f for f in of_kind["class"] if "top1_agreement" in f]
    if classes:
        least = min(classes, key=lambda f: f["top1_agreement"])
        worst.update({"top1_agreement": least["top1_agreement"], "flips": least.get("flips", 0)})
        intervals["top1_agreement"] = least.get("interval", [])
    cosines = of_kind["embedding"] or [f for f in per_output if "cosine_mean" in f]
    for key in ("cosine_mean", "cosine_p5"):
        with_key = [f for f in cosines if key in f]
        if with_key:
            least = min(with_key, key=lambda f: f[key])
            worst[key] = least[key]
            intervals[key] = least.get("intervals", {}).get(key, [])
    if of_kind["values"]:
        least = min(of_kind["values"], key=lambda f: math.inf if f["sqnr_db"] is None else f["sqnr_db"])
        worst["values_sqnr_db"] = least["sqnr_db"]
        intervals["values_sqnr_db"] = least.get("interval", [])
    worst["intervals"] = {k: v for k, v in intervals.items() if v}
    return worst


def _worst(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return min(finite) if finite else None


def _fidelity_one(ref: np.ndarray, out: np.ndarray, kind: str) -> OutputFidelity:
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64**2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    result: OutputFidelity = {"kind": kind, "sqnr_db": round(sqnr, 2) if np.isfinite(sqnr) else None,
                              "max_abs_diff": float(np.max(np.abs(ref64 - out64)))}
    if has_vector_axis(ref):
        flat_ref, flat_out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
        agree = flat_ref.argmax(1) == flat_out.argmax(1)
        result["top1_agreement"] = round(float(np.mean(agree)), 4)
        result.update(cosine(flat_ref, flat_out))
        if kind == "class":
            flips, n = int(np.sum(~agree)), int(agree.size)
            low, high = evidence.flip_interval(flips, n)
            result.update({"flips": flips, "measure": "top-1 agreement",
                           "interval": [round(1 - high, 4), round(1 - low, 4)]})
        elif kind == "embedding":
            result["measure"] = "cosine"
            result["intervals"] = _cosine_intervals(ref64, out64)
    elif kind == "class":  # one score per sample (a sigmoid or a logit): the decision is which side of the threshold
        _binary_flips(ref64, out64, result)
    if kind == "values" or "measure" not in result:
        result["measure"] = "SQNR dB"
        result["interval"] = _sqnr_interval(ref64, out64)
    return result


def _binary_flips(ref: np.ndarray, out: np.ndarray, result: OutputFidelity) -> None:
    """A binary decision per score: above 0.5 for probabilities (every reference score in [0, 1]), above 0 for
    logits; flips counted as top-1 agreement's are, with the same interval."""
    threshold = 0.5 if np.all((ref >= 0) & (ref <= 1)) else 0.0
    agree = (ref.reshape(ref.shape[0], -1) > threshold) == (out.reshape(out.shape[0], -1) > threshold)
    flips, n = int(np.sum(~agree)), int(agree.size)
    low, high = evidence.flip_interval(flips, n)
    result.update({"top1_agreement": round(float(np.mean(agree)), 4), "flips": flips,
                   "measure": f"decision agreement (score > {threshold:g})",
                   "interval": [round(1 - high, 4), round(1 - low, 4)]})


def _per_sample_cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """[samples, vectors]: the cosine of each vector of each sample."""
    samples = ref.shape[0]
    flat_ref, flat_out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    return _cosines(flat_ref, flat_out).reshape(samples, -1)


def _cosine_intervals(ref: np.ndarray, out: np.ndarray) -> dict[str, list[float]]:
    """95 % bootstrap intervals of the cosine mean and 5th percentile, resampling whole samples."""
    per_sample = _per_sample_cosines(ref, out)
    mean = evidence.bootstrap(per_sample, lambda rows: float(np.mean(rows)))
    p5 = evidence.bootstrap(per_sample, lambda rows: float(np.percentile(rows, 5)))
    return {"cosine_mean": [round(mean[0], 6), round(mean[1], 6)], "cosine_p5": [round(p5[0], 6), round(p5[1], 6)]}


def _sqnr_interval(ref: np.ndarray, out: np.ndarray) -> list[float]:
    """The 95 % bootstrap interval of SQNR (dB), resampling whole samples; [] when the output is exact."""
    axes = tuple(range(1, ref.ndim))
    signal = np.sum(ref**2, axis=axes) if axes else ref**2
    noise = np.sum((ref - out) ** 2, axis=axes) if axes else (ref - out) ** 2
    if not np.any(noise > 0):
        return []
    pairs = np.stack([signal, noise], axis=1)

    def sqnr(rows: np.ndarray) -> float:
        total = rows.sum(axis=0)
        return float(10 * np.log10(max(total[0], 1e-30) / total[1])) if total[1] > 0 else 300.0

    low, high = evidence.bootstrap(pairs, sqnr)
    return [round(low, 2), round(high, 2)]


def has_vector_axis(output: np.ndarray) -> bool:
    """Whether an output is made of vectors along its last axis ([batch, N], [batch, tokens, N]): what top-1
    agreement and cosine are measured on."""
    return output.ndim >= 2 and output.shape[-1] > 1


def cosine(ref: np.ndarray, out: np.ndarray) -> Cosine:
    """Cosine similarity of each output vector (a row over the last axis: a sentence embedding, a token's state)
    to the reference's: the mean and the 5th percentile, what search over embeddings depends on. A zero
    reference vector is similar only to a zero vector."""
    cos = _cosines(ref.astype(np.float64), out.astype(np.float64))
    return {"cosine_mean": round(float(np.mean(cos)), 6), "cosine_p5": round(float(np.percentile(cos, 5)), 6)}


def _cosines(ref64: np.ndarray, out64: np.ndarray) -> np.ndarray:
    """Each row's cosine; a zero reference row is similar only to a zero row."""
    norms = np.linalg.norm(ref64, axis=1) * np.linalg.norm(out64, axis=1)
    both_zero = (np.linalg.norm(ref64, axis=1) == 0) & (np.linalg.norm(out64, axis=1) == 0)
    return np.where(norms > 0, np.sum(ref64 * out64, axis=1) / np.where(norms > 0, norms, 1.0),
                    np.where(both_zero, 1.0, 0.0))


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
