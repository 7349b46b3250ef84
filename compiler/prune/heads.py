"""Attention heads: what each one contributes, which to remove, and the least-squares re-fit after removal.

Framework-free (numpy): the Keras adapter (compiler/graph/keras_heads.py) reads a MultiHeadAttention's
weights and its calibration inputs, and writes the pruned layer back.

A head's score is the mean squared norm of its contribution to the layer's output on the calibration data:
the output projection is linear in the concatenated heads, so masking head h changes the output by exactly
that contribution. This is the "change in output when the head is masked" criterion (Michel et al. 2019
use the loss's sensitivity to a mask; without labels the output change is what can be measured), computed
in one forward pass per layer instead of one per head. Weight norms alone ignore that a head with large
weights can attend to nothing useful.

Recovery (`refit_output`): the output projection of the kept heads is re-fitted by least squares so that
the pruned layer reproduces the original layer's output on the calibration tokens (as reconstruct does
for convolutions): hidden size, residual stream and every other layer stay as they are. The fit has
heads*dim inputs and the tokens of one sentence are alike, so with few sentences a plain fit learns them by
heart; it is therefore shrunk towards the kept heads' original projection, with a strength chosen per layer
by K-fold held-out error over whole samples (`choose_strength`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np

RIDGE = 1e-4  # relative to the mean diagonal of the normal equations: keeps the solve well-posed
# Shrinkage strengths the re-fit chooses from (x the mean diagonal of the normal equations), weakest first;
# infinity keeps the original weights (no re-fit), so the choice is never worse than that on held-out samples.
STRENGTHS = (RIDGE, 0.01, 0.1, 1.0, 10.0, math.inf)
FOLDS = 4  # at most; one per sample when there are fewer
CRITERION = "output change when the head is masked (mean squared contribution, calibration data)"
REFIT_WHAT = ("least-squares re-fit of each pruned layer's output projection, shrunk towards the kept heads' "
              "original projection by a strength chosen per layer on held-out samples (K-fold over samples)")


@dataclass(frozen=True)
class AttentionWeights:
    """A multi-head attention layer's weights, Keras' layout: kernels (in, heads, dim), output (heads, dim, out)."""

    wq: np.ndarray
    bq: np.ndarray | None
    wk: np.ndarray
    bk: np.ndarray | None
    wv: np.ndarray
    bv: np.ndarray | None
    wo: np.ndarray
    bo: np.ndarray | None

    @property
    def heads(self) -> int:
        return int(self.wq.shape[1])

    def keep(self, kept: np.ndarray) -> AttentionWeights:
        """The weights of the heads in `kept` (indices, in order); the output bias unchanged."""
        def pick(b: np.ndarray | None) -> np.ndarray | None:
            return None if b is None else b[kept]

        return AttentionWeights(self.wq[:, kept], pick(self.bq), self.wk[:, kept], pick(self.bk),
                                self.wv[:, kept], pick(self.bv), self.wo[kept], self.bo)

    def params(self) -> int:
        arrays = [self.wq, self.bq, self.wk, self.bk, self.wv, self.bv, self.wo, self.bo]
        return sum(int(a.size) for a in arrays if a is not None)


def _dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = np.einsum("ntd,dhk->nthk", x, w)
    return y if b is None else y + b


def head_outputs(query: np.ndarray, value: np.ndarray, w: AttentionWeights, key: np.ndarray | None = None
                 ) -> np.ndarray:
    """Each head's attention output before the output projection, (samples, tokens, heads, value_dim);
    scaled dot-product attention without a mask, as Keras computes it."""
    key = value if key is None else key
    q = _dense(query.astype(np.float64), w.wq, w.bq)
    k = _dense(key.astype(np.float64), w.wk, w.bk)
    v = _dense(value.astype(np.float64), w.wv, w.bv)
    logits = np.einsum("nthk,nshk->nhts", q, k) / np.sqrt(q.shape[-1])
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("nhts,nshv->nthv", weights, v)


def project(heads: np.ndarray, wo: np.ndarray, bo: np.ndarray | None) -> np.ndarray:
    """The output projection of concatenated heads: (n, t, h, v) x (h, v, d) -> (n, t, d)."""
    y = np.einsum("nthv,hvd->ntd", heads, wo)
    return y if bo is None else y + bo


def scores(heads: np.ndarray, wo: np.ndarray) -> np.ndarray:
    """Per head: the mean squared norm of its contribution to the output (what masking it removes)."""
    contribution = np.einsum("nthv,hvd->nthd", heads, wo)
    return np.mean(np.sum(contribution**2, axis=-1), axis=(0, 1))


def to_keep(head_scores: np.ndarray, ratio: float) -> np.ndarray:
    """Indices of the heads to keep at `ratio` removed (round(ratio x heads), at least one head kept), in
    their original order: the lowest-scoring heads go first."""
    order = np.argsort(head_scores, kind="stable")
    return np.sort(order[heads_removed(len(head_scores), ratio):])


class RefitFacts(TypedDict):
    """A Refit's choice as the manifest records it (JSON: no infinities; None where nothing was held out)."""

    strength: float | None
    original_kept: bool
    folds: int
    heldout_mse: float | None
    heldout_mse_no_refit: float | None


