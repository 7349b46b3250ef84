"""The metric primitives of evaluation, pure numpy: accuracy, fidelity (SQNR, top-1 agreement, cosine), the
golden tolerance. Every stage that judges a model (the candidate search, pruning, the encoder search, the sweep,
measurement) computes its figures here, so one figure means one thing wherever it is printed."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from edgekiln.compiler.manifest_schema import Fidelity, OutputFidelity


class Cosine(TypedDict):
    """Per-vector cosine to the reference's vectors: the mean and the 5th percentile."""

    cosine_mean: float
    cosine_p5: float


class _Overall(TypedDict, total=False):
    """The overall figures only some models have: of outputs with a vector axis (top-1 agreement, the cosines),
    and of several outputs (how the overall figures were taken)."""

    top1_agreement: float
    cosine_mean: float
    cosine_p5: float
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


def fidelity(reference: list[np.ndarray], compiled: list[np.ndarray], names: list[str] | None = None) -> Fidelity:
    """How closely the compiled model reproduces the reference, per output and overall.

    sqnr_db = 10 log10(sum(ref^2) / sum((ref - out)^2)) per output; overall the WORST output's (a detector's
    boxes and class scores must both be faithful; None = exact). top1_agreement over the last axis: of the
    only output, or the worst of a multi-output model's class vectors ([batch, classes]); a detector's
    [batch, 4, anchors] has no top-1 to agree on (None). max_abs_diff: the largest over all outputs.
    """
    per_output = [_fidelity_one(r, c) for r, c in zip(reference, compiled, strict=True)]
    if names:
        per_output = [{"name": name, **f} for name, f in zip(names, per_output, strict=True)]
    vectors = [f for f, r in zip(per_output, reference, strict=True) if len(per_output) == 1 or r.ndim == 2]
    worst: _Overall = {}
    agreements = [f["top1_agreement"] for f in vectors if "top1_agreement" in f]
    if agreements:
        worst["top1_agreement"] = min(agreements)
    for key in ("cosine_mean", "cosine_p5"):
        values = [f[key] for f in per_output if key in f]
        if values:
            worst[key] = min(values)  # the worst output's, like SQNR
    if len(per_output) > 1:
        worst["judged_on"] = "the worst of the outputs (per_output): SQNR of every output, top-1 of class vectors"
    return {"sqnr_db": _worst([f["sqnr_db"] for f in per_output]),
            "max_abs_diff": max(f["max_abs_diff"] for f in per_output), **worst,
            "samples": int(reference[0].shape[0]), "per_output": per_output}


def _worst(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return min(finite) if finite else None


def _fidelity_one(ref: np.ndarray, out: np.ndarray) -> OutputFidelity:
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64**2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    result: OutputFidelity = {"sqnr_db": round(sqnr, 2) if np.isfinite(sqnr) else None,
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


def cosine(ref: np.ndarray, out: np.ndarray) -> Cosine:
    """Cosine similarity of each output vector (a row over the last axis: a sentence embedding, a token's state)
    to the reference's: the mean and the 5th percentile, what search over embeddings depends on. A zero
    reference vector is similar only to a zero vector."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    norms = np.linalg.norm(ref64, axis=1) * np.linalg.norm(out64, axis=1)
    both_zero = (np.linalg.norm(ref64, axis=1) == 0) & (np.linalg.norm(out64, axis=1) == 0)
    cos = np.where(norms > 0, np.sum(ref64 * out64, axis=1) / np.where(norms > 0, norms, 1.0),
                   np.where(both_zero, 1.0, 0.0))
    return {"cosine_mean": round(float(np.mean(cos)), 6), "cosine_p5": round(float(np.percentile(cos, 5)), 6)}


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
