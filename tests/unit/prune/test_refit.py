"""The output projection's re-fit after head removal: shrunk towards the kept heads' original projection with a
strength chosen by K-fold held-out error over whole samples (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekiln.compiler.prune import heads

KEPT, REMOVED, OUT, TOKENS = 24, 24, 16, 12


class Layer:
    """A stand-in attention layer: per token, the kept heads' features and the removed heads' (partly predictable
    from the kept ones); the output is their original projection. Tokens of one sample share most of their
    features (a sentence's tokens are alike)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w_kept = rng.normal(size=(KEPT, OUT)) / np.sqrt(KEPT)
        self.w_removed = rng.normal(size=(REMOVED, OUT)) / np.sqrt(REMOVED) * 0.6
        self.mixing = rng.normal(size=(KEPT, REMOVED)) / np.sqrt(KEPT)
        self.bias = rng.normal(size=OUT) * 0.1

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Kept features (n, TOKENS, 4 heads, 6) and the original output (n, TOKENS, OUT)."""
        rng = np.random.default_rng(seed)
        kept = rng.normal(size=(n, 1, KEPT)) + 0.3 * rng.normal(size=(n, TOKENS, KEPT))
        own = 0.5 * rng.normal(size=(n, 1, REMOVED)) + 0.3 * rng.normal(size=(n, TOKENS, REMOVED))
        removed = kept @ self.mixing + own
        target = kept @ self.w_kept + removed @ self.w_removed + self.bias
        return kept.reshape(n, TOKENS, 4, 6), target

    @property
    def original(self) -> tuple[np.ndarray, np.ndarray]:
        return self.w_kept.reshape(4, 6, OUT), self.bias


def _error(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> float:
    return float(np.mean((heads.project(x, w, b) - y) ** 2))


def _plain(x: np.ndarray, y: np.ndarray, strength: float = heads.RIDGE) -> tuple[np.ndarray, np.ndarray | None]:
    """The former re-fit: ridge towards zero."""
    n, t, h, v = x.shape
    w, b = heads.fit_linear(x.reshape(n * t, h * v), y.reshape(n * t, -1), True, strength)
    return w.reshape(h, v, -1), b


def test_with_few_samples_the_chosen_fit_beats_ridge_to_zero_and_no_refit_on_fresh_samples():
    for seed in range(3):
        layer = Layer(seed)
        x, y = layer.sample(6, seed=100 + seed)  # 72 rows for 25 parameters per output, from 6 samples only
        fresh_x, fresh_y = layer.sample(400, seed=200 + seed)
        fit = heads.refit_output(x, y, layer.original)
        chosen = _error(fresh_x, fresh_y, fit.weights, fit.bias)
        plain = _error(fresh_x, fresh_y, *_plain(x, y))
        none = _error(fresh_x, fresh_y, *layer.original)
        assert chosen < plain and chosen < none, (seed, fit.strength, chosen, plain, none)
        assert _error(x, y, *_plain(x, y)) < _error(x, y, fit.weights, fit.bias)  # it gave up calibration fit


def test_with_many_samples_it_approaches_plain_least_squares():
    layer = Layer(7)
    x, y = layer.sample(600, seed=1)
    fresh_x, fresh_y = layer.sample(400, seed=2)
    fit = heads.refit_output(x, y, layer.original)
    assert fit.strength <= 0.01 and fit.folds == heads.FOLDS
    plain_w, plain_b = _plain(x, y)
    assert _error(fresh_x, fresh_y, fit.weights, fit.bias) <= 1.01 * _error(fresh_x, fresh_y, plain_w, plain_b)
    np.testing.assert_allclose(fit.weights, plain_w, atol=0.02)


def test_never_worse_than_no_refit_on_held_out_samples_and_the_original_is_kept_when_a_fit_cannot_help():
    layer = Layer(3)
    x, _ = layer.sample(8, seed=5)
    # the original is exact up to noise of the whole sample, which no weights can predict
    noise = np.random.default_rng(6).normal(size=(8, 1, OUT)) * 0.5
    y = heads.project(x, *layer.original) + noise
    fit = heads.refit_output(x, y, layer.original)
    assert math.isinf(fit.strength) and fit.errors[-1] == min(fit.errors)
    assert fit.weights.tobytes() == layer.original[0].tobytes() and fit.bias is not None
    facts = fit.facts()
    assert facts["strength"] is None and facts["original_kept"] and facts["folds"] == 4
    assert facts["heldout_mse"] == facts["heldout_mse_no_refit"] == float(f"{fit.errors[-1]:.4g}")
    for seed in range(4):  # whatever the problem, the chosen strength's held-out error is the grid's lowest
        x, y = Layer(seed).sample(5, seed=seed)
        fit = heads.refit_output(x, y, Layer(seed).original)
        assert fit.errors[heads.STRENGTHS.index(fit.strength)] <= fit.errors[-1]


def test_rows_of_one_sample_never_split_across_folds():
    # each sample's rows are copies of one row, its targets that row's image plus noise of the sample: split
    # rows would make memorising the noise look perfect on held-out rows, so the weakest shrink would win
    rng = np.random.default_rng(11)
    layer = Layer(11)
    rows = np.repeat(rng.normal(size=(40, KEPT)), 5, axis=0)
    y = rows @ layer.w_kept + layer.bias + np.repeat(rng.normal(size=(40, OUT)), 5, axis=0)
    order = rng.permutation(len(rows))  # rows of a sample scattered, as token rows after a padding mask are not
    samples = np.repeat(np.arange(40) * 7 + 3, 5)[order]  # arbitrary labels
    x = rows[order].reshape(1, -1, 4, 6)
    fit = heads.refit_output(x, y[order][None], layer.original, samples)
    assert fit.strength >= 1.0, fit.errors
    by_row = heads.refit_output(x, y[order][None], layer.original, np.arange(len(rows)))  # the split the test rules out
    assert by_row.strength < 0.1 and by_row.errors[0] < 0.1 * fit.errors[0]
    folds = heads.fold_of_rows(samples, 4)
    assert all(len(set(folds[samples == s])) == 1 for s in set(samples)) and set(folds) == {0, 1, 2, 3}


def test_the_fit_is_deterministic_bit_for_bit_and_needs_two_samples_to_choose():
    layer = Layer(5)
    x, y = layer.sample(9, seed=9)
    a, b = heads.refit_output(x, y, layer.original), heads.refit_output(x.copy(), y.copy(), layer.original)
    assert a.weights.tobytes() == b.weights.tobytes() and a.bias.tobytes() == b.bias.tobytes()
    assert a.errors == b.errors and a.strength == b.strength
    one = heads.refit_output(x[:1], y[:1], layer.original)
    assert math.isinf(one.strength) and one.folds == 0 and one.facts()["heldout_mse"] is None
    assert heads.refit_output(x[:3], y[:3], layer.original).folds == 3


def test_the_held_out_errors_are_those_of_fits_on_the_other_folds_made_from_scratch():
    layer = Layer(2)
    x, y = layer.sample(7, seed=4)
    rows, targets = x.reshape(7 * TOKENS, -1), y.reshape(7 * TOKENS, -1)
    samples = np.repeat(np.arange(7), TOKENS)
    original = (layer.w_kept, layer.bias)
    _, errors, folds = heads.choose_strength(rows, targets, original, samples)
    fold = heads.fold_of_rows(samples, folds)
    for strength, error in zip(heads.STRENGTHS[:-1], errors, strict=False):
        squared = 0.0
        for k in range(folds):
            w, b = heads.fit_shrunk(rows[fold != k], targets[fold != k], original, strength)
            squared += float(np.sum((rows[fold == k] @ w + b - targets[fold == k]) ** 2))
        assert error == pytest.approx(squared / targets.size, rel=1e-9)
    assert errors[-1] == pytest.approx(np.mean((rows @ layer.w_kept + layer.bias - targets) ** 2), rel=1e-12)
