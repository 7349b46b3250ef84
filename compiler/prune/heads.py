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
for convolutions): hidden size, residual stream and every other layer stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE = 1e-4  # relative to the mean diagonal of the normal equations: keeps the solve well-posed


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


def heads_removed(count: int, ratio: float) -> int:
    """How many of a layer's `count` heads `ratio` removes: round(ratio x count), at least one head kept."""
    return min(count - 1, int(round(ratio * count)))


def refit_output(kept_heads: np.ndarray, target: np.ndarray, with_bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Least-squares output projection (kept heads, v, d) and bias so that project(kept) ~ target (the original
    layer's output on the same tokens)."""
    n, t, h, v = kept_heads.shape
    weights, bias = fit_linear(kept_heads.reshape(n * t, h * v), target.reshape(n * t, -1), with_bias)
    return weights.reshape(h, v, -1), bias


def fit_linear(x: np.ndarray, y: np.ndarray, with_bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Ridge least squares: W (and b) minimising |x W + b - y|^2 over the rows (samples x features)."""
    x = x.astype(np.float64)
    if with_bias:
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += RIDGE * max(float(np.mean(np.diag(gram))), 1e-12)
    solution = np.linalg.solve(gram, x.T @ y.astype(np.float64))
    return (solution[:-1], solution[-1]) if with_bias else (solution, None)
