"""Attention-head scoring, selection and the output projection's least-squares re-fit (numpy only)."""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.prune import heads


def _layer(rng, d=12, h=4, k=3):
    def w(*shape):
        return rng.normal(size=shape) / np.sqrt(shape[0])

    return heads.AttentionWeights(w(d, h, k), rng.normal(size=(h, k)) * 0.1, w(d, h, k), rng.normal(size=(h, k)) * 0.1,
                                  w(d, h, k), rng.normal(size=(h, k)) * 0.1, w(h, k, d) / np.sqrt(h),
                                  rng.normal(size=d) * 0.1)


def test_a_head_whose_output_projection_is_zero_scores_zero_and_goes_first():
    rng = np.random.default_rng(0)
    layer = _layer(rng)
    wo = layer.wo.copy()
    wo[2] = 0.0
    x = rng.normal(size=(5, 7, 12))
    s = heads.scores(heads.head_outputs(x, x, layer), wo)
    assert s[2] == 0.0 and all(s[i] > 0 for i in (0, 1, 3))
    assert list(heads.to_keep(s, 0.25)) == [0, 1, 3]


def test_the_contributions_add_up_to_the_layer_output():
    rng = np.random.default_rng(1)
    layer = _layer(rng)
    x = rng.normal(size=(3, 6, 12))
    out = heads.head_outputs(x, x, layer)
    parts = sum(heads.project(out[:, :, [h]], layer.wo[[h]], None) for h in range(layer.heads))
    np.testing.assert_allclose(parts + layer.bo, heads.project(out, layer.wo, layer.bo), rtol=1e-10, atol=1e-12)


def test_ratio_zero_keeps_every_head_and_at_least_one_head_is_always_kept():
    s = np.array([3.0, 1.0, 2.0, 0.5])
    assert list(heads.to_keep(s, 0.0)) == [0, 1, 2, 3]
    assert list(heads.to_keep(s, 0.5)) == [0, 2]
    assert list(heads.to_keep(s, 1.0)) == [0]


def test_keep_slices_every_kernel_and_counts_the_parameters():
    rng = np.random.default_rng(2)
    layer = _layer(rng, d=12, h=4, k=3)
    kept = layer.keep(np.array([0, 3]))
    assert kept.wq.shape == (12, 2, 3) and kept.bv.shape == (2, 3) and kept.wo.shape == (2, 3, 12)
    assert kept.params() == 3 * (12 * 2 * 3 + 2 * 3) + 2 * 3 * 12 + 12
    assert layer.params() == 3 * (12 * 4 * 3 + 4 * 3) + 4 * 3 * 12 + 12


def test_the_refit_recovers_more_of_the_output_than_dropping_the_heads():
    rng = np.random.default_rng(3)
    layer = _layer(rng)
    x = rng.normal(size=(40, 8, 12))
    out = heads.head_outputs(x, x, layer)
    target = heads.project(out, layer.wo, layer.bo)
    kept = heads.to_keep(heads.scores(out, layer.wo), 0.5)
    dropped = heads.project(out[:, :, kept], layer.wo[kept], layer.bo)
    fit = heads.refit_output(out[:, :, kept], target, (layer.wo[kept], layer.bo))
    refitted = heads.project(out[:, :, kept], fit.weights, fit.bias)
    assert np.mean((refitted - target) ** 2) < np.mean((dropped - target) ** 2)
    def cos(a, b):
        return cosine(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))["cosine_mean"]

    assert cos(target, refitted) > cos(target, dropped)


def test_a_refit_with_every_head_kept_reproduces_the_layer():
    rng = np.random.default_rng(4)
    layer = _layer(rng)
    x = rng.normal(size=(30, 8, 12))
    out = heads.head_outputs(x, x, layer)
    target = heads.project(out, layer.wo, layer.bo)
    fit = heads.refit_output(out, target, (layer.wo, layer.bo))
    np.testing.assert_allclose(heads.project(out, fit.weights, fit.bias), target, atol=1e-3)