class HeadRecovery(TypedDict):
    """The head pruning block's `recovery`: the method, the output cosine to the source before / after it and,
    when re-fitted, each layer's choice (its name and RefitFacts)."""

    method: str
    what: str
    samples: int
    output_cosine_before: float
    output_cosine_after: float
    layers: NotRequired[list[dict]]
    seconds: float


def pruning_facts(ratio: float, plans: dict[str, tuple[np.ndarray, np.ndarray]], blocked: dict[str, str],
                  params: tuple[int, int], recovery: HeadRecovery) -> dict:
    """The manifest's pruning block of head pruning, whatever the framework: per layer the heads before / after,
    which stayed and their scores (plans: layer -> (kept indices, scores)), the layers left alone and why, the
    parameters before / after and what recovery did (recovery_facts)."""
    return {"kind": "attention heads", "ratio": ratio, "criterion": CRITERION,
            "layers": [{"layer": n, "heads_before": len(s), "heads_after": len(k), "kept": [int(i) for i in k],
                        "scores": [round(float(v), 6) for v in s]} for n, (k, s) in plans.items()],
            "blocked": [{"layer": n, "reason": r} for n, r in blocked.items()],
            "params_before": params[0], "params_after": params[1], "recovery": recovery}


def recovery_facts(recovered: bool, samples: int, cosines: tuple[float, float], chosen: list[dict],
                   seconds: float) -> HeadRecovery:
    """What the re-fit did: the output cosine to the source before / after it, and each layer's chosen strength."""
    before, after = round(cosines[0], 6), round(cosines[1], 6)
    if recovered:
        return {"method": "reconstruct", "what": REFIT_WHAT, "samples": int(samples), "output_cosine_before": before,
                "output_cosine_after": after, "layers": chosen, "seconds": round(seconds, 2)}
    return {"method": "none", "what": "none", "samples": int(samples), "output_cosine_before": before,
            "output_cosine_after": after, "seconds": round(seconds, 2)}


def heads_removed(count: int, ratio: float) -> int:
    """How many of a layer's `count` heads `ratio` removes: round(ratio x count), at least one head kept."""
    return min(count - 1, int(round(ratio * count)))


@dataclass(frozen=True)
class Refit:
    """A re-fitted output projection (kept heads, v, d) and bias, and how its shrinkage strength was chosen:
    `strength` (x mean diagonal; inf: the original weights kept), the cross-validated mean squared error per
    strength tried (`errors`, aligned with STRENGTHS; empty when there were too few samples to hold any out)
    and the number of folds."""

    weights: np.ndarray
    bias: np.ndarray | None
    strength: float
    errors: tuple[float, ...]
    folds: int

    def facts(self) -> RefitFacts:
        """The choice as the manifest records it (JSON: no infinities)."""
        kept = math.isinf(self.strength)
        return {"strength": None if kept else self.strength, "original_kept": kept, "folds": self.folds,
                "heldout_mse": _sig(self.errors[STRENGTHS.index(self.strength)]) if self.errors else None,
                "heldout_mse_no_refit": _sig(self.errors[-1]) if self.errors else None}


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def refit_output(kept_heads: np.ndarray, target: np.ndarray, original: tuple[np.ndarray, np.ndarray | None],
                 samples: np.ndarray | None = None) -> Refit:
    """Output projection (kept heads, v, d) and bias (when `original` has one) so that project(kept) ~ target (the
    original layer's output on the same tokens), shrunk towards `original` (the kept heads' original projection
    and the bias). kept_heads (n, t, h, v), target (n, t, d); `samples`: which sample each of the n*t rows comes
    from (default: n samples of t rows each), so that the rows of one sample stay on one side of every fold.

    Never worse than no re-fit on held-out data by construction: STRENGTHS ends with infinity (the original
    weights), and the strength with the lowest cross-validated error is the one used (see choose_strength)."""
    n, t, h, v = kept_heads.shape
    x, y = kept_heads.reshape(n * t, h * v), target.reshape(n * t, -1)
    groups = np.repeat(np.arange(n), t) if samples is None else np.asarray(samples)
    w0, b0 = original
    strength, errors, folds = choose_strength(x, y, (w0.reshape(h * v, -1), b0), groups)
    if math.isinf(strength):
        return Refit(w0.astype(np.float64), None if b0 is None else b0.astype(np.float64), strength, errors, folds)
    weights, bias = fit_shrunk(x, y, (w0.reshape(h * v, -1), b0), strength)
    return Refit(weights.reshape(h, v, -1), bias, strength, errors, folds)


def choose_strength(x: np.ndarray, y: np.ndarray, original: tuple[np.ndarray, np.ndarray | None],
                    groups: np.ndarray) -> tuple[float, tuple[float, ...], int]:
    """The strength of STRENGTHS with the lowest mean squared error on held-out rows, the error of each, and the
    number of folds. The distinct samples of `groups` (one label per row) go to folds in turn (sample i of
    the sorted labels to fold i mod K): no RNG, and a sample's rows are never split. With fewer than two
    samples nothing can be held out and the original weights are kept (inf, no errors, 0 folds)."""
    folds = min(FOLDS, len(np.unique(groups)))
    if folds < 2:
        return math.inf, (), 0
    fold_of_row = fold_of_rows(groups, folds)
    features, residual = _residual(x, y, original)
    # the normal equations of each fold; a fold's training set is everything else (total minus the fold)
    parts = [(features[fold_of_row == k], residual[fold_of_row == k]) for k in range(folds)]
    normal = [(f.T @ f, f.T @ r) for f, r in parts]
    gram, rhs = sum(g for g, _ in normal), sum(c for _, c in normal)
    squared = np.zeros(len(STRENGTHS))
    for (f_out, r_out), (g_out, c_out) in zip(parts, normal, strict=True):
        # one eigendecomposition of the training gram serves every strength: (G + a I)^-1 = V diag(1/(s+a)) V'
        train = gram - g_out
        eigenvalues, vectors = np.linalg.eigh(train)
        scale = max(float(np.mean(np.diag(train))), 1e-12)
        projected, coefficients = f_out @ vectors, vectors.T @ (rhs - c_out)
        for j, strength in enumerate(STRENGTHS):
            # infinity: the original weights, nothing fitted to the residual
            fitted = 0.0 if math.isinf(strength) else \
                projected @ (coefficients / (eigenvalues + strength * scale)[:, None])
            squared[j] += float(np.sum((r_out - fitted) ** 2))
    errors = squared / y.size
    return STRENGTHS[int(np.argmin(errors))], tuple(float(e) for e in errors), folds  # ties: the weaker shrink


def fold_of_rows(groups: np.ndarray, folds: int) -> np.ndarray:
    """Each row's fold: the distinct sample labels, sorted, go to folds in turn (label i to fold i mod `folds`),
    so all rows of a sample land in the same fold and the split needs no RNG."""
    _, index = np.unique(groups, return_inverse=True)
    return np.asarray(index).reshape(-1) % folds


def _residual(x: np.ndarray, y: np.ndarray, original: tuple[np.ndarray, np.ndarray | None]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The features (with a column of ones when the original has a bias) and what the original leaves to fit."""
    w0, b0 = original
    x = x.astype(np.float64)
    residual = y.astype(np.float64) - x @ w0.astype(np.float64)
    if b0 is None:
        return x, residual
    return np.concatenate([x, np.ones((len(x), 1))], axis=1), residual - b0.astype(np.float64)


def _solve(gram: np.ndarray, rhs: np.ndarray, strength: float) -> np.ndarray:
    """(gram + strength * mean diag * I)^-1 rhs."""
    gram = gram.copy()
    gram[np.diag_indices_from(gram)] += strength * max(float(np.mean(np.diag(gram))), 1e-12)
    return np.linalg.solve(gram, rhs)


def fit_shrunk(x: np.ndarray, y: np.ndarray, original: tuple[np.ndarray, np.ndarray | None], strength: float
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """W (and b) minimising |x W + b - y|^2 + strength * mean diag(x'x) * |(W, b) - original|^2: ridge
    regression of the original's residual, added back to the original (strength ~0 is plain least squares,
    infinity the original itself)."""
    w0, b0 = original
    features, residual = _residual(x, y, original)
    delta = _solve(features.T @ features, features.T @ residual, strength)
    if b0 is None:
        return w0 + delta, None
    return w0 + delta[:-1], b0 + delta[-1]


def fit_linear(x: np.ndarray, y: np.ndarray, with_bias: bool, strength: float = RIDGE
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Ridge least squares: W (and b) minimising |x W + b - y|^2 + strength * mean diag * |(W, b)|^2 over the
    rows (samples x features)."""
    x = x.astype(np.float64)
    if with_bias:
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution = _solve(x.T @ x, x.T @ y.astype(np.float64), strength)
    return (solution[:-1], solution[-1]) if with_bias else (solution, None)
